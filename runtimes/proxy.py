"""The action proxy: an HTTP server on loopback speaking OpenWhisk's /init and /run.

The local platform starts one proxy process per container and tells it nothing but a
file descriptor on which to report its port; everything else follows the contract the
official runtime images implement, so an action that runs here runs there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from flask import Flask, Response, request

from . import contract
from .runner import ActionRunner, InitError


def _reply(status: int, body) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _end_activation() -> None:
    for stream in (sys.stdout, sys.stderr):
        print(contract.SENTINEL, file=stream, flush=True)


def create_app(runner: ActionRunner) -> Flask:
    app = Flask("action-proxy")

    @app.post(contract.INIT_PATH)
    def init():
        if runner.initialized:
            return _reply(contract.FORBIDDEN, {"error": contract.ERR_REINIT})
        message = request.get_json(force=True, silent=True)
        if not isinstance(message, dict) or not isinstance(message.get("value"), dict):
            return _reply(contract.BAD_REQUEST, {"error": "The init body must be a JSON object with a 'value' object."})
        try:
            runner.init(message["value"])
        except InitError as exc:
            _end_activation()
            return _reply(contract.BAD_GATEWAY, {"error": str(exc)})
        return _reply(contract.OK, {"ok": True})

    @app.post(contract.RUN_PATH)
    def run():
        if not runner.initialized:
            return _reply(contract.FORBIDDEN, {"error": contract.ERR_NOT_INITIALIZED})
        message = request.get_json(force=True, silent=True)
        if not isinstance(message, dict):
            _end_activation()
            return _reply(contract.BAD_REQUEST, {"error": contract.ERR_NOT_DICT_ARG})
        args = message.get("value", {})
        if not isinstance(args, dict):
            _end_activation()
            return _reply(contract.BAD_REQUEST, {"error": contract.ERR_NOT_DICT_ARG})
        result = runner.run(args, contract.env_for_run(message))
        _end_activation()
        if not isinstance(result, dict):
            return _reply(contract.BAD_GATEWAY, {"error": contract.ERR_NOT_DICT_RESULT})
        try:
            return _reply(contract.OK, result)
        except (TypeError, ValueError) as exc:
            return _reply(contract.BAD_GATEWAY, {"error": f"The action did not return a JSON-serialisable dictionary: {exc}"})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, help="write the bound port to this fd, then close it")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("ACTION_TORCH_THREADS", "0")))
    parser.add_argument("--quiet", action="store_true",
                        help="print nothing at start: in a container, output before /init would land in the "
                             "first activation's logs")
    opts = parser.parse_args(argv)
    if opts.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(opts.host, opts.port, create_app(ActionRunner()), threaded=False)
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
