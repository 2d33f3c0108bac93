"""Byte relays between a TCP port on loopback and a Unix socket, both ways.

In docker mode the platform's API and S3 listen on the host's 127.0.0.1 only, and an action
container has a network of its own. The platform relays a Unix socket to each service; the
socket's folder is mounted into the container, whose proxy relays the same port on the
container's own 127.0.0.1 to it. So `http://127.0.0.1:PORT` means the same service inside
and outside, and no server listens beyond loopback.
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
    """One listening socket relayed to a target; `close()` stops accepting (connections in flight finish)."""

    def __init__(self, listener: socket.socket, connect) -> None:
        self._listener = listener
        threading.Thread(target=_serve, args=(listener, connect), daemon=True).start()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()


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

    return Relay(listener, connect)


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


def from_spec(spec: str) -> list[Relay]:
    """`PORT=/path/to.sock,...` (the DEPLOYER_RELAYS the platform gives a container) -> running relays."""
    relays = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        port, _, path = part.partition("=")
        relays.append(tcp_to_unix(int(port), path))
    return relays
