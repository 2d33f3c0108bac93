"""The controller: OpenWhisk's REST API v1 over a Platform, as a Flask app.

Paths, status codes and error bodies follow apache/openwhisk docs/rest_api.md so that
`wsk`, the npm `openwhisk` client and our own client work against it unchanged. Every
error, including the ones Flask or the JSON parser raise, is OpenWhisk's JSON body.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sqlite3
from functools import partial

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from localwhisk.controller import trigger_routes
from localwhisk.controller import web as web_api
from localwhisk.controller.common import (
    SECURITY_HEADERS,
    Auth,
    Caller,
    check_payload_size,
    error_response,
    flag,
    int_arg,
    json_body,
    json_response,
    list_or_count,
    list_window,
)
from localwhisk.controller.invoke import FastInvoke, answer_invoke
from localwhisk.controller.paths import NamespacePaths
from localwhisk.core import LIMIT_RANGES, MAX_CODE_BYTES, MAX_PAYLOAD_BYTES, Platform
from localwhisk.entities import kinds, names
from localwhisk.entities.actions import MAX_SEQUENCE_LENGTH
from localwhisk.errors import BadRequest, PlatformError

_HTTP_MESSAGES = {
    404: "The requested resource does not exist.",
    405: "Method not allowed.",
    413: "The request content was too large.",
}
log = logging.getLogger("controller")


def create_app(platform: Platform, auth: dict[str, str]) -> Flask:
    """`auth` maps namespace -> 'uuid:key'."""
    app = Flask("openwhisk-local")
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # werkzeug would answer `a//b` with an HTML redirect; OpenWhisk with JSON
    app.config["MAX_CONTENT_LENGTH"] = MAX_CODE_BYTES + 1024 * 1024
    authenticate = Auth(auth)
    _register_errors(app)
    _register_info(app, platform, authenticate)
    _register_packages(app, platform, authenticate)
    _register_actions(app, platform, authenticate)
    _register_activations(app, platform, authenticate)
    trigger_routes.register(app, platform, authenticate)
    web_api.register(app, platform, authenticate)
    app.wsgi_app = NamespacePaths(FastInvoke(app.wsgi_app, platform, authenticate))

    @app.after_request
    def no_sniffing(response: Response) -> Response:
        if not request.path.startswith("/api/v1/web/"):  # a web action's headers are its own
            for name, value in SECURITY_HEADERS:
                response.headers.setdefault(name, value)
        return response

    @app.route("/api/v1/namespaces/<ns>/<collection>", methods=["GET", "PUT", "POST", "DELETE"])
    @app.route("/api/v1/namespaces/<ns>/<collection>/<path:rest>", methods=["GET", "PUT", "POST", "DELETE"])
    def unknown_collection(ns, collection, rest=None):
        authenticate(ns)
        return error_response(404, _HTTP_MESSAGES[404])

    return app


def _register_errors(app: Flask) -> None:
    @app.errorhandler(PlatformError)
    def platform_error(exc: PlatformError):
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, _HTTP_MESSAGES.get(exc.code, exc.description or exc.name))

    @app.errorhandler(sqlite3.Error)
    def state_not_written(exc: sqlite3.Error):
        log.error("state database error on %s %s: %s", request.method, request.path, exc)
        return error_response(
            500, f"The platform could not read or write its state ({exc}); check the state folder's disk."
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "The server encountered an unexpected error.")


MB = 1024 * 1024
# OpenWhisk reports its throttles as integers; this platform has no rate throttles, so it reports the largest
# value OpenWhisk's Int settings can hold for them.
UNTHROTTLED = 2**31 - 1
BUILD = "local"  # OpenWhisk's build date; a platform run from source has none


def info_limits(concurrent_invocations: int = UNTHROTTLED) -> dict[str, int]:
    """`limits` as Controller.info reports them: throttles, the sequence length, and the action limit ranges
    (durations in ms, sizes in bytes); the namespace defaults are the ranges, as no namespace has its own."""
    body = {
        "actions_per_minute": UNTHROTTLED,
        "triggers_per_minute": UNTHROTTLED,
        "concurrent_actions": concurrent_invocations,
        "sequence_length": MAX_SEQUENCE_LENGTH,
    }
    ranges = {
        "duration": LIMIT_RANGES["timeout"],
        "memory": tuple(mb * MB for mb in LIMIT_RANGES["memory"]),
        "logs": tuple(mb * MB for mb in LIMIT_RANGES["logs"]),
    }
    for prefix in ("default_", ""):
        for what, (low, high) in ranges.items():
            body[f"{prefix}min_action_{what}"], body[f"{prefix}max_action_{what}"] = low, high
    return body


def _build_number() -> str:
    try:
        return importlib.metadata.version("ow-ml-toolkit")
    except importlib.metadata.PackageNotFoundError:
        return "source"


def _register_info(app: Flask, platform: Platform, authenticate: Auth) -> None:
    build_number = _build_number()

    @app.get("/")
    def info():
        """Controller.info: what a tool reads to learn the platform (its runtimes, limits and API paths)."""
        return json_response(
            {
                "description": "OpenWhisk-compatible local platform",
                "support": {},  # the platform has no issue tracker or chat of its own
                "api_paths": ["/api/v1"],
                "limits": info_limits(platform.concurrent_invocations),
                "runtimes": kinds.manifest_json(),
            }
        )

    @app.get("/api/v1")
    def api_info():
        """RestAPIVersion.info (without swagger_paths: the platform serves no API docs), and what the invoker is
        doing (this platform's own field)."""
        return json_response(
            {
                "description": "OpenWhisk API",
                "api_version": "1.0.0",
                "api_version_path": "v1",
                "build": BUILD,
                "buildno": build_number,
                "invoker": platform.invoker.stats(),
            }
        )

    @app.get("/api/v1/namespaces")
    def namespaces():
        return json_response([authenticate("_").subject])

    @app.get("/api/v1/namespaces/<ns>/limits")
    def limits(ns):
        """The namespace's limits as OpenWhisk's Limits.scala reports them: here, the ranges PUT enforces."""
        authenticate(ns, write=True)
        ranges = {"Memory": "memory", "Timeout": "timeout", "Logs": "logs", "Concurrency": "concurrency"}
        body = {"maxParameterSize": f"{MAX_PAYLOAD_BYTES // (1024 * 1024)} MB"}
        for suffix, key in ranges.items():
            body[f"minAction{suffix}"], body[f"maxAction{suffix}"] = LIMIT_RANGES[key]
        return json_response(body)


def _register_packages(app: Flask, platform: Platform, authenticate: Auth) -> None:
    @app.get("/api/v1/namespaces/<ns>/packages")
    def list_packages(ns):
        caller = authenticate(ns)
        return list_or_count(
            "packages",
            partial(platform.list_packages, caller.namespace, caller.subject),
            partial(platform.count_packages, caller.namespace, caller.subject),
        )

    @app.route("/api/v1/namespaces/<ns>/packages/<name>", methods=["GET", "PUT", "DELETE"])
    def package(ns, name):
        caller = authenticate(ns, write=request.method != "GET")
        names.check_segment(name)
        if request.method == "PUT":
            return json_response(platform.put_package(caller.namespace, name, json_body(), flag("overwrite")))
        if request.method == "DELETE":
            return json_response(platform.delete_package(caller.namespace, name, flag("force")))
        return json_response(platform.get_package(caller.namespace, name, caller.subject))


def _register_actions(app: Flask, platform: Platform, authenticate: Auth) -> None:
    @app.get("/api/v1/namespaces/<ns>/actions")
    def list_actions(ns, pkg=None):
        caller = authenticate(ns, write=pkg is None)  # another namespace lists only its public packages' actions
        return list_or_count(
            "actions",
            lambda limit, skip: platform.list_actions(caller.namespace, pkg, limit, skip, caller.subject),
            partial(platform.count_actions, caller.namespace, pkg, caller.subject),
        )

    @app.route("/api/v1/namespaces/<ns>/actions/<path:path>", methods=["GET", "PUT", "DELETE", "POST"])
    def action(ns, path):
        method = "GET" if request.method == "HEAD" else request.method  # HEAD reads, never invokes
        caller = authenticate(ns, write=method in ("PUT", "DELETE"))
        if method == "GET" and request.path.endswith("/") and path.count("/") <= 1:
            return list_actions(ns, names.check_segment(path.rstrip("/")))  # GET actions/<package>/
        path = names.check_path(path.rstrip("/"))
        if method == "PUT":
            return json_response(platform.put_action(caller.namespace, path, json_body(), flag("overwrite")))
        if method == "DELETE":
            return json_response(platform.delete_action(caller.namespace, path))
        if method == "GET":
            code = request.args.get("code", "true") != "false"
            return json_response(platform.get_action(caller.namespace, path, code=code, subject=caller.subject))
        return invoke(platform, caller, path)


def invoke(platform: Platform, caller: Caller, path: str) -> Response:
    check_payload_size()  # before the body is read
    status, body, headers = answer_invoke(platform, caller, path, request.args, request.get_data())
    return Response(body, status=status, mimetype="application/json", headers=headers)


_SUMMARY_FIELDS = (
    "activationId",
    "namespace",
    "name",
    "version",
    "start",
    "end",
    "duration",
    "statusCode",
    "annotations",
    "publish",
    "cause",
)


def _register_activations(app: Flask, platform: Platform, authenticate: Auth) -> None:
    @app.get("/api/v1/namespaces/<ns>/activations")
    def list_activations(ns):
        caller = authenticate(ns, write=True)
        name = request.args.get("name")
        since, upto = int_arg("since", None, "since"), int_arg("upto", None, "upto")
        if flag("count") and flag("docs"):
            list_window("activations")  # a bad limit or skip is refused first, as in Activations.scala
            raise BadRequest("The parameter 'docs' is not permitted with 'count'.")

        def page(limit: int | None, skip: int) -> list[dict]:
            docs = platform.list_activations(caller.namespace, name, limit, skip, since, upto)
            return docs if flag("docs") else [{k: d[k] for k in _SUMMARY_FIELDS if k in d} for d in docs]

        return list_or_count(
            "activations", page, lambda: platform.count_activations(caller.namespace, name, since, upto)
        )

    @app.get("/api/v1/namespaces/<ns>/activations/<aid>")
    def get_activation(ns, aid):
        return json_response(platform.get_activation(authenticate(ns, write=True).namespace, aid))

    @app.get("/api/v1/namespaces/<ns>/activations/<aid>/logs")
    def activation_logs(ns, aid):
        return json_response({"logs": platform.get_activation(authenticate(ns, write=True).namespace, aid)["logs"]})

    @app.get("/api/v1/namespaces/<ns>/activations/<aid>/result")
    def activation_result(ns, aid):
        return json_response(platform.get_activation(authenticate(ns, write=True).namespace, aid)["response"])
