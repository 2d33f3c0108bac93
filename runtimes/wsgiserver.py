"""A small threaded HTTP/1.1 WSGI server with a C request parser (httptools), for the invoke path.

The controller and every action proxy answer one short JSON request after another on
connections the caller keeps open. cheroot parsed each request in Python and handed every
connection from its selector to a worker thread and back; that cost more CPU than the
activation itself. Here each connection has its own thread, which reads, parses (httptools,
the parser under uvicorn), calls the application and writes, with nothing in between.

What a server on a shared machine needs is kept: keep-alive and pipelining, chunked and
`Expect: 100-continue` request bodies, bounds on header and body size (431, 413), a bound on
open connections (503 beyond it), an idle timeout, 400 for what does not parse, 500 (logged)
when the application fails, and a stop that lets requests in progress finish.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

import httptools

log = logging.getLogger("wsgiserver")

_REASONS = {
    400: "Bad Request",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_NO_BODY = {204, 304}


class _Request:
    __slots__ = ("method", "url", "headers", "body", "version", "keep_alive")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._value = formatdate(now, usegmt=True).encode()
            self._second = now
        return self._value


class _Connection:
    """One client connection: parse with httptools, answer in order, until close, idle timeout or stop."""

    def __init__(self, server: WSGIServer, sock: socket.socket, peer: tuple) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.ready: list[_Request] = []
        self.header_bytes = 0
        self.body_bytes = 0
        self.in_headers = False
        self.unparsed_header_bytes = 0  # read while the headers are incomplete: httptools holds a line until it ends

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.current = _Request()
        self.header_bytes = self.body_bytes = self.unparsed_header_bytes = 0
        self.in_headers = True

    def on_url(self, url: bytes) -> None:
        self.current.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name, value))
        self._count_header(len(name) + len(value))

    def _count_header(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > self.server.max_header_bytes:
            raise _RequestError(431, "request headers too large")

    def on_headers_complete(self) -> None:
        self.in_headers = False
        req, parser = self.current, self.parser
        req.method = parser.get_method()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        length = next((v for k, v in req.headers if k.lower() == b"content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > self.server.max_body_bytes:
            raise _RequestError(413, "request body too large")
        if any(k.lower() == b"expect" and v.lower() == b"100-continue" for k, v in req.headers) and not self.ready:
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.server.max_body_bytes:
            raise _RequestError(413, "request body too large")
        self.current.body.append(body)

    def on_message_complete(self) -> None:
        self.ready.append(self.current)
        self.current = None

    # the loop
    def serve(self) -> None:
        sock = self.sock
        sock.settimeout(self.server.idle_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self.server.stopping:
                try:
                    data = sock.recv(65536)
                except (TimeoutError, OSError):
                    return
                if not data:
                    return
                error = None
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    error = (400, "protocol upgrades are not supported")
                except httptools.HttpParserError as exc:
                    # httptools raises what a callback raised as the context of an HttpParserCallbackError
                    cause = exc.__context__
                    if isinstance(cause, _RequestError):
                        error = (cause.status, str(cause))
                    else:
                        error = (400, f"malformed request: {exc}")
                if error is None and self.in_headers:
                    self.unparsed_header_bytes += len(data)
                    if self.unparsed_header_bytes > 2 * self.server.max_header_bytes:
                        error = (431, "request headers too large")
                # requests that parsed whole before the error are answered first (and one asking to close
                # ends the connection there: llhttp rejects whatever follows a `Connection: close`)
                while self.ready:
                    if not self._answer(self.ready.pop(0)):
                        return
                if error is not None:
                    self._refuse(*error)
                    return
        finally:
            self.server._forget(self)
            try:
                sock.close()
            except OSError:
                pass

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            self.sock.sendall(head + body)
        except OSError:
            pass

    def _answer(self, req: _Request) -> bool:
        """Runs the application for `req` and writes its response; False when the connection must close."""
        try:
            environ = self._environ(req)
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "malformed request target")
            return False
        state: dict = {}

        def start_response(status, headers, exc_info=None):  # nothing is sent before the body is whole
            state["status"], state["headers"] = status, headers
            return state.setdefault("early", []).append

        server = self.server
        with server._lock:
            server._in_flight += 1
        try:
            result = server.app(environ, start_response)
            try:
                chunks = list(state.pop("early", [])) + [c for c in result if c]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            return self._write(req, state["status"], state["headers"], chunks)
        except Exception:
            log.exception("the application failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            self._refuse(500, "The server encountered an unexpected error.")
            return False
        finally:
            with server._lock:
                server._in_flight -= 1
                server._idle.notify_all()

    def _write(self, req: _Request, status: str, headers: list, chunks: list[bytes]) -> bool:
        code = int(status[:3])
        keep = req.keep_alive and not self.server.stopping
        lines = [f"HTTP/1.1 {status}".encode()]
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                has_length = True
            elif lower == "connection" and value.lower() == "close":
                keep = False
            elif lower == "connection":
                continue
            lines.append(f"{name}: {value}".encode("latin-1"))
        body = b"".join(chunks)
        if not has_length and code not in _NO_BODY:
            lines.append(b"Content-Length: %d" % len(body))
        lines.append(b"Date: " + self.server.date())
        if not keep:
            lines.append(b"Connection: close")
        elif req.version == "1.0":
            lines.append(b"Connection: keep-alive")
        if req.method == b"HEAD" or code in _NO_BODY or 100 <= code < 200:
            body = b""
        try:
            self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        except OSError:
            return False
        return keep

    def _environ(self, req: _Request) -> dict:
        url = httptools.parse_url(req.url)
        body = b"".join(req.body)
        server = self.server
        environ = {
            "REQUEST_METHOD": req.method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(url.path or b"/").decode("latin-1"),
            "QUERY_STRING": (url.query or b"").decode("latin-1"),
            "SERVER_NAME": server.host,
            "SERVER_PORT": str(server.port),
            "SERVER_PROTOCOL": f"HTTP/{req.version}",
            "REMOTE_ADDR": self.peer[0],
            "REMOTE_PORT": str(self.peer[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in req.headers:
            if b"_" in name:
                continue  # X_Foo would pass for X-Foo
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
                continue
            if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue  # the body is read whole: its length is what arrived
            key = "HTTP_" + key
            environ[key] = environ[key] + "," + text if key in environ else text
        return environ


class WSGIServer:
    """Listening on return (`port` is the bound one); `serve_forever` in a thread, `shutdown` from another."""

    def __init__(
        self,
        host: str,
        port: int,
        app,
        *,
        max_connections: int = 256,
        idle_timeout_s: float = 75.0,
        max_header_bytes: int = 64 * 1024,
        max_body_bytes: int = 64 * 1024 * 1024,
        backlog: int = 128,
    ) -> None:
        self.app = app
        self.host = host
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.date = _Date()
        self.stopping = False
        self._listener = socket.create_server((host, port), backlog=backlog)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._connections: set[_Connection] = set()
        self._in_flight = 0
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            while not self.stopping:
                try:
                    sock, peer = self._listener.accept()
                except OSError:
                    if self.stopping:
                        return
                    continue
                self._start(sock, peer)
        finally:
            self._stopped.set()

    def _start(self, sock: socket.socket, peer: tuple) -> None:
        conn = _Connection(self, sock, peer)
        with self._lock:
            full = len(self._connections) >= self.max_connections
            if not full:
                self._connections.add(conn)
        if full:
            conn._refuse(503, "too many open connections")
            sock.close()
            return
        threading.Thread(target=conn.serve, name=f"http-{peer[1]}", daemon=True).start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stops accepting, lets requests in progress finish (up to timeout_s), then closes every connection."""
        self.stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
