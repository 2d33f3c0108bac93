"""Trained LeNet-5 models for the action tests, trained once and kept in pytest's cache directory.

Training is the slow part on 2 cores, so a model is trained on the first run of a given
configuration and reused later; the tests measure what the model does every time.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ImageHandler(BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (status, headers, body)`; `/stall` and `/trickle` misbehave on purpose."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = self.path.split("?")[0]
        if path == "/stall":
            self.server.release.wait(300)
            return
        if path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(6000):
                    if self.server.release.wait(0.05):
                        return
                    self.wfile.write(b"\x89")
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up, as it should
            return
        if path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(1000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        status, headers, body = self.server.routes.get(path, (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


class ImageServer:
    """A real HTTP server on 127.0.0.1 in a thread; `stop()` releases stalled handlers first."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.release = threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, body: bytes, status: int = 200, headers: dict | None = None) -> str:
        self.httpd.routes[path] = (status, headers or {"Content-Type": "image/png"}, body)
        return self.base_url + path

    def stop(self) -> None:
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def image_server():
    server = ImageServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
