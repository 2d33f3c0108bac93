"""A small threaded HTTP/1.1 WSGI server with a C request parser (httptools), for the invoke path and the S3 server.

The controller and every action proxy answer one short JSON request after another on
connections the caller keeps open, so the CPU a request costs the server matters more than
anything else: each connection has its own thread, which reads, parses (httptools, the C
parser under uvicorn), calls the application and writes, with no handoff between threads.

Two ways to take a body. By default the body is read whole before the application runs
(short JSON requests: one write, one call). With `stream_bodies=True` the application runs
as soon as the headers are in and `wsgi.input` reads the body from the socket as the
application asks for it, so a 5 GB upload never sits in memory, and `Expect: 100-continue`
is answered only when the application first reads (after it has checked the request).
Responses stream too: an iterable larger than a few hundred KB is written as it is produced,
and a `wsgi.file_wrapper` over a file goes out with sendfile(2).

No client can hold a thread for long: an idle kept connection is closed, the headers of a
request must arrive whole within `header_timeout_s` of its first byte, and a body must keep
coming (no gap over `body_timeout_s`, on average at least `min_body_rate` bytes a second
once the first `body_timeout_s` have passed); a response that the client does not read is
given up after `body_timeout_s`. Open connections are bounded (503 beyond), headers and bodies
too (431, 413); what does not parse is 400, a late request 408, and an application that fails
is a 500, logged. `refuse` renders these answers in the application's own dialect (S3 XML).
A stop lets requests in progress finish.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

import httptools

log = logging.getLogger("wsgiserver")

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_NO_BODY = {204, 304}
_STREAM_AFTER = 256 * 1024  # a response larger than this is written as it is produced
_RECV = 65536
_RECV_STREAM = 256 * 1024  # reading an upload: fewer, larger reads

# refuse(status, message) -> (status line, headers, body): the answer to a request the server refuses itself
Refuse = Callable[[int, str], tuple[str, list[tuple[str, str]], bytes]]


def plain_refusal(status: int, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    return f"{status} {_REASONS[status]}", [("Content-Type", "text/plain")], message.encode()


class ClientError(Exception):
    """Reading the body failed on the client's side: it went away, stalled, or sent what does not parse.

    `status` is the answer it gets where one can still be sent (408 for a stall, 400 or 413 for a bad body).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Request:
    __slots__ = (
        "method",
        "url",
        "headers",
        "body",
        "version",
        "keep_alive",
        "complete",
        "expect_continue",
        "started",
        "body_started",
        "body_bytes",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.complete = False
        self.expect_continue = False
        self.started = time.monotonic()
        self.body_started = 0.0
        self.body_bytes = 0


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_CLOSED = object()  # what _receive returns when the client is gone (or idle too long): nothing more to say


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


class FileWrapper:
    """`environ["wsgi.file_wrapper"](file)`: the response is the file from its current offset, sent with sendfile.

    The response must carry a Content-Length: that many bytes are sent. The file is closed after.
    """

    def __init__(self, file, block_size: int = 1 << 20) -> None:
        self.file = file
        self.block_size = block_size

    def __iter__(self):
        return iter(lambda: self.file.read(self.block_size), b"")

    def close(self) -> None:
        self.file.close()


class _Body(io.RawIOBase):
    """`wsgi.input` of a streamed request: reads the socket only as far as the application asks."""

    def __init__(self, conn: _Connection, req: _Request) -> None:
        self.conn = conn
        self.req = req
        self.pending = b""

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """More of the body into `req.body`; False at its end."""
        req = self.req
        while not req.body:
            if req.complete:
                return False
            if req.expect_continue:
                req.expect_continue = False
                self.conn._send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
            outcome = self.conn._receive()
            if outcome is _CLOSED:
                raise ClientError(400, "the client closed the connection before the body ended")
            if outcome is not None:
                self.conn.failed = outcome
                raise ClientError(*outcome)
        return True

    def read(self, size: int = -1) -> bytes:
        """`size` bytes, or fewer at the end of the body (b"" past it), as a file's read does."""
        if size is None or size < 0:
            return self.readall()
        parts, have = [self.pending], len(self.pending)
        body = self.req.body
        while have < size and (body or self._fill()):
            have += len(body[0])
            parts.append(body.pop(0))
        data = b"".join(parts)
        out, self.pending = data[:size], data[size:]
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        parts = [self.pending]
        self.pending = b""
        while self._fill():
            parts.extend(self.req.body)
            self.req.body.clear()
        return b"".join(parts)


class _Connection:
    """One client connection: parse with httptools, answer in order, until close, a deadline or stop."""

    def __init__(self, server: WSGIServer, sock: socket.socket, peer: tuple) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.ready: list[_Request] = []
        self.header_bytes = 0
        self.in_headers = False
        self.unparsed_header_bytes = 0  # read while the headers are incomplete: httptools holds a line until it ends
        self.failed: tuple[int, str] | None = None  # why reading a streamed body stopped

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.current = _Request()
        self.header_bytes = self.unparsed_header_bytes = 0
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
        req.body_started = time.monotonic()
        length = next((v for k, v in req.headers if k.lower() == b"content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > self.server.max_body_bytes:
            raise _RequestError(413, "request body too large")
        expect = any(k.lower() == b"expect" and v.lower() == b"100-continue" for k, v in req.headers)
        if self.server.stream_bodies:
            req.expect_continue = expect
            self.ready.append(req)  # the application runs now and reads the body as it goes
        elif expect and not self.ready:
            self._send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        req = self.current
        req.body_bytes += len(body)
        if req.body_bytes > self.server.max_body_bytes:
            raise _RequestError(413, "request body too large")
        req.body.append(body)

    def on_message_complete(self) -> None:
        self.current.complete = True
        if not self.server.stream_bodies:
            self.ready.append(self.current)
        self.current = None

    # reading
    def _timeout(self) -> float:
        """How long the next read may wait: the deadline of what is being read (idle, headers or body)."""
        server, req = self.server, self.current
        if req is None:
            return server.idle_timeout_s
        now = time.monotonic()
        if self.in_headers:
            return max(0.0, req.started + server.header_timeout_s - now)
        # no gap longer than body_timeout_s, and after that grace at least min_body_rate on average
        due = req.body_started + server.body_timeout_s + (req.body_bytes + 1) / server.min_body_rate
        return max(0.0, min(server.body_timeout_s, due - now))

    def _receive(self):
        """One read from the socket into the parser: None, _CLOSED, or (status, message) to refuse with."""
        sock = self.sock
        try:
            sock.settimeout(self._timeout())
            data = sock.recv(_RECV_STREAM if self.server.stream_bodies and self.current else _RECV)
        except TimeoutError:
            if self.current is None:
                return _CLOSED
            return (408, "the request did not arrive in time")
        except OSError:
            return _CLOSED
        if not data:
            return _CLOSED
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return (400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            # httptools raises what a callback raised as the context of an HttpParserCallbackError
            cause = exc.__context__
            if isinstance(cause, _RequestError):
                return (cause.status, str(cause))
            return (400, f"malformed request: {exc}")
        if self.in_headers:
            self.unparsed_header_bytes += len(data)
            if self.unparsed_header_bytes > 2 * self.server.max_header_bytes:
                return (431, "request headers too large")
        return None

    # the loop
    def serve(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self.server.stopping:
                outcome = self._receive()
                # requests that parsed before an error are answered first (and one asking to close
                # ends the connection there: llhttp rejects whatever follows a `Connection: close`)
                while self.ready:
                    if not self._answer(self.ready.pop(0)):
                        return
                if outcome is _CLOSED:
                    return
                if outcome is not None:
                    self._refuse(*outcome)
                    return
        finally:
            self.server._forget(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def _send_raw(self, data: bytes) -> bool:
        try:
            self.sock.settimeout(self.server.body_timeout_s)
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _refusal(self, status: int, message: str) -> bytes:
        line, headers, body = self.server.refuse(status, message)
        head = [f"HTTP/1.1 {line}"] + [f"{k}: {v}" for k, v in headers]
        head += [f"Content-Length: {len(body)}", "Connection: close"]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    def _refuse(self, status: int, message: str) -> None:
        if self._send_raw(self._refusal(status, message)):
            self._linger()

    def _linger(self) -> None:
        """Half-closes, then reads what the client is still sending for a moment, so our answer is not lost to a
        reset (closing a socket with unread data resets it)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1.0
            left = 1 << 20
            while left > 0:
                self.sock.settimeout(max(0.0, deadline - time.monotonic()))
                data = self.sock.recv(_RECV)
                if not data:
                    break
                left -= len(data)
        except OSError:
            pass

    def _finish_body(self, req: _Request) -> bool:
        """After the application answered a streamed request: reads what it left of the body (a bounded amount)
        so the connection can serve the next request; False when it cannot."""
        if req.complete:
            return True
        if req.expect_continue or self.failed is not None:
            return False  # the client waits for a 100 that will not come, or the body already failed
        left = self.server.max_drain_bytes
        while not req.complete:
            req.body.clear()
            if req.body_bytes > left or self._receive() is not None:
                return False
        req.body.clear()
        return True

    def _answer(self, req: _Request) -> bool:
        """Runs the application for `req` and writes its response; False when the connection must close."""
        try:
            environ = self._environ(req)
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "malformed request target")
            return False
        state: dict = {}

        def start_response(status, headers, exc_info=None):  # nothing is sent before the body is known
            state["status"], state["headers"] = status, headers
            return state.setdefault("early", []).append

        server = self.server
        with server._lock:
            server._in_flight += 1
        try:
            result = server.app(environ, start_response)
            try:
                return self._respond(req, state, result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except ClientError as exc:
            if not state.get("sent"):
                self._refuse(exc.status, str(exc))
            return False
        except Exception:
            log.exception("the application failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            if not state.get("sent"):
                self._refuse(500, "The server encountered an unexpected error.")
            return False
        finally:
            with server._lock:
                server._in_flight -= 1
                server._idle.notify_all()

    def _respond(self, req: _Request, state: dict, result: Iterable[bytes]) -> bool:
        status, headers = state["status"], state["headers"]
        code = int(status[:3])
        bodiless = req.method == b"HEAD" or code in _NO_BODY or 100 <= code < 200
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        early = state.pop("early", [])
        if isinstance(result, FileWrapper) and length is not None and not early:
            keep = self._finish_body(req) and self._write_head(req, state, code, headers, length, bodiless)
            if bodiless:
                return keep
            sent = result.file.tell()
            try:
                self.sock.settimeout(self.server.body_timeout_s)
                done = self.sock.sendfile(result.file, sent, length)
            except OSError:
                return False
            return keep and done == length
        chunks, size = list(early), sum(map(len, early))
        rest = iter(result)
        for chunk in rest:
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > _STREAM_AFTER and not bodiless:
                    break
        else:  # the whole body is here: one write
            body = b"".join(chunks)
            keep = self._finish_body(req)
            if length is None and code not in _NO_BODY:
                headers = [*headers, ("Content-Length", str(len(body)))]
            return self._write_head(req, state, code, headers, len(body), bodiless, b"" if bodiless else body) and keep
        keep = self._finish_body(req)
        chunked = length is None and req.version == "1.1"
        if chunked:
            headers = [*headers, ("Transfer-Encoding", "chunked")]
        elif length is None:
            keep = False  # the end of the body is the end of the connection
        if not self._write_head(req, state, code, headers, length, False, keep=keep):
            return False
        written = 0
        for chunk in [*chunks, *rest]:
            if not chunk:
                continue
            written += len(chunk)
            if not self._send_raw(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk):
                return False
        if chunked:
            return self._send_raw(b"0\r\n\r\n") and keep
        return keep and (length is None or written == length)

    def _write_head(
        self,
        req: _Request,
        state: dict,
        code: int,
        headers: list,
        length: int | None,
        bodiless: bool,
        body: bytes = b"",
        keep: bool = True,
    ) -> bool:
        """Writes the status line and headers (and `body`, when it is whole); False when the connection must close."""
        keep = keep and req.keep_alive and not self.server.stopping
        lines = [f"HTTP/1.1 {state['status']}".encode()]
        dated = False
        for name, value in headers:
            lower = name.lower()
            if lower == "connection":
                if value.lower() == "close":
                    keep = False
                continue
            dated = dated or lower == "date"
            lines.append(f"{name}: {value}".encode("latin-1"))
        if not dated:
            lines.append(b"Date: " + self.server.date())
        if not keep:
            lines.append(b"Connection: close")
        elif req.version == "1.0":
            lines.append(b"Connection: keep-alive")
        state["sent"] = True
        return self._send_raw(b"\r\n".join(lines) + b"\r\n\r\n" + body) and keep

    def _environ(self, req: _Request) -> dict:
        url = httptools.parse_url(req.url)
        server = self.server
        if server.stream_bodies:
            body = _Body(self, req)
            length = next((v for k, v in req.headers if k.lower() == b"content-length"), b"").decode("latin-1")
        else:
            data = b"".join(req.body)
            body, length = io.BytesIO(data), str(len(data))
        environ = {
            "REQUEST_METHOD": req.method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(url.path or b"/").decode("latin-1"),
            "QUERY_STRING": (url.query or b"").decode("latin-1"),
            "RAW_URI": req.url.decode("latin-1"),
            "SERVER_NAME": server.host,
            "SERVER_PORT": str(server.port),
            "SERVER_PROTOCOL": f"HTTP/{req.version}",
            "REMOTE_ADDR": self.peer[0],
            "REMOTE_PORT": str(self.peer[1]),
            "CONTENT_LENGTH": length,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            # the headers as they arrived, for an application that reads them so (names with "_" included)
            "wsgiserver.headers": req.headers,
        }
        for name, value in req.headers:
            if b"_" in name:
                continue  # X_Foo would pass for X-Foo
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
                continue
            if key == "CONTENT_LENGTH":
                continue  # set above: the body's length as it will be read
            if key == "TRANSFER_ENCODING" and not server.stream_bodies:
                continue  # read whole: its length is what arrived
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
        header_timeout_s: float = 30.0,
        body_timeout_s: float = 30.0,
        min_body_rate: float = 64 * 1024,
        max_header_bytes: int = 64 * 1024,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_drain_bytes: int = 1 << 20,
        stream_bodies: bool = False,
        refuse: Refuse = plain_refusal,
        backlog: int = 128,
    ) -> None:
        self.app = app
        self.host = host
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.min_body_rate = min_body_rate
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_drain_bytes = max_drain_bytes
        self.stream_bodies = stream_bodies
        self.refuse = refuse
        self.date = _Date()
        self.stopping = False
        self._listener = socket.create_server((host, port), backlog=backlog)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._connections: set[_Connection] = set()
        self._in_flight = 0
        self._stopped = threading.Event()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

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
            sock.setblocking(False)  # the accepting thread never waits on a client it turns away
            try:
                sock.send(conn._refusal(503, "too many open connections"))
            except OSError:
                pass
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
