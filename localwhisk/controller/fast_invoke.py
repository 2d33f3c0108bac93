"""The invoke's own way through the controller, ahead of Flask.

A warm no-op activation cost the controller about 0.7 ms of CPU, and Flask's request context,
URL map, error handlers and after-request hooks were a third of it. `POST .../actions/<name>`
with nothing unusual about it is answered here, with the same checks, the same platform call
and the same response. Anything else (another method or path, a refused key, a malformed body
or query, an error from the platform before the activation starts) goes to the Flask app
unchanged, which answers it as it always has: the platform refuses before any side effect, so
asking it twice is safe.
"""

from __future__ import annotations

import io
import logging
import re
import sqlite3
from http import HTTPStatus
from urllib.parse import parse_qsl

from localwhisk.controller.common import (
    MAX_UNREAD_BODY,
    MAX_WAIT_MS,
    SECURITY_HEADERS,
    Auth,
    error_body,
    flag_in,
    invoke_answer,
    parse_json,
)
from localwhisk.core import Platform
from localwhisk.entities import names
from localwhisk.errors import PlatformError

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
            path = names.check_path(path)
            wait_s = None
            if "timeout" in args:
                timeout_ms = int(args["timeout"])
                if not 0 < timeout_ms <= MAX_WAIT_MS:
                    return None
                wait_s = timeout_ms / 1000.0
            params = parse_json(body)
            activation_id, doc = self.platform.invoke(
                caller.namespace, path, params, flag_in(args, "blocking"), caller.key, wait_s, subject=caller.subject
            )
        except (PlatformError, ValueError, sqlite3.Error):
            return None
        except Exception:  # what may have started an activation is not asked twice; answered as Flask answers it
            log.exception("unexpected error on POST %s", environ.get("PATH_INFO"))
            return 500, error_body("The server encountered an unexpected error."), []
        try:
            return invoke_answer(activation_id, doc, flag_in(args, "result"))
        except ValueError:  # not JSON (NaN): as the Flask app's handler of the unexpected answers
            return 500, error_body("The server encountered an unexpected error."), []
