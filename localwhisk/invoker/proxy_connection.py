"""One kept-alive HTTP/1.1 connection from the invoker to a container's action proxy.

A container runs one activation at a time, so one connection per container is all it
needs; keeping it open saves a TCP handshake and a server thread per activation, which
is most of what a warm no-op costs. The answer is parsed by httptools (the C parser
under uvicorn): http.client reads headers through the email package, which cost more
than the rest of the exchange.
"""

from __future__ import annotations

import select
import socket
import time

import httptools

_RECV_BYTES = 1 << 16


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the proxy's answer did not come whole in time")
    return left


class ProxyGone(Exception):
    """The connection broke before an answer came: the proxy died or closed it mid-request."""


class _Answer:
    """httptools' callbacks: the body as it arrives, and whether the message is whole.

    The status and keep-alive are read when the headers end: llhttp forgets them once the message is complete.
    """

    __slots__ = ("parser", "status", "keep_alive", "body", "done")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.keep_alive = False
        self.body: list[bytes] = []
        self.done = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.done = True


class ProxyConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: ".encode()

    def _fresh(self, timeout_s: float) -> socket.socket:
        """The kept connection, or a new one when the proxy has closed the old (EOF waiting on an idle socket)."""
        sock = self._sock
        if sock is not None:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                sock.settimeout(timeout_s)
                return sock
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def post(self, path: str, data: bytes, timeout_s: float) -> tuple[int, bytes]:
        """(status, body). Raises TimeoutError when the whole answer did not come within timeout_s (connecting,
        sending, headers and body together: a proxy that trickles bytes gets no more time than one that is
        silent), ProxyGone when the connection broke."""
        deadline = time.monotonic() + timeout_s
        answer = _Answer()
        try:
            sock = self._fresh(timeout_s)
            sock.settimeout(_left(deadline))
            sock.sendall(b"POST %s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (path.encode(), self._head, len(data), data))
            while not answer.done:
                sock.settimeout(_left(deadline))
                chunk = sock.recv(_RECV_BYTES)
                if not chunk:
                    raise ProxyGone("RemoteDisconnected: the proxy closed the connection without a whole answer")
                answer.parser.feed_data(chunk)
        except TimeoutError:
            self.close()
            raise
        except ProxyGone:
            self.close()
            raise
        except (OSError, httptools.HttpParserError) as exc:
            self.close()
            raise ProxyGone(f"{exc.__class__.__name__}: {exc}") from exc
        if not answer.keep_alive:
            self.close()
        return answer.status, b"".join(answer.body)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
