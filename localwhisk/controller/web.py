"""Web actions: `/api/v1/web/<namespace>/<package>/<action>.<ext>` without the API key.

Follows apache/openwhisk's WebActions.scala: only actions annotated `web-export` answer;
`require-whisk-auth` asks for a secret header (or, when `true`, valid credentials); the
request becomes `__ow_method`, `__ow_headers`, `__ow_path` (and `__ow_query`/`__ow_body`
for `raw-http` actions) beside the query and body parameters, which may not override
reserved or `final` parameters; the extension decides how the result becomes a response.

Whether a body is character data (passed as a string) or binary (base64) is decided as
Pekko HTTP, which OpenWhisk runs on, decides it, for request bodies and `.http` answers
alike. Every header an `.http` answer sets is checked before anything reaches the wire: a
name that is not an RFC 7230 token, or a value with a control character or beyond Latin-1,
makes the answer invalid (as any other malformed answer: 400), and hop-by-hop headers are
dropped, since this server frames the response itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import parse_qsl

from flask import Flask, Response, request
from werkzeug.http import parse_options_header

from localwhisk.controller import common as api
from localwhisk.entities import kinds, names
from localwhisk.entities.names import QualifiedName
from localwhisk.errors import BadRequest, NotFound, Unauthorized
from localwhisk.invoker.pool import APPLICATION_ERROR, SUCCESS

EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
RESERVED = {"__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_query", "__ow_body"}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
_CORS_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
# Pekko's registered media types that are character data (MediaTypes.scala); multipart/* is too
_TEXT_TYPES = {
    "application": frozenset(
        "atom+xml base64 javascript json json-patch+json rss+xml soap+xml vnd.api+json vnd.google-earth.kml+xml "
        "x-latex x-vrml x-www-form-urlencoded xhtml+xml xml-dtd xml".split()
    ),
    "text": frozenset(
        "asp cache-manifest calendar css csv html markdown mcf plain richtext tab-separated-values uri-list "
        "vnd.wap.wml vnd.wap.wmlscript x-asm x-c x-component x-h x-java-source x-pascal x-script x-scriptcsh "
        "x-scriptelisp x-scriptksh x-scriptlisp x-scriptperl x-scriptperl-module x-scriptphyton x-scriptrexx "
        "x-scriptscheme x-scriptsh x-scripttcl x-scripttcsh x-scriptzsh x-server-parsed-html x-setext x-sgml "
        "x-speech x-uuencode x-vcalendar x-vcard xml".split()
    ),
}
# registered as binary: a charset parameter does not make them text (unregistered types it does)
_BINARY_MAIN_TYPES = ("audio", "image", "video", "message")
_BINARY_APPLICATION = frozenset(
    "octet-stream pdf zip x-gzip x-compressed x-tar x-gtar x-7z-compressed x-bzip x-bzip2 x-rar-compressed "
    "java-archive msword excel mspowerpoint postscript font-woff x-font-truetype x-font-opentype".split()
)
_TOKEN = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 7230 tchar
_FIELD_VALUE = re.compile(r"\A[\t\x20-\x7e\x80-\xff]*\Z")  # VCHAR, SP, HTAB, obs-text: Latin-1 without controls
_MEDIA_TYPE = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# framing and connection headers are this server's to set, never an action's
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"})


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
    """The body as WebActions.scala hands it on: a JSON value or form fields (not for raw actions), else a
    string, base64 for a binary type, application/json (raw) and a body without a type (octet-stream)."""
    data = request.get_data()
    if not data:
        return None
    mimetype, params = parse_options_header(request.headers.get("Content-Type", ""))
    mimetype = mimetype.lower() or "application/octet-stream"
    if not raw and _is_json(mimetype):
        return api.json_body(allow_non_object=True)
    if not raw and mimetype == "application/x-www-form-urlencoded":
        return dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
    if mimetype == "application/json" or not is_text(mimetype, params):
        return base64.b64encode(data).decode()
    return data.decode("utf-8", "replace")


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def is_text(mimetype: str, params: dict) -> bool:
    """Whether Pekko HTTP counts `mimetype` as character data: its registered text types and multipart/*; an
    unregistered type only with a charset parameter."""
    main, _, sub = mimetype.lower().partition("/")
    if main == "multipart" or sub in _TEXT_TYPES.get(main, ()):
        return True
    if main in _BINARY_MAIN_TYPES or (main == "application" and sub in _BINARY_APPLICATION):
        return False
    return "charset" in {key.lower() for key in params}


def _arguments(target, path: str) -> dict:
    raw = bool(_annotation(target.doc, "raw-http", False))
    body = _request_body(raw)
    meta = {
        "__ow_method": request.method.lower(),
        "__ow_path": path,
        "__ow_headers": {k.lower(): v for k, v in request.headers.items()},
    }
    if raw:
        query_string = request.query_string.decode("utf-8", "replace")
        return {**meta, "__ow_query": query_string, "__ow_body": body if body is not None else ""}
    query = {k: v for k, v in request.args.items()}
    body_params = body if isinstance(body, dict) else {}
    final = set()
    if _annotation(target.doc, "final", False):
        final = {p["key"] for p in target.doc.get("parameters", [])} | set(target.package_params)
    if (set(query) | set(body_params)) & (RESERVED | final):  # an opaque body names no parameter
        raise BadRequest("Request defines parameters that are not allowed (e.g., reserved properties).")
    if body is not None and not isinstance(body, dict):
        body_params = {"__ow_body": body}
    return {**meta, **query, **body_params}


def _respond(doc: dict, ext: str) -> Response:
    status, result = doc["statusCode"], doc["response"]["result"]
    if status not in (SUCCESS, APPLICATION_ERROR):
        return api.error_response(400, "There was an error processing your request.")
    if status == APPLICATION_ERROR:
        if not isinstance(result, dict) or "error" not in result:
            return api.error_response(404, "Response does not include requested property.")
        result = result["error"]
    try:
        return _TRANSCODERS[ext](result)
    except (ValueError, TypeError, RecursionError):  # what JSON cannot carry (NaN) or nests beyond reach
        return api.error_response(400, f"Response is not valid '{_MEDIA[ext]}'.")


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
    except _UnknownContentType:
        return api.error_response(400, "Response did not specify a known content-type.")
    except _ContentTypeMismatch:
        return api.error_response(400, "Response type in header did not match generated content type.")
    except (ValueError, TypeError, KeyError, RecursionError):
        return api.error_response(400, "Response is not valid 'message/http'.")


class _UnknownContentType(ValueError):
    pass


class _ContentTypeMismatch(ValueError):
    pass


def _http_response(result) -> Response:
    if not isinstance(result, dict):
        raise ValueError("not an object")
    headers = _http_headers(result.get("headers", {}))
    code = _status_code(result.get("statusCode"))
    body = result.get("body")
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
    mimetype, params = parse_options_header(content_type) if content_type else ("", {})
    if content_type is not None and not _MEDIA_TYPE.match(mimetype):
        raise _UnknownContentType(content_type)
    if body is None or body == "":
        return Response(status=code or 204, headers=headers)
    if not isinstance(body, str):
        if content_type and not _is_json(mimetype.lower()):
            raise _ContentTypeMismatch(content_type)
        return Response(
            json.dumps(body, allow_nan=False),
            status=code or 200,
            headers=headers,
            content_type=content_type or "application/json",
        )
    return Response(
        _http_body(body, mimetype or "text/html", params),
        status=code or 200,
        headers=headers,
        content_type=content_type or "text/html; charset=UTF-8",
    )


def _status_code(code) -> int | None:
    """None, or a final status 200-599 given as a whole number or its digits (OpenWhisk's toIntExact / toInt);
    a 1xx is not a final answer: the client would wait for another."""
    if code is None:
        return None
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 3:
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
        raise ValueError("bad status code")
    return code


def _http_body(body: str, mimetype: str, params: dict) -> bytes:
    if (_is_json(mimetype.lower()) and kinds.is_binary_code(body)) or not is_text(mimetype, params):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _ContentTypeMismatch("a binary body must be base64") from exc
    return body.encode()


def _http_headers(raw) -> list[tuple[str, str]]:
    """(name, value) for every header of an `.http` answer, hop-by-hop ones dropped.

    Raises:
        ValueError: not an object of name -> string, number, boolean or a (nested) list of them; a name that
            is not a token; a value with a control character or a character beyond Latin-1.
    """
    if not isinstance(raw, dict):
        raise ValueError("headers must be an object")
    out = []
    for name, value in raw.items():
        if not _TOKEN.match(name):
            raise ValueError("a header name must be a token")
        lower = name.lower()
        pending = [value]
        while pending:
            item = pending.pop(0)
            if isinstance(item, list):
                pending[:0] = item
                continue
            text = _header_text(item)
            if not _FIELD_VALUE.match(text):
                raise ValueError("a header value must be Latin-1 text without control characters")
            if lower not in _HOP_BY_HOP and not lower.startswith("proxy-"):
                out.append((name, text))
    return out


def _header_text(item) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str):
        return item
    if isinstance(item, (int, float)) and item == item and item not in (float("inf"), float("-inf")):
        return str(item)
    raise ValueError("invalid header")


_MEDIA = {
    ".http": "message/http",
    ".json": "application/json",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".text": "text/plain",
}
_TRANSCODERS = {".http": _as_http, ".json": _as_json, ".html": _as_html, ".svg": _as_svg, ".text": _as_text}
