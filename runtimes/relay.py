"""Byte relays between a TCP port on loopback and a Unix socket, both ways.

In docker mode the platform's API and S3, and services a user publishes to actions (the page of
`deployer serve`), listen on the host's 127.0.0.1 only, and an action container has a network of
its own. Each published service is a Unix socket named `PORT.sock` in one folder, mounted into
every container; the container's proxy relays 127.0.0.1:PORT on its own loopback to each socket
it finds there, looking again before every /init and /run, so a service published after the
container started is there for the next activation. So `http://127.0.0.1:PORT` means the same
service inside and outside, and no server listens beyond loopback.
"""

from __future__ import annotations

import os
import socket
import threading


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(listener: socket.socket, connect) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue

        def both(a=client, b=upstream) -> None:
            t = threading.Thread(target=_pump, args=(b, a), daemon=True)
            t.start()
            _pump(a, b)
            t.join()
            a.close()
            b.close()

        threading.Thread(target=both, daemon=True).start()


class Relay:
    """One listening socket relayed to a target; `close()` stops accepting (connections in flight finish) and
    removes a Unix socket it listened on."""

    def __init__(self, listener: socket.socket, connect, path: str | None = None) -> None:
        self._listener = listener
        self.path = path
        threading.Thread(target=_serve, args=(listener, connect), daemon=True).start()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unix_to_tcp(path: str, port: int, host: str = "127.0.0.1") -> Relay:
    """Listens on the Unix socket `path` (made world-connectable: containers run as their own users)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(128)

    def connect() -> socket.socket:
        s = socket.create_connection((host, port), timeout=30)
        s.settimeout(None)  # a blocking invoke or a long download may be quiet for minutes
        return s

    return Relay(listener, connect, path)


def tcp_to_unix(port: int, path: str, host: str = "127.0.0.1") -> Relay:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s

    return Relay(listener, connect)


def socket_name(port: int) -> str:
    """The file a service reached at 127.0.0.1:port inside a container is published as."""
    return f"{port}.sock"


def _port(name: str) -> int | None:
    head, dot, tail = name.partition(".")
    if dot and tail == "sock" and head.isdigit() and 0 < int(head) < 65536:
        return int(head)
    return None


class RelayFolder:
    """Inside a container: 127.0.0.1:PORT relayed to each `PORT.sock` the platform publishes in `folder`."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._relays: dict[int, Relay] = {}

    def sync(self) -> list[int]:
        """Starts a relay for every socket not relayed yet; returns the ports relayed. A port already taken
        here (the action listens on it) is tried again at the next sync."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return sorted(self._relays)
        for name in names:
            port = _port(name)
            if port is None or port in self._relays:
                continue
            try:
                self._relays[port] = tcp_to_unix(port, os.path.join(self.folder, name))
            except OSError:
                pass
        return sorted(self._relays)
