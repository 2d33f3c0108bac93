"""The OpenWhisk client's retry policy against a real HTTP server on loopback that misbehaves on cue.

The server answers each request with the next step of a script (close the connection
without an answer, answer a status, stall) and counts what it received, so each test
reads how many times the client really sent a request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlcore.errors import (
    ActivationFailedError,
    AuthError,
    ConflictError,
    MLCoreError,
    NotFoundError,
    OpenWhiskError,
    UnreachableError,
)
from mlcore.openwhisk import OpenWhiskClient, RetryPolicy, record_memory_mb, sibling_action, split_name

FAST = RetryPolicy.default(attempts=3, backoff_s=0.01)
ACTIVATION = {"activationId": "a1", "response": {"status": "success", "success": True, "result": {"ok": 1}}}


class ScriptedServer:
    """steps: a list of "close" | "stall" | an HTTP status (answered with `body`); the last repeats."""

    def __init__(self, port: int = 0) -> None:
        self.steps: list = [200]
        self.body: dict = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the platform's controller

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with server._lock:
                    server.requests.append((self.command, self.path))
                    step = server.steps.pop(0) if len(server.steps) > 1 else server.steps[0]
                if step == "close":  # the request arrived; the answer never comes
                    self.close_connection = True
                    return
                if step == "stall":
                    time.sleep(1.5)
                    step = 200
                payload = json.dumps(server.body).encode()
                self.send_response(step)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def methods(self) -> list[str]:
        return [method for method, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.close()


def client_for(url: str, **kwargs) -> OpenWhiskClient:
    return OpenWhiskClient(url, "user:key", retry=kwargs.pop("retry", FAST), **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_get_whose_connection_is_closed_unanswered_is_retried(server):
    server.steps, server.body = ["close", "close", 200], ACTIVATION
    with client_for(server.url) as client:
        assert client.get_activation("a1") == ACTIVATION
    assert server.methods() == ["GET"] * 3


def test_a_get_answered_503_is_retried_and_the_last_answer_is_raised_when_retries_run_out(server):
    server.steps, server.body = [503, 504, 200], ACTIVATION
    with client_for(server.url) as client:
        assert client.get_activation("a1") == ACTIVATION
        assert server.methods() == ["GET"] * 3
        server.steps, server.body = [503], {"error": "controller restarting"}
        with pytest.raises(OpenWhiskError, match="503 controller restarting") as caught:
            client.get_activation("a1")
    assert caught.value.status == 503 and len(server.requests) == 3 + 4  # the first try and 3 retries


def test_a_sent_post_invoke_is_never_retried(server):
    with client_for(server.url) as client:
        server.steps = ["close"]
        with pytest.raises(UnreachableError, match="cannot reach the OpenWhisk API"):
            client.invoke("pkg/act", {"x": 1}, blocking=False)
        assert server.methods() == ["POST"]
        for status in (502, 503, 504):
            server.requests.clear()
            server.steps, server.body = [status], {"error": "gateway"}
            with pytest.raises(OpenWhiskError):
                client.invoke("pkg/act", {"x": 1})
            assert server.methods() == ["POST"], status


def test_a_refused_connection_is_retried_for_a_post(server):
    # nothing listens on the port at first; the server comes up while the client backs off
    port = free_port()
    started: list[ScriptedServer] = []
    timer = threading.Timer(0.3, lambda: started.append(ScriptedServer(port)))
    timer.start()
    try:
        with client_for(f"http://127.0.0.1:{port}", retry=RetryPolicy.default(attempts=4, backoff_s=0.25)) as client:
            began = time.monotonic()
            assert client.invoke("pkg/act", {"x": 1}, blocking=False) == {}
        assert time.monotonic() - began >= 0.3
        assert started[0].methods() == ["POST"]  # sent once, when someone listened
    finally:
        timer.join()
        for srv in started:
            srv.close()


def test_a_refused_connection_raises_unreachable_once_retries_run_out():
    with client_for(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(UnreachableError, match="cannot reach the OpenWhisk API") as caught:
            client.invoke("pkg/act", blocking=False)
    assert isinstance(caught.value, MLCoreError)


def test_a_put_is_retried_only_with_overwrite(server):
    with client_for(server.url) as client:
        server.steps, server.body = [503, 200], {"name": "t"}
        assert client.create_trigger("t") == {"name": "t"}
        assert server.methods() == ["PUT", "PUT"]
        server.requests.clear()
        server.steps, server.body = [503, 200], {"error": "busy"}
        with pytest.raises(OpenWhiskError, match="503 busy"):
            client.create_trigger("t", overwrite=False)  # a second copy would answer 409 to its own create
        assert server.methods() == ["PUT"]


def test_a_throttled_invoke_is_retried_since_it_never_ran(server):
    server.steps, server.body = [429, 202], {"activationId": "a2"}
    with client_for(server.url) as client:
        assert client.invoke("pkg/act", blocking=False) == {"activationId": "a2"}
    assert server.methods() == ["POST", "POST"]


def test_a_timeout_is_not_retried_even_for_a_get(server):
    server.steps = ["stall"]
    with client_for(server.url, timeout_s=0.5) as client:
        with pytest.raises(UnreachableError, match="did not answer in 0 s|did not answer in 1 s"):
            client.get_activation("a1")
    assert server.methods() == ["GET"]


def test_answers_map_to_the_error_classes(server):
    with client_for(server.url) as client:
        for status, cls in ((401, AuthError), (403, AuthError), (404, NotFoundError), (409, ConflictError)):
            server.steps, server.body = [status], {"error": "no"}
            with pytest.raises(cls) as caught:
                client.get_action("a")
            assert caught.value.status == status and caught.value.body == {"error": "no"}
        server.steps, server.body = [502], {"error": "it broke"}
        with pytest.raises(ActivationFailedError, match="action a failed: it broke") as failed:
            client.invoke("a", result=True)
        assert failed.value.result == {"error": "it broke"} and failed.value.activation is None
    with pytest.raises(AuthError, match="uuid:key"):
        OpenWhiskClient(server.url, "no-colon")


def test_from_environment_reads_the_activation_context(server, monkeypatch):
    monkeypatch.delenv("__OW_API_HOST", raising=False)
    monkeypatch.delenv("__OW_API_KEY", raising=False)
    with pytest.raises(OpenWhiskError, match="__OW_API_HOST and __OW_API_KEY are not set"):
        OpenWhiskClient.from_environment()
    monkeypatch.setenv("__OW_API_HOST", server.url)
    monkeypatch.setenv("__OW_API_KEY", "user:key")
    server.steps, server.body = [202], {"activationId": "a3"}
    with OpenWhiskClient.from_environment() as client:
        assert client.invoke("/ns/pkg/worker", blocking=False)["activationId"] == "a3"
    assert server.requests == [("POST", "/api/v1/namespaces/ns/actions/pkg/worker?blocking=false&result=false")]


def test_find_activation_is_none_while_the_activation_runs(server):
    with client_for(server.url) as client:
        server.steps = [404]
        assert client.find_activation("a1") is None
        server.steps, server.body = [200], ACTIVATION
        assert client.find_activation("a1") == ACTIVATION


def test_names():
    assert split_name("/ns/pkg/act") == ("ns", "pkg/act") and split_name("pkg/act") == ("_", "pkg/act")
    assert sibling_action("/_/mnist-train/train", "worker") == "/_/mnist-train/worker"
    assert record_memory_mb({"annotations": [{"key": "limits", "value": {"memory": 512}}]}) == 512
    assert record_memory_mb({}) is None
