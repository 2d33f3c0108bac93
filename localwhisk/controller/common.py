"""What every REST route of the controller shares: JSON replies, query parsing, Basic auth.

Kept apart from the routes so the trigger, rule and web-action routes use the same rules
for errors, list windows and credentials as the entity routes.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, request

from localwhisk.core import MAX_PAYLOAD_BYTES
from localwhisk.entities import names
from localwhisk.errors import BadRequest, Forbidden, TooLarge, Unauthorized
from localwhisk.invoker.pool import APPLICATION_ERROR, DEVELOPER_ERROR, SUCCESS

MAX_LIST_LIMIT = 200
MAX_WAIT_MS = 300000  # a blocking invoke's ?timeout=, as OpenWhisk bounds it
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"))


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, allow_nan=False), status=status, mimetype="application/json", headers=headers)


def error_body(message: str) -> bytes:
    return json.dumps({"error": message, "code": secrets.token_hex(16)}).encode()


def error_response(status: int, message: str) -> Response:
    return Response(error_body(message), status=status, mimetype="application/json")


def invoke_answer(activation_id: str, doc: dict | None, result_only: bool) -> tuple[int, bytes, list]:
    """(status, JSON body, headers) answering an invoke: 202 and the id while it runs, else its record (or
    only its result), 502 for an action's failure. Raises ValueError for what JSON cannot hold."""
    if doc is None:
        return 202, json.dumps({"activationId": activation_id}).encode(), []
    status = {SUCCESS: 200, APPLICATION_ERROR: 502, DEVELOPER_ERROR: 502}.get(doc["statusCode"], 500)
    body = doc["response"]["result"] if result_only else doc
    return status, json.dumps(body, allow_nan=False).encode(), [("x-openwhisk-activation-id", activation_id)]


def flag(name: str) -> bool:
    return flag_in(request.args, name)


def flag_in(args, name: str) -> bool:
    """A `?name=true` query flag, from any mapping of the query's first values."""
    return args.get(name, "false").lower() == "true"


def int_arg(name: str, default: int | None, collection: str = "request") -> int | None:
    return int_in(request.args, name, default, collection)


def int_in(args, name: str, default: int | None, collection: str = "request") -> int | None:
    """A `?name=` integer from any mapping of the query's first values, refused as OpenWhisk refuses it."""
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"The value '{raw}' is not an integer for {collection}.") from exc
    if not -(2**63) <= value < 2**63:
        raise BadRequest(f"The value '{raw}' is not an integer for {collection}.")
    return value


def list_window(collection: str) -> tuple[int, int]:
    """(limit, skip) as OpenWhisk reads them: limit 0..200 (0 means 200), skip >= 0."""
    limit, skip = int_arg("limit", 30, collection), int_arg("skip", 0, collection)
    if not 0 <= limit <= MAX_LIST_LIMIT:
        raise BadRequest(f"The value '{limit}' is not in the range of 0 to {MAX_LIST_LIMIT} for {collection}.")
    if skip < 0:
        raise BadRequest(f"The value '{skip}' is not greater than or equal to 0 for {collection}.")
    return limit or MAX_LIST_LIMIT, skip


def list_or_count(
    collection: str, page: Callable[[int | None, int], list], count: Callable[[], int] | None = None
) -> Response:
    """A list route's answer: `page(limit, skip)` (limit None: every match), or with `?count=true` OpenWhisk's
    `{collection: N}`, N the matches past `skip` (CouchDbRestStore.count); `count()` counts without reading
    every match."""
    limit, skip = list_window(collection)
    if flag("count"):
        total = count() if count is not None else len(page(None, 0))
        return json_response({collection: max(0, total - skip)})
    return json_response(page(limit, skip))


def json_body(allow_non_object: bool = False):
    return parse_json(request.get_data(), allow_non_object)


def parse_json(data: bytes, allow_non_object: bool = False):
    """A request body as the controller reads it: empty is {}, NaN and Infinity are refused."""
    if not data:
        return {}
    try:
        parsed = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The request content was malformed: {str(exc)[:200]}") from exc
    if not isinstance(parsed, dict) and not allow_non_object:
        raise BadRequest("The request content was malformed: expected a JSON object.")
    return parsed


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


@dataclass
class Caller:
    """Who is calling (`subject`, its key) and which namespace the request names (`namespace`)."""

    subject: str
    key: str
    namespace: str


class Auth:
    """HTTP Basic auth against `{namespace: 'uuid:key'}`; other namespaces are readable only."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    def identify(self, header: str | None = None) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "") if header is None else header
        if not header.startswith("Basic "):
            return None
        try:
            supplied = base64.b64decode(header[6:], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        subject = next((n for n, key in self.keys.items() if hmac.compare_digest(key, supplied)), None)
        return (subject, supplied) if subject else None

    def __call__(self, ns: str, write: bool = False, header: str | None = None) -> Caller:
        """`header`: the Authorization header, where there is no Flask request to read it from."""
        header = request.headers.get("Authorization", "") if header is None else header
        names.check_namespace(ns)
        if not header.startswith("Basic "):
            raise Unauthorized("The resource requires authentication, which was not supplied with the request")
        found = self.identify(header)
        if found is None:
            raise Unauthorized("The supplied authentication is invalid")
        subject, key = found
        namespace = subject if ns == "_" else ns
        if write and namespace != subject:
            raise Forbidden(f"The supplied authentication is not authorized to access '{ns}'.")
        return Caller(subject, key, namespace)


MAX_UNREAD_BODY = 6 * MAX_PAYLOAD_BYTES + 4096


def check_payload_size(length: int | None = None) -> None:
    """A cheap bound before parsing (the request's own length unless given); the limit itself is on the parsed
    parameters' UTF-8 bytes.

    JSON may escape each byte of a string as `\\u00XX` (six characters), so only a body more
    than six times the limit is refused unread.
    """
    length = request.content_length if length is None else length
    if length and length > MAX_UNREAD_BODY:
        raise TooLarge(
            f"The request content was too large ({length} bytes); "
            f"it exceeds the allowed limit of {MAX_PAYLOAD_BYTES} bytes."
        )
