"""The action proxy: an HTTP server on loopback speaking OpenWhisk's /init and /run.

The local platform starts one proxy process per container and tells it nothing but a
file descriptor on which to report its port; everything else follows the contract the
official runtime images implement, so an action that runs here runs there.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ctypes
import json
import logging
import os
import sys

from flask import Flask, Response, request

from . import contract, relay
from .runner import ActionExited, ActionRunner, InitError

_PR_SET_CHILD_SUBREAPER = 36


def _reply(status: int, body) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _end_activation() -> None:
    for stream in (sys.stdout, sys.stderr):
        print(contract.SENTINEL, file=stream, flush=True)


def _decode(value: dict) -> dict:
    """The /init value with binary code checked as base64 the way the official proxy checks it."""
    if value.get("binary"):
        try:
            base64.b64decode(value["code"].replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"cannot decode the request: {exc}") from exc
    return value


def create_app(runner: ActionRunner) -> Flask:
    app = Flask("action-proxy")

    @app.post(contract.INIT_PATH)
    def init():
        if runner.initialized:
            return _reply(contract.FORBIDDEN, {"error": contract.ERR_REINIT})
        message = request.get_json(force=True, silent=True)
        if not isinstance(message, dict) or not isinstance(message.get("value", {}), dict):
            return _reply(contract.BAD_REQUEST, {"error": "Error unmarshaling request: the body must be a JSON "
                                                          "object with a 'value' object."})
        value = message.get("value", {})
        if not isinstance(value.get("code"), str) or not value["code"]:
            return _reply(contract.FORBIDDEN, {"error": contract.ERR_NO_CODE})
        try:
            runner.init(_decode(value))
        except ValueError as exc:
            return _reply(contract.BAD_REQUEST, {"error": str(exc)})
        except InitError as exc:
            _end_activation()
            return _reply(contract.BAD_GATEWAY, {"error": str(exc)})
        return _reply(contract.OK, {"ok": True})

    @app.post(contract.RUN_PATH)
    def run():
        if not runner.initialized:
            return _reply(contract.INTERNAL_ERROR, {"error": contract.ERR_NOT_INITIALIZED})
        if runner.exited():
            return _reply(contract.INTERNAL_ERROR, {"error": contract.ERR_EXITED})
        message = request.get_json(force=True, silent=True)
        if not isinstance(message, dict) or not isinstance(message.get("value", {}), dict):
            _end_activation()
            return _reply(contract.BAD_REQUEST, {"error": contract.ERR_NOT_DICT_ARG})
        try:
            answer = runner.run(message)
        except ActionExited:
            _end_activation()
            return _reply(contract.BAD_REQUEST, {"error": contract.ERR_EXITED})
        _end_activation()
        try:
            result = json.loads(answer)
        except ValueError:
            result = None
        if not isinstance(result, (dict, list)):
            return _reply(contract.BAD_GATEWAY, {"error": contract.ERR_NOT_DICT_RESULT})
        return Response(answer, status=contract.OK, mimetype="application/json")

    return app


def _become_subreaper() -> None:
    """Orphans of the action (a daemonised grandchild) stay below the proxy, so killing its tree kills them."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, help="write the bound port to this fd, then close it")
    parser.add_argument("--deny", default=os.environ.get("ACTION_DENY_MODULES", ""),
                        help="comma-separated top-level modules the action may not import unless it ships them")
    parser.add_argument("--quiet", action="store_true",
                        help="print nothing at start: in a container, output before /init would land in the "
                             "first activation's logs")
    opts = parser.parse_args(argv)
    _become_subreaper()
    relay.from_spec(os.environ.get("DEPLOYER_RELAYS", ""))  # docker mode: the platform's services on loopback
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(opts.host, opts.port, create_app(ActionRunner(deny=opts.deny)), threaded=False)
    port = server.server_address[1]
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
