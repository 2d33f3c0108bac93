"""One kept-alive HTTP/1.1 connection from the invoker to a container's action proxy.

A container runs one activation at a time, so one connection per container is all it
needs; keeping it open saves a TCP handshake and a server thread per activation, which
is most of what a warm no-op costs.
"""

from __future__ import annotations

import http.client
import select
import socket

_HEADERS = {"Content-Type": "application/json"}


class ProxyGone(Exception):
    """The connection broke before an answer came: the proxy died or closed it mid-request."""


class ProxyConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._conn: http.client.HTTPConnection | None = None

    def _fresh(self, timeout_s: float) -> http.client.HTTPConnection:
        """The kept connection, or a new one when the proxy has closed the old (EOF waiting on an idle socket)."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if not readable:
                conn.sock.settimeout(timeout_s)
                return conn
        self.close()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        return conn

    def post(self, path: str, data: bytes, timeout_s: float) -> tuple[int, bytes]:
        """(status, body). Raises TimeoutError when no answer came in time, ProxyGone when the connection broke."""
        try:
            conn = self._fresh(timeout_s)
            conn.request("POST", path, body=data, headers=_HEADERS)
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError:
            self.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ProxyGone(f"{exc.__class__.__name__}: {exc}") from exc
        if resp.will_close:
            self.close()
        return resp.status, body

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
