"""A WSGI app on a real HTTP server on loopback, in a background thread, stopped on exit.

`deployer serve` runs in the foreground; tests and `bench infer` need the same server
while they drive it, so it is owned by an object with `__exit__`.
"""

from __future__ import annotations

import logging
import threading


class BackgroundServer:
    """`with BackgroundServer(app) as server:` serves `server.url` until the block ends."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threaded: bool = True) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.threaded = threaded
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server(self.host, self.port, self.app, threaded=self.threaded)
        self._server.handle_error = self._log_connection_error
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _log_connection_error(_request, client_address) -> None:
        """A client that hangs up mid-request (e.g. after a 413) is its business, not a server fault."""
        logging.getLogger(__name__).debug("connection from %s failed", client_address, exc_info=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
