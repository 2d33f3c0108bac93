"""Web actions: `/api/v1/web/<namespace>/<package>/<action>.<ext>` without the API key.

Follows apache/openwhisk's WebActions.scala: only actions annotated `web-export` answer;
`require-whisk-auth` asks for a secret header (or, when `true`, valid credentials); the
request becomes `__ow_method`, `__ow_headers`, `__ow_path` (and `__ow_query`/`__ow_body`
for `raw-http` actions) beside the query and body parameters, which may not override
reserved or `final` parameters; the extension decides how the result becomes a response.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qsl

from flask import Flask, Response, request

from . import api_common as api
from . import kinds, names
from .errors import BadRequest, NotFound, Unauthorized
from .invoker import APPLICATION_ERROR, SUCCESS
from .names import QualifiedName

EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
RESERVED = {"__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_query", "__ow_body"}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
_CORS_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
_TEXT_SUBTYPES = ("json", "xml", "javascript", "x-www-form-urlencoded")


def _annotation(doc: dict, key: str, default=None):
    return next((a.get("value") for a in doc.get("annotations", []) if a["key"] == key), default)


def split_extension(segment: str) -> tuple[str, str]:
    """('name', '.ext'); no known extension means `.http`, as OpenWhisk has it."""
    for ext in EXTENSIONS:
        if segment.endswith(ext) and len(segment) > len(ext):
            return segment[: -len(ext)], ext
    return segment, ".http"


def register(app: Flask, platform, authenticate) -> None:
    @app.route("/api/v1/web/<ns>/<pkg>/<path:rest>", methods=METHODS)
    def web_action(ns, pkg, rest):
        segment, _, tail = rest.partition("/")
        name, ext = split_extension(segment)
        names.check_namespace(ns)
        qname = QualifiedName(ns, name if pkg == "default" else f"{names.check_segment(pkg)}/{name}")
        names.check_segment(name)
        try:
            target = platform.resolve_action(ns, qname)
        except NotFound:
            raise NotFound() from None
        if not _annotation(target.doc, "web-export", False):
            raise NotFound()
        cors = {} if _annotation(target.doc, "web-custom-options", False) else _cors()
        if request.method == "OPTIONS" and cors:
            return Response(status=200, headers=cors)
        if request.method != "OPTIONS" and not _authorized(target.doc, authenticate):
            raise Unauthorized("The resource requires authentication, which was not supplied with the request")
        api.check_payload_size()
        args = _arguments(target, "/" + tail if tail else "")
        activation_id, doc = platform.invoke(ns, qname.path, args, True, authenticate.keys.get(ns, ""), subject=ns)
        response = _respond(doc, ext) if doc else api.error_response(202, "Response not yet ready.")
        response.headers["x-openwhisk-activation-id"] = activation_id
        response.headers.update(cors)
        return response


def _cors() -> dict:
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH",
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", _CORS_HEADERS),
    }


def _authorized(action: dict, authenticate) -> bool:
    required = _annotation(action, "require-whisk-auth")
    if required is None or required is False:
        return True
    if required is True:
        return authenticate.identify() is not None
    if isinstance(required, (str, int)) and not isinstance(required, bool):
        return request.headers.get("X-Require-Whisk-Auth") == str(required)
    return False


def _request_body(raw: bool):
    """The body as OpenWhisk hands it on: JSON or form fields merged, else a string (base64 for binary)."""
    data = request.get_data()
    if not data:
        return None
    mimetype = (request.mimetype or "").lower()
    if not raw and (mimetype == "application/json" or mimetype.endswith("+json")):
        return api.json_body(allow_non_object=True)
    if not raw and mimetype == "application/x-www-form-urlencoded":
        return dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
    if mimetype == "application/json" or not _is_text(mimetype):
        return base64.b64encode(data).decode()
    return data.decode("utf-8", "replace")


def _is_text(mimetype: str) -> bool:
    main, _, sub = mimetype.partition("/")
    return main == "text" or sub in _TEXT_SUBTYPES or sub.endswith(("+json", "+xml"))


def _arguments(target, path: str) -> dict:
    raw = bool(_annotation(target.doc, "raw-http", False))
    body = _request_body(raw)
    meta = {
        "__ow_method": request.method.lower(),
        "__ow_path": path,
        "__ow_headers": {k.lower(): v for k, v in request.headers.items()},
    }
    if raw:
        return {**meta, "__ow_query": request.query_string.decode(), "__ow_body": body if body is not None else ""}
    query = {k: v for k, v in request.args.items()}
    body_params = body if isinstance(body, dict) else ({} if body is None else {"__ow_body": body})
    final = set()
    if _annotation(target.doc, "final", False):
        final = {p["key"] for p in target.doc.get("parameters", [])} | set(target.package_params)
    if (set(query) | set(body_params)) & (RESERVED | final):
        raise BadRequest("Request defines parameters that are not allowed (e.g., reserved properties).")
    return {**meta, **query, **body_params}


def _respond(doc: dict, ext: str) -> Response:
    status, result = doc["statusCode"], doc["response"]["result"]
    if status not in (SUCCESS, APPLICATION_ERROR):
        return api.error_response(400, "There was an error processing your request.")
    if status == APPLICATION_ERROR:
        if not isinstance(result, dict) or "error" not in result:
            return api.error_response(404, "Response does not include requested property.")
        result = result["error"]
    return _TRANSCODERS[ext](result)


def _field(result, *keys):
    if isinstance(result, dict):
        return next((result[k] for k in keys if k in result), None)
    return result


def _as_json(result) -> Response:
    if isinstance(result, (dict, list)):
        return api.json_response(result)
    return api.error_response(400, "Response is not valid 'application/json'.")


def _as_html(result) -> Response:
    html = _field(result, "body", "html")
    if isinstance(html, str):
        return Response(html, mimetype="text/html")
    return api.error_response(400, "Response is not valid 'text/html'.")


def _as_svg(result) -> Response:
    svg = _field(result, "body", "svg")
    if isinstance(svg, str):
        return Response(svg.encode(), mimetype="image/svg+xml")
    return api.error_response(400, "Response is not valid 'image/svg+xml'.")


def _as_text(result) -> Response:
    if isinstance(result, dict):
        if "body" not in result and "text" not in result:
            return api.error_response(404, "Response does not include requested property.")
        result = result["body"] if "body" in result else result["text"]
    if isinstance(result, (dict, list)):
        text = json.dumps(result, indent=2)
    elif isinstance(result, bool) or result is None:
        text = json.dumps(result)
    else:
        text = str(result)
    return Response(text, mimetype="text/plain")


def _as_http(result) -> Response:
    try:
        return _http_response(result)
    except (ValueError, TypeError, KeyError):
        return api.error_response(400, "Response is not valid 'message/http'.")


def _http_response(result) -> Response:
    if not isinstance(result, dict):
        raise ValueError("not an object")
    headers = _http_headers(result.get("headers", {}))
    code = result.get("statusCode")
    if code is not None:
        if isinstance(code, bool) or not isinstance(code, (int, str)) or not 100 <= int(code) <= 599:
            raise ValueError("bad status code")
        code = int(code)
    body = result.get("body")
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
    if body is None or body == "":
        return Response(status=code or 204, headers=headers)
    if not isinstance(body, str):
        if content_type and not (
            content_type.split(";")[0].strip() == "application/json"
            or content_type.split(";")[0].strip().endswith("+json")
        ):
            return api.error_response(400, "Response type in header did not match generated content type.")
        return Response(
            json.dumps(body), status=code or 200, headers=headers, content_type=content_type or "application/json"
        )
    return Response(
        _http_body(body, content_type or "text/html"),
        status=code or 200,
        headers=headers,
        content_type=content_type or "text/html; charset=UTF-8",
    )


def _http_body(body: str, content_type: str) -> bytes:
    mimetype = content_type.split(";")[0].strip().lower()
    is_json = mimetype == "application/json" or mimetype.endswith("+json")
    if (is_json and kinds.is_binary_code(body)) or not _is_text(mimetype):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a binary body must be base64") from exc
    return body.encode()


def _http_headers(raw) -> list[tuple[str, str]]:
    if not isinstance(raw, dict):
        raise ValueError("headers must be an object")
    out = []
    for key, value in raw.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                out.append((key, "true" if item else "false"))
            elif isinstance(item, (str, int, float)):
                out.append((key, str(item)))
            else:
                raise ValueError("invalid header")
    return out


_TRANSCODERS = {".http": _as_http, ".json": _as_json, ".html": _as_html, ".svg": _as_svg, ".text": _as_text}
