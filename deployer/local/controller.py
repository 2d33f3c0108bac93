"""The controller: OpenWhisk's REST API v1 over a Platform, as a Flask app.

Paths, status codes and error bodies follow apache/openwhisk docs/rest_api.md so that
`wsk`, the npm `openwhisk` client and our own client work against it unchanged.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets

from flask import Flask, Response, request

from .errors import BadRequest, Forbidden, NotFound, PlatformError, TooLarge, Unauthorized
from .invoker import APPLICATION_ERROR, DEVELOPER_ERROR, SUCCESS
from .platform import MAX_CODE_BYTES, Platform


def _json(body, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _flag(name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


def _int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f"Query parameter {name} must be an integer, got {raw!r}.") from exc


def create_app(platform: Platform, auth: dict[str, str]) -> Flask:
    """`auth` maps namespace -> 'uuid:key'."""
    app = Flask("openwhisk-local")
    app.url_map.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_CODE_BYTES + 1024 * 1024

    def body() -> dict:
        data = request.get_data()
        if not data:
            return {}
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise BadRequest(f"The request content was malformed: {exc}") from exc
        if not isinstance(parsed, dict):
            raise BadRequest("The request content was malformed: expected a JSON object.")
        return parsed

    def authenticate(ns: str) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise Unauthorized("The resource requires authentication, which was not supplied with the request")
        try:
            supplied = base64.b64decode(header[6:]).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unauthorized("The supplied authentication is invalid") from exc
        subject = next((n for n, key in auth.items() if hmac.compare_digest(key, supplied)), None)
        if subject is None:
            raise Unauthorized("The supplied authentication is invalid")
        if ns not in ("_", subject):
            raise Forbidden(f"The supplied authentication is not authorized to access '{ns}'.")
        return subject, supplied

    @app.errorhandler(PlatformError)
    def platform_error(exc: PlatformError):
        return _json({"error": exc.message, "code": secrets.token_hex(16)}, exc.status)

    @app.errorhandler(413)
    def too_large(_exc):
        return _json({"error": "The request content was too large.", "code": secrets.token_hex(16)}, 413)

    @app.errorhandler(404)
    def not_found(_exc):
        return _json({"error": "The requested resource does not exist.", "code": secrets.token_hex(16)}, 404)

    @app.errorhandler(405)
    def bad_method(_exc):
        return _json({"error": "Method not allowed.", "code": secrets.token_hex(16)}, 405)

    @app.get("/")
    @app.get("/api/v1")
    def info():
        return _json({"description": "OpenWhisk-compatible local platform", "api_paths": ["/api/v1"],
                      "runtimes": {"python": ["python:3.11"]},
                      "limits": {"actions_per_minute": None, "max_action_duration": 300000,
                                 "max_action_memory": 2048 * 1024 * 1024, "max_payload_bytes": 1048576},
                      "invoker": platform.invoker.stats()})

    @app.get("/api/v1/namespaces")
    def namespaces():
        subject, _ = authenticate("_")
        return _json([subject])

    # packages
    @app.get("/api/v1/namespaces/<ns>/packages")
    def list_packages(ns):
        subject, _ = authenticate(ns)
        return _json(platform.list_packages(subject))

    @app.route("/api/v1/namespaces/<ns>/packages/<name>", methods=["GET", "PUT", "DELETE"])
    def package(ns, name):
        subject, _ = authenticate(ns)
        if request.method == "PUT":
            return _json(platform.put_package(subject, name, body(), _flag("overwrite")))
        if request.method == "DELETE":
            return _json(platform.delete_package(subject, name))
        return _json(platform.get_package(subject, name))

    # actions
    @app.get("/api/v1/namespaces/<ns>/actions")
    def list_actions(ns, pkg=None):
        subject, _ = authenticate(ns)
        return _json(platform.list_actions(subject, pkg, _int_arg("limit", 30), _int_arg("skip", 0)))

    @app.route("/api/v1/namespaces/<ns>/actions/<path:path>", methods=["GET", "PUT", "DELETE", "POST"],
               strict_slashes=False)
    def action(ns, path):
        subject, key = authenticate(ns)
        if request.method == "GET" and request.path.endswith("/") and path.count("/") <= 1:
            return list_actions(ns, path.rstrip("/"))  # GET actions/<package>/ lists the package
        path = path.rstrip("/")
        if request.method == "PUT":
            return _json(platform.put_action(subject, path, body(), _flag("overwrite")))
        if request.method == "DELETE":
            return _json(platform.delete_action(subject, path))
        if request.method == "GET":
            return _json(platform.get_action(subject, path, code=request.args.get("code", "true") != "false"))
        return invoke(subject, path, key)

    def invoke(subject: str, path: str, key: str) -> Response:
        if request.content_length and request.content_length > 1024 * 1024 + 4096:
            raise TooLarge(f"The request content was too large ({request.content_length} bytes); "
                           f"it exceeds the allowed limit of 1048576 bytes.")
        blocking = _flag("blocking")
        result_only = _flag("result")
        timeout_ms = _int_arg("timeout", None)
        wait_s = None if timeout_ms is None else max(0.0, timeout_ms / 1000.0)
        activation_id, doc = platform.invoke(subject, path, body(), blocking, key, wait_s)
        if doc is None:
            return _json({"activationId": activation_id}, 202)
        status = {SUCCESS: 200, APPLICATION_ERROR: 502, DEVELOPER_ERROR: 502}.get(doc["statusCode"], 500)
        if result_only:
            return _json(doc["response"]["result"], status)
        return _json(doc, status)

    # activations
    @app.get("/api/v1/namespaces/<ns>/activations")
    def list_activations(ns):
        subject, _ = authenticate(ns)
        docs = platform.list_activations(subject, request.args.get("name"), _int_arg("limit", 30) or 30,
                                         _int_arg("skip", 0), _int_arg("since", None), _int_arg("upto", None))
        if not _flag("docs"):
            docs = [{k: d[k] for k in ("activationId", "namespace", "name", "version", "start", "end",
                                       "duration", "statusCode", "annotations", "publish") if k in d}
                    for d in docs]
        return _json(docs)

    @app.get("/api/v1/namespaces/<ns>/activations/<aid>")
    def get_activation(ns, aid):
        subject, _ = authenticate(ns)
        return _json(platform.get_activation(subject, aid))

    @app.get("/api/v1/namespaces/<ns>/activations/<aid>/logs")
    def activation_logs(ns, aid):
        subject, _ = authenticate(ns)
        return _json({"logs": platform.get_activation(subject, aid)["logs"]})

    @app.get("/api/v1/namespaces/<ns>/activations/<aid>/result")
    def activation_result(ns, aid):
        subject, _ = authenticate(ns)
        return _json(platform.get_activation(subject, aid)["response"])

    @app.route("/api/v1/namespaces/<ns>/<collection>", methods=["GET"])
    @app.route("/api/v1/namespaces/<ns>/<collection>/<path:rest>", methods=["GET", "PUT", "POST", "DELETE"])
    def unsupported(ns, collection, rest=None):
        authenticate(ns)
        if collection in ("triggers", "rules", "apis"):
            if request.method == "GET" and rest is None:
                return _json([])
            raise BadRequest(f"{collection} are not supported by the local platform; deploy them to a real "
                             f"OpenWhisk (use --apihost/--auth).")
        raise NotFound()

    return app
