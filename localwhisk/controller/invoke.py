"""Invoking an action over REST: one handler (`answer_invoke`), and the fast way to it ahead of Flask.

Both the Flask route and `FastInvoke` call `answer_invoke`, so the checks, the platform call
and the answer are written once. A warm no-op activation cost the controller about 0.7 ms of
CPU, and Flask's request context, URL map, error handlers and after-request hooks were a third
of it, so `POST .../actions/<name>` with nothing unusual about it is answered by `FastInvoke`.
Anything else (another method or path, a refused key, a malformed body or query, an error from
the platform before the activation starts) goes to the Flask app unchanged, which answers it as
it always has: the platform refuses before any side effect, so asking it twice is safe.
"""

from __future__ import annotations

import io
import logging
import re
import sqlite3
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import parse_qsl

from localwhisk.controller.common import (
    MAX_UNREAD_BODY,
    MAX_WAIT_MS,
    SECURITY_HEADERS,
    Auth,
    Caller,
    check_payload_size,
    error_body,
    flag_in,
    int_in,
    invoke_answer,
    parse_json,
)
from localwhisk.core import Platform
from localwhisk.entities import names
from localwhisk.errors import BadRequest, PlatformError

log = logging.getLogger("controller")
_ACTION = re.compile(r"/api/v1/namespaces/([^/]+)/actions/([^/]+(?:/[^/]+)?)")


class FastInvoke:
    """WSGI middleware in front of the controller's Flask app (`app.wsgi_app = FastInvoke(...)`)."""

    def __init__(self, app, platform: Platform, authenticate: Auth) -> None:
        self.app = app
        self.platform = platform
        self.authenticate = authenticate

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        path_info = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")  # as werkzeug reads it
        match = _ACTION.fullmatch(path_info)
        if match is None:
            return self.app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self.app(environ, start_response)
        if length > MAX_UNREAD_BODY:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, should it take the request over
        answer = self._invoke(match.group(1), match.group(2), environ, body)
        if answer is None:
            return self.app(environ, start_response)
        status, payload, headers = answer
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers, *SECURITY_HEADERS],
        )
        return [payload]

    def _invoke(self, ns: str, path: str, environ: dict, body: bytes) -> tuple[int, bytes, list] | None:
        """(status, body, headers), or None for Flask to answer."""
        try:
            args = dict(reversed(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)))  # first wins
            caller = self.authenticate(ns, header=environ.get("HTTP_AUTHORIZATION", ""))
            return answer_invoke(self.platform, caller, names.check_path(path), args, body)
        except (PlatformError, sqlite3.Error):
            return None
        except Exception:  # what may have started an activation is not asked twice; answered as Flask answers it
            log.exception("unexpected error on POST %s", environ.get("PATH_INFO"))
            return 500, error_body("The server encountered an unexpected error."), []


def answer_invoke(
    platform: Platform, caller: Caller, path: str, args: Mapping[str, str], body: bytes
) -> tuple[int, bytes, list]:
    """(status, JSON body, headers) of an invoke with query `args` (first values) and request `body`.

    Raises PlatformError for a refusal, always before anything ran; ValueError for an answer JSON
    cannot hold (NaN), after the activation.
    """
    check_payload_size(len(body))
    timeout_ms = int_in(args, "timeout", None, "timeout")
    if timeout_ms is not None and not 0 < timeout_ms <= MAX_WAIT_MS:  # as Actions.scala reads it: 0 is refused
        raise BadRequest(f"Timeout must be number of milliseconds up to {MAX_WAIT_MS}.")
    wait_s = None if timeout_ms is None else timeout_ms / 1000.0
    activation_id, doc = platform.invoke(
        caller.namespace, path, parse_json(body), flag_in(args, "blocking"), caller.key, wait_s, subject=caller.subject
    )
    return invoke_answer(activation_id, doc, flag_in(args, "result"))
