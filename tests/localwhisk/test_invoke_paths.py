"""The controller's invoke path ahead of Flask answers as the Flask route does, and hands it everything else."""

from __future__ import annotations

import base64
import json

import pytest
from werkzeug.test import Client

from localwhisk.controller.app import create_app
from localwhisk.core import Platform
from localwhisk.invoker.pool import Invoker
from localwhisk.store import Store

KEY = "0a0b0c0d-0e0f-4000-8000-000000000001:" + "k" * 64
AUTH = {"Authorization": "Basic " + base64.b64encode(KEY.encode()).decode()}


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """(the whole app, the Flask app alone, how many requests reached Flask through the whole app)."""
    tmp = tmp_path_factory.mktemp("fast")
    store, invoker = Store(tmp / "platform.db"), Invoker(max_containers=2, work_root=tmp / "containers")
    platform = Platform(store, invoker, api_host="http://127.0.0.1:9")
    code = "def main(a):\n    if a.get('fail'):\n        return {'error': 'asked to'}\n    return {'k': a.get('k')}\n"
    platform.put_action("guest", "echo", {"exec": {"kind": "python:3.11", "code": code}}, overwrite=False)
    app = create_app(platform, {"guest": KEY})
    fast = app.wsgi_app.app  # FastInvoke, under the namespace normalisation
    flask_app, reached = fast.app, []

    def counted(environ, start_response):
        reached.append(environ["PATH_INFO"])
        return flask_app(environ, start_response)

    fast.app = counted
    yield Client(app), Client(flask_app), reached
    platform.shutdown()
    store.close()


def _both(apps, path: str, body: bytes = b"{}", headers: dict | None = None):
    whole, flask_only, reached = apps
    reached.clear()
    headers = AUTH if headers is None else headers
    ours = whole.post(path, data=body, headers=headers, content_type="application/json")
    fell_back = bool(reached)
    theirs = flask_only.post(path, data=body, headers=headers, content_type="application/json")
    return ours, theirs, fell_back


def _same(ours, theirs) -> None:
    assert ours.status_code == theirs.status_code
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"] == "application/json"
    for name in ("X-Content-Type-Options", "X-Frame-Options"):
        assert ours.headers[name] == theirs.headers[name]
    assert ("x-openwhisk-activation-id" in ours.headers) == ("x-openwhisk-activation-id" in theirs.headers)


def test_a_blocking_invoke_is_answered_ahead_of_flask_as_flask_would(apps):
    ours, theirs, fell_back = _both(apps, "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", b'{"k": 7}')
    assert not fell_back
    _same(ours, theirs)
    assert ours.status_code == 200 and json.loads(ours.data) == json.loads(theirs.data) == {"k": 7}
    ours, theirs, fell_back = _both(apps, "/api/v1/namespaces/guest/actions/echo?blocking=true", b'{"k": 1}')
    assert not fell_back
    _same(ours, theirs)
    record, other = json.loads(ours.data), json.loads(theirs.data)
    assert set(record) == set(other) and record["response"] == other["response"]
    assert ours.headers["x-openwhisk-activation-id"] == record["activationId"]


def test_an_action_error_is_a_502_and_a_non_blocking_invoke_a_202(apps):
    ours, theirs, fell_back = _both(apps, "/api/v1/namespaces/_/actions/echo?blocking=true", b'{"fail": true}')
    assert not fell_back and ours.status_code == 502
    _same(ours, theirs)
    ours, theirs, fell_back = _both(apps, "/api/v1/namespaces/_/actions/echo")
    assert not fell_back and ours.status_code == 202 and set(json.loads(ours.data)) == {"activationId"}
    _same(ours, theirs)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/v1/namespaces/_/actions/nope?blocking=true", b"{}", None, 404),
        ("/api/v1/namespaces/_/actions/echo?blocking=true", b"{}", {"Authorization": "Basic eDp5"}, 401),
        ("/api/v1/namespaces/_/actions/echo?blocking=true", b"{}", {}, 401),
        ("/api/v1/namespaces/_/actions/echo?blocking=true", b"{not json", None, 400),
        ("/api/v1/namespaces/_/actions/echo?blocking=true", b"[1, 2]", None, 400),
        ("/api/v1/namespaces/_/actions/echo?blocking=true&timeout=abc", b"{}", None, 400),
        ("/api/v1/namespaces/_/actions/echo?blocking=true&timeout=400000", b"{}", None, 400),
        ("/api/v1/namespaces/_/actions/echo?blocking=true&timeout=0", b"{}", None, 400),
        ("/api/v1/namespaces/other/actions/echo?blocking=true", b"{}", None, 404),
    ],
)
def test_what_the_fast_path_does_not_take_flask_answers(apps, path, body, headers, status):
    ours, theirs, fell_back = _both(apps, path, body, headers)
    assert fell_back
    assert ours.status_code == theirs.status_code == status
    assert set(json.loads(ours.data)) == {"error", "code"}
    assert json.loads(ours.data)["error"] == json.loads(theirs.data)["error"]


def test_an_unexpected_error_on_the_fast_path_is_openwhisks_json_500(apps):
    """A package whose parameter key is a list (stored before PUT bodies were checked) broke the fast path's
    resolution with a TypeError, which reached the client as the HTTP server's plain-text 500."""
    whole, _, _ = apps
    store = whole.application.wsgi_app.app.platform.store
    package = {"namespace": "guest", "name": "legacy", "version": "0.0.1", "publish": False, "binding": {}}
    package.update(parameters=[{"key": ["a"], "value": 1}], annotations=[])
    store.put("guest", "packages", "legacy", package, 0)
    code = {"kind": "python:3.11", "code": "def main(a):\n    return a\n", "binary": False}
    action = {"namespace": "guest/legacy", "name": "echo", "version": "0.0.1", "exec": code, "publish": False}
    limits = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    store.put("guest", "actions", "legacy/echo", {**action, "parameters": [], "annotations": [], "limits": limits}, 0)
    ours, theirs, fell_back = _both(apps, "/api/v1/namespaces/_/actions/legacy/echo?blocking=true")
    assert not fell_back
    assert ours.status_code == theirs.status_code == 500
    _same(ours, theirs)
    unexpected = "The server encountered an unexpected error."
    assert json.loads(ours.data)["error"] == json.loads(theirs.data)["error"] == unexpected
