"""The page's HTTP server: bound in one place, in the foreground or a background thread.

`deployer serve` runs in the foreground; tests need the same server while they drive
it, so it is owned by an object with `__exit__`. Binding records the bound address in the
app, because that (or --public-url), not a request's Host header, is where the action
fetches uploads from.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit


def bind(app, host: str = "127.0.0.1", port: int = 0, threaded: bool = True):
    """A werkzeug server listening on host:port (0: any free port), its address noted in `app.config`."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=threaded)
    shown = f"[{host}]" if ":" in host else host
    app.config["BOUND_URL"] = f"http://{shown}:{server.server_address[1]}"
    return server


def publish_to_actions(app, state_dir: Path | None):
    """Makes the bound page reachable from the local platform's action containers, where they do not share this
    machine's loopback (docker mode); the caller closes what it returns (None: nothing to publish).

    The action then fetches from the same `http://127.0.0.1:PORT` inside its container, through a relay the
    platform's containers pick up before their next activation, unless a container's own server holds that
    port: then the page's public URL becomes the port it has inside, and the action is allowed that host only.
    A --public-url the user gave is theirs to make reachable.
    """
    from localwhisk.invoker.factory import publish_port

    bound = urlsplit(app.config.get("BOUND_URL") or "")
    if state_dir is None or app.config.get("PUBLIC_URL") or not bound.port:
        return None
    published = publish_port(state_dir, bound.port)
    if published is not None and published.inside_port != bound.port:
        app.config["PUBLIC_URL"] = f"http://{published.netloc}"
    return published


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

    def start(self) -> BackgroundServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = bind(self.app, self.host, self.port, threaded=self.threaded)
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

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
