"""What the controller refuses, it refuses at once and as OpenWhisk does: JSON errors, 429 and 503, never a hang.

A namespace holds at most `concurrent_invocations` activations in flight (OpenWhisk's
ActivationThrottler): the next invoke is a 429 with its message, made before any record; and
a connection past the HTTP server's cap is a 503 in the same JSON as every other error.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from localwhisk.server import _ApiServer
from localwhisk.supervisor import LocalPlatform

ALLOWED = 2
GATED = (
    "import os, time\n"
    "def main(args):\n"
    "    while not os.path.exists(args['gate']):\n"
    "        time.sleep(0.01)\n"
    "    return {}\n"
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory, running_platform):
    state = tmp_path_factory.mktemp("admission")
    with running_platform(
        LocalPlatform(state, max_containers=4, prewarm="none", concurrent_invocations=ALLOWED)
    ) as handle:
        yield handle


def _api(platform, method: str, path: str, **kwargs) -> requests.Response:
    user, key = platform.auth.split(":", 1)
    url = f"{platform.apihost}/api/v1/namespaces/_/{path}"
    return requests.request(method, url, auth=(user, key), timeout=60, **kwargs)


def _done(platform, activation_id: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _api(platform, "GET", f"activations/{activation_id}").status_code != 200:
        assert time.monotonic() < deadline, f"activation {activation_id} did not end"
        time.sleep(0.05)


def test_an_invoke_past_the_namespaces_limit_is_429_and_the_slot_comes_back(platform, tmp_path):
    gate = tmp_path / "gate"
    put = _api(platform, "PUT", "actions/gated", json={"exec": {"kind": "python:3.11", "code": GATED}})
    assert put.status_code == 200, put.text
    held = [_api(platform, "POST", "actions/gated", json={"gate": str(gate)}) for _ in range(ALLOWED)]
    assert [r.status_code for r in held] == [202] * ALLOWED
    before = _api(platform, "GET", "activations", params={"count": "true"}).json()["activations"]
    for blocking in ("true", "false"):
        refused = _api(platform, "POST", "actions/gated", params={"blocking": blocking}, json={"gate": str(gate)})
        assert refused.status_code == 429, refused.text
        assert refused.headers["Content-Type"] == "application/json"
        body = refused.json()
        assert body["error"] == f"Too many concurrent requests in flight (count: {ALLOWED}, allowed: {ALLOWED})."
        assert set(body) == {"error", "code"}
    gate.touch()
    for r in held:
        _done(platform, r.json()["activationId"])
    after = _api(platform, "GET", "activations", params={"count": "true"}).json()["activations"]
    assert after == before + ALLOWED  # the refused invokes left no record
    again = _api(platform, "POST", "actions/gated", params={"blocking": "true"}, json={"gate": str(gate)})
    assert again.status_code == 200, again.text


def test_a_connection_past_the_cap_is_a_503_in_openwhisks_json(platform):
    host, port = platform.apihost.removeprefix("http://").split(":")
    held = []
    try:
        for _ in range(_ApiServer.MAX_CONNECTIONS):
            held.append(socket.create_connection((host, int(port)), timeout=30))
        extra = socket.create_connection((host, int(port)), timeout=30)
        held.append(extra)
        answer = b""
        while chunk := extra.recv(65536):
            answer += chunk
    finally:
        for s in held:
            s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert b"Content-Type: application/json" in head
    assert set(json.loads(body)) == {"error", "code"}
