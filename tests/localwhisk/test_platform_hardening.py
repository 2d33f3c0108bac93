"""Faults an attacker or a careless client sends the platform: always OpenWhisk's JSON error, nothing left behind."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest
import requests

from deployer.errors import ActivationFailedError, OpenWhiskError
from localwhisk.supervisor import LocalPlatform

ECHO = {"kind": "python:3.11", "code": "def main(a):\n    return {'n': len(a.get('text', ''))}\n"}


def _api(platform, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, platform.apihost + path, auth=tuple(platform.auth.split(":", 1)), timeout=60, **kwargs
    )


def _is_openwhisk_error(resp: requests.Response, status: int) -> bool:
    body = resp.json()
    return (
        resp.status_code == status
        and resp.headers["Content-Type"] == "application/json"
        and set(body) == {"error", "code"}
    )


def test_api_replies_are_not_sniffed_or_framed(platform):
    resp = _api(platform, "GET", "/api/v1/namespaces/_/actions")
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["X-Frame-Options"] == "DENY"


def test_deeply_nested_json_is_a_400_not_an_html_500(platform):
    platform.client.create_action("h-echo", ECHO)
    body = '{"a":' * 5000 + "1" + "}" * 5000
    resp = _api(
        platform,
        "POST",
        "/api/v1/namespaces/_/actions/h-echo?blocking=true",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert _is_openwhisk_error(resp, 400) and "malformed" in resp.json()["error"]


@pytest.mark.parametrize(
    "query", ["limit=99999999999999999999999", "since=1e26", "limit=-1", "skip=-3", "limit=201", "upto=abc"]
)
def test_bad_numbers_in_list_queries_are_400(platform, query):
    resp = _api(platform, "GET", f"/api/v1/namespaces/_/activations?{query}")
    assert _is_openwhisk_error(resp, 400), resp.text
    if query.startswith(("limit", "skip")):  # the actions list has no since/upto
        assert _is_openwhisk_error(_api(platform, "GET", f"/api/v1/namespaces/_/actions?{query}"), 400)


def test_a_huge_timeout_is_refused_before_anything_runs(platform):
    platform.client.create_action("h-never", ECHO)
    for timeout in ("1e26", "9" * 27, "-5", "300001"):
        resp = _api(platform, "POST", f"/api/v1/namespaces/_/actions/h-never?blocking=true&timeout={timeout}", json={})
        assert _is_openwhisk_error(resp, 400), (timeout, resp.text)
    assert platform.client.list_activations("h-never") == []


def test_nan_in_a_result_is_a_developer_error_in_valid_json(platform):
    platform.client.create_action(
        "h-nan", {"kind": "python:3.11", "code": "def main(a):\n    return {'x': float('nan')}\n"}
    )
    resp = _api(platform, "POST", "/api/v1/namespaces/_/actions/h-nan?blocking=true", json={})
    record = json.loads(resp.text, parse_constant=lambda name: pytest.fail(f"{name} in the reply: not JSON"))
    # OpenWhisk's Python runtime: the proxy finds no JSON object in the answer, a 502 (a developer error)
    assert resp.status_code == 502 and record["response"]["status"] == "action developer error"
    assert "NaN or Infinity" in record["response"]["result"]["error"]


def test_payload_limit_counts_utf8_bytes_not_escaped_ascii(platform):
    platform.client.create_action("h-size", ECHO)
    text = "é" * 300_000  # 600 KB of UTF-8; 1.8 MB once json.dumps escapes it to \\u00e9
    assert platform.client.invoke("h-size", {"text": text}, result=True) == {"n": 300_000}
    with pytest.raises(OpenWhiskError, match="too large"):
        platform.client.invoke("h-size", {"text": "é" * 600_000})


def _bomb(unpacked_bytes: int) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__main__.py", "def main(a):\n    return {}\n")
        zf.writestr("padding.bin", b"\0" * unpacked_bytes)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
def test_an_archive_unpacking_past_the_cap_fails_init_and_leaves_nothing(tmp_path, kind):
    code = _bomb(8 * 1024 * 1024)
    assert len(code) < 64 * 1024
    with LocalPlatform(tmp_path / "state", max_unpacked_mb=2, prewarm="none") as info:  # no stem cells' folders
        client = info.client()
        client.create_action("bomb", {"kind": kind, "code": code})
        with pytest.raises(ActivationFailedError) as caught:
            client.invoke("bomb", {})
        assert caught.value.activation["response"]["status"] == "action developer error"
        assert f"unpacks to more than the limit of {2 * 1024 * 1024} bytes" in caught.value.result["error"]
        assert list((tmp_path / "state" / "containers").iterdir()) == []


def test_container_folders_go_with_their_containers_and_are_reaped_after_a_crash(tmp_path):
    writer = {
        "kind": "python:3.11",
        "code": "import tempfile\n"
        "def main(a):\n"
        "    f = tempfile.NamedTemporaryFile(delete=False)\n"
        "    f.write(b'x' * 1000)\n"
        "    return {'path': f.name}\n",
    }
    state = tmp_path / "state"
    owner = LocalPlatform(state, prewarm="none")  # stem cells' folders would blur the count
    try:
        client = owner.start().client()
        client.create_action("writer", writer)
        path = client.invoke("writer", {}, result=True)["path"]
        assert path.startswith(str(state / "containers"))  # the action's TMPDIR is its container's folder
        owner.kill()  # a crash leaves the folder behind...
        assert len(list((state / "containers").iterdir())) == 1
        client = owner.start().client()  # ...and the next start reaps it
        assert list((state / "containers").iterdir()) == []
        client.invoke("writer", {}, result=True)
        owner.stop()  # a clean stop removes live containers' folders
        assert list((state / "containers").iterdir()) == []
    finally:
        owner.stop()


def test_a_full_state_disk_answers_json_errors_and_the_platform_recovers(tmp_path, small_fs, fill_fs):
    disk = small_fs("state", "48m")
    with LocalPlatform(disk / "platform") as info:
        client = info.client()
        client.create_action("before", ECHO)
        fill_fs(disk)
        for method, path, body in (
            ("PUT", "/api/v1/namespaces/_/actions/after", {"exec": ECHO}),
            ("POST", "/api/v1/namespaces/_/actions/before?blocking=true", {}),
        ):
            resp = requests.request(
                method, info.apihost + path, json=body, auth=tuple(info.auth.split(":", 1)), timeout=60
            )
            assert resp.status_code == 500 and resp.headers["Content-Type"] == "application/json", resp.text
            assert "check the state folder's disk" in resp.json()["error"]
        (disk / "filler").unlink()
        assert client.invoke("before", {"text": "ok"}, result=True) == {"n": 2}
        client.create_action("after", ECHO)


OWNER = """
import json, sys, threading
from localwhisk.supervisor import LocalPlatform

def start():
    platform = LocalPlatform(sys.argv[1])
    info = platform.start()
    print(json.dumps({"server": platform._proc.pid, "s3": info.s3_pid, "api": info.apihost}), flush=True)

t = threading.Thread(target=start)  # from a thread that ends: PR_SET_PDEATHSIG would fire here
t.start()
t.join()
threading.Event().wait()
"""


def test_a_platform_stops_itself_when_its_owner_is_killed(tmp_path):
    import os
    import select
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from localwhisk.server import read_stop_report

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        started = json.loads(owner.stdout.readline())
        assert requests.get(started["api"] + "/api/v1", timeout=30).ok, "serves while its owner lives"
        fds = {name: os.pidfd_open(started[name]) for name in ("server", "s3")}
    finally:
        owner.kill()
        owner.wait(timeout=30)
        owner.stdout.close()
    outlived = []
    for name, fd in fds.items():
        if not select.select([fd], [], [], 120)[0]:
            outlived.append(name)
            os.kill(started[name], signal.SIGTERM)
        os.close(fd)
    assert not outlived, f"the platform's {outlived} outlived its SIGKILLed owner"
    report = read_stop_report(tmp_path)
    assert report["state"] == "stopped" and report["problems"] == [], report
