"""The action proxy: an HTTP server on loopback speaking OpenWhisk's /init and /run.

The local platform starts one proxy process per container and tells it nothing but a
file descriptor on which to report its port; everything else follows the contract the
official runtime images implement, so an action that runs here runs there.

It is a bare WSGI function under `runtimes.wsgiserver` (HTTP/1.1, httptools parsing): the
platform keeps one connection per container open, so a warm activation costs one request on
a socket that already exists, and no web framework sits between it and the launcher.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import threading

import procs

from . import contract, relay
from .runner import ActionExited, ActionRunner, InitError

_REASONS = {
    200: "200 OK",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
}
RELAY_DIR_ENV = "DEPLOYER_RELAY_DIR"
IDLE_CONNECTION_S = 3600.0  # the platform's kept connection may idle as long as its container does


def _decode(value: dict) -> dict:
    """The /init value with binary code checked as base64 the way the official proxy checks it."""
    if value.get("binary"):
        try:
            base64.b64decode(value["code"].replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"cannot decode the request: {exc}") from exc
    return value


def _message(body: bytes):
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("value", {}), dict):
        return None
    return message


class ProxyApp:
    """The WSGI application: one runner, one activation at a time whatever the server's threads."""

    def __init__(self, runner: ActionRunner, relays: relay.RelayFolder | None = None) -> None:
        self.runner = runner
        self.relays = relays
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path not in (contract.INIT_PATH, contract.RUN_PATH):
            status, body = 404, {"error": "The requested resource does not exist."}
        elif method != "POST":
            status, body = 405, {"error": "Method not allowed."}
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            data = environ["wsgi.input"].read(length) if length > 0 else b""
            with self._lock:
                if self.relays is not None:
                    self.relays.sync()  # what the platform published since the last activation
                status, body = self.init(data) if path == contract.INIT_PATH else self.run(data)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        start_response(
            _REASONS.get(status, f"{status} Error"),
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def init(self, data: bytes) -> tuple[int, dict]:
        if self.runner.initialized:
            return contract.FORBIDDEN, {"error": contract.ERR_REINIT}
        message = _message(data)
        if message is None:
            return contract.BAD_REQUEST, {
                "error": "Error unmarshaling request: the body must be a JSON object with a 'value' object."
            }
        value = message.get("value", {})
        if not isinstance(value.get("code"), str) or not value["code"]:
            return contract.FORBIDDEN, {"error": contract.ERR_NO_CODE}
        try:
            self.runner.init(_decode(value))
        except ValueError as exc:
            return contract.BAD_REQUEST, {"error": str(exc)}
        except InitError as exc:
            self.runner.end_activation()
            return contract.BAD_GATEWAY, {"error": str(exc)}
        return contract.OK, {"ok": True}

    def run(self, data: bytes) -> tuple[int, dict | bytes]:
        if not self.runner.initialized:
            return contract.INTERNAL_ERROR, {"error": contract.ERR_NOT_INITIALIZED}
        if self.runner.exited():
            return contract.INTERNAL_ERROR, {"error": contract.ERR_EXITED}
        message = _message(data)
        if message is None:
            self.runner.end_activation()
            return contract.BAD_REQUEST, {"error": contract.ERR_NOT_DICT_ARG}
        try:
            answer = self.runner.run(message, data)
        except ActionExited:
            self.runner.end_activation()
            return contract.BAD_REQUEST, {"error": contract.ERR_EXITED}
        self.runner.end_activation()
        stripped = answer.strip()
        if stripped[:1] == b"!":  # the launcher could not serialise the result, and says why
            return contract.BAD_GATEWAY, b'{"error": %s}' % stripped[1:]
        if stripped[:1] not in (b"{", b"["):  # the launcher writes compact JSON: its first byte says the type
            return contract.BAD_GATEWAY, {"error": contract.ERR_NOT_DICT_RESULT}
        return contract.OK, stripped


def make_server(host: str, port: int, app):
    """Bound and listening on return; `.port` is the port."""
    from .wsgiserver import WSGIServer

    return WSGIServer(host, port, app, max_connections=64, idle_timeout_s=IDLE_CONNECTION_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, help="write the bound port to this fd, then close it")
    parser.add_argument(
        "--deny",
        default=os.environ.get("ACTION_DENY_MODULES", ""),
        help="comma-separated top-level modules the action may not import unless it ships them",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print nothing at start: in a container, output before /init would land in the first activation's logs",
    )
    opts = parser.parse_args(argv)
    procs.become_subreaper()  # an action's daemonised grandchild stays below the proxy, so its tree kill takes it
    relay_dir = os.environ.get(RELAY_DIR_ENV)  # docker mode: the services the platform publishes on loopback
    relays = relay.RelayFolder(relay_dir) if relay_dir else None
    if relays is not None:
        relays.sync()
    runner = ActionRunner(deny=opts.deny, preload=os.environ.get("ACTION_PRELOAD_MODULES", ""), prestart=True)
    from . import wsgiserver  # noqa: F401 - imported while the launcher starts

    # listen only once the launcher has its modules: a stem cell is ready when it accepts, as in docker mode
    runner.wait_ready()
    server = make_server(opts.host, opts.port, ProxyApp(runner, relays))
    port = server.port
    if opts.ready_fd is not None:
        with os.fdopen(opts.ready_fd, "w") as ready:
            ready.write(f"{port}\n")
    elif not opts.quiet:
        print(f"listening on {opts.host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
