"""The local platform end to end: real controller, invoker and action processes on loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from deployer import manifest
from deployer.errors import ActivationFailedError, AuthError, NotFoundError, OpenWhiskError, PayloadTooLargeError
from localwhisk.supervisor import LocalPlatform
from mlcore.openwhisk import OpenWhiskClient

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = "import time\ndef main(a):\n    time.sleep(float(a.get('s', 0)))\n    return {'slept': a.get('s', 0)}\n"
# Touches `started`, then holds its container until the test creates `release` (or 120 s pass).
GATE = (
    "import os, time\n"
    "def main(a):\n"
    "    open(a['started'], 'w').close()\n"
    "    deadline = time.time() + 120\n"
    "    while not os.path.exists(a['release']) and time.time() < deadline:\n"
    "        time.sleep(0.01)\n"
    "    return {'released': os.path.exists(a['release'])}\n"
)


def _py(code: str) -> dict:
    return {"kind": "python:3.11", "code": code}


def _annotation(record: dict, key: str):
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def test_hello_manifest_deploys_and_sequence_runs(platform):
    c = platform.client
    names = manifest.deploy(c, ROOT / "manifests/hello.yaml")
    assert names == [
        "demo",
        "demo/hello",
        "demo/upper",
        "demo/hello-js",
        "demo/shout",
        "trigger greeted",
        "rule shout-when-greeted",
    ]
    assert c.invoke("demo/hello", {"name": "Ada"}, result=True) == {"greeting": "Hello, Ada!"}
    assert c.invoke("demo/hello-js", {"name": "Ada"}, result=True) == {"greeting": "Hello, Ada!"}
    record = c.invoke("demo/shout", {"name": "Ada"})
    assert record["response"]["result"] == {"greeting": "HELLO, ADA!"}
    assert len(record["logs"]) == 2  # a sequence's logs are its component activation ids
    assert c.get_activation(record["logs"][0])["name"] == "hello"
    # the rule runs the sequence with the trigger's parameters
    fired = c.get_activation(c.fire_trigger("greeted", {}))
    started = json.loads(fired["logs"][0])["activationId"]
    assert c.wait_activation(started, timeout_s=60, result=True) == {"greeting": "HELLO, A TRIGGER!"}
    removed = manifest.undeploy(c, ROOT / "manifests/hello.yaml")
    assert "demo" in removed and "rule shout-when-greeted" in removed and "trigger greeted" in removed
    with pytest.raises(NotFoundError):
        c.get_action("demo/hello")
    with pytest.raises(NotFoundError):
        c.get_trigger("greeted")


def test_cold_then_warm(platform):
    c = platform.client
    c.create_action("coldwarm", _py("def main(a):\n    return {'ok': True}\n"))
    first = c.invoke("coldwarm", {})
    second = c.invoke("coldwarm", {})
    assert _annotation(first, "initTime") is not None and _annotation(first, "initTime") > 0
    assert _annotation(second, "initTime") is None
    assert _annotation(second, "waitTime") is not None


def test_non_blocking_returns_id_then_record_and_logs(platform):
    c = platform.client
    c.create_action("logger", _py("def main(a):\n    print('line', a['n'])\n    return {'n': a['n']}\n"))
    started = c.invoke("logger", {"n": 7}, blocking=False)
    assert set(started) == {"activationId"}
    result = c.wait_activation(started["activationId"], timeout_s=60, result=True)
    assert result == {"n": 7}
    logs = c.activation_logs(started["activationId"])
    assert len(logs) == 1 and logs[0].endswith("stdout: line 7")
    assert c.activation_result(started["activationId"])["result"] == {"n": 7}
    assert any(a["activationId"] == started["activationId"] for a in c.list_activations("logger"))


def test_application_error_is_502_with_result(platform):
    c = platform.client
    c.create_action("fails", _py("def main(a):\n    return {'error': 'no digit in that image'}\n"))
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("fails", {}, result=True)
    assert info.value.status == 502 and info.value.result == {"error": "no digit in that image"}
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("fails", {})
    assert info.value.activation["response"]["status"] == "application error"


def test_timeout_kills_and_records_developer_error(platform):
    c = platform.client
    c.create_action("slow", _py(SLEEPER), limits={"timeout": 1000})
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("slow", {"s": 600})  # only the kill at the limit ends it inside pytest's timeout
    assert info.value.activation["response"]["status"] == "action developer error"
    assert info.value.activation["duration"] >= 1000
    assert "exceeded its time limits of 1000 milliseconds" in info.value.result["error"]
    assert c.invoke("slow", {"s": 0}, result=True) == {"slept": 0}  # a fresh container serves the next one


def test_memory_limit_aborts_action(platform):
    c = platform.client
    hog = "def main(a):\n    blocks = [bytearray(16 << 20) for _ in range(40)]\n    return {'n': len(blocks)}\n"
    c.create_action("hog", _py(hog), limits={"memory": 128})
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("hog", {})
    assert info.value.result["error"] == "The action exhausted its memory and was aborted."


def test_memory_limit_counts_what_a_cgroup_could_not_reclaim(platform):
    """Pages of a mapped file are reclaimable, as under a container's cgroup limit: 192 MB of them fit in 128."""
    c = platform.client
    reader = (
        "import mmap, tempfile, time\n"
        "def main(a):\n"
        "    with tempfile.TemporaryFile(dir='.') as fh:\n"
        "        for _ in range(192):\n"
        "            fh.write(b'x' * (1 << 20))\n"
        "        fh.flush()\n"
        "        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:\n"
        "            total = sum(m[i] for i in range(0, len(m), 4096))\n"
        "            time.sleep(0.5)  # held past the platform's 100 ms memory checks\n"
        "    return {'pages': total // 120}\n"
    )
    c.create_action("mapper", _py(reader), limits={"memory": 128})
    assert c.invoke("mapper", {}, result=True) == {"pages": 192 * 256}


def test_oversized_payload_and_result(platform):
    c = platform.client
    c.create_action("echo", _py("def main(a):\n    return a\n"))
    with pytest.raises(PayloadTooLargeError, match="1048576"):
        c.invoke("echo", {"blob": "x" * (1024 * 1024 + 10)})
    c.create_action("big", _py("def main(a):\n    return {'blob': 'y' * (2 << 20)}\n"))
    with pytest.raises(ActivationFailedError, match="exceeded the allowed length"):
        c.invoke("big", {})


def test_bad_auth_and_unknown_action(platform):
    bad = OpenWhiskClient(platform.apihost, platform.auth.split(":")[0] + ":wrong")
    with pytest.raises(AuthError):
        bad.list_actions()
    resp = requests.get(platform.apihost + "/api/v1/namespaces/_/actions", timeout=10)
    assert resp.status_code == 401 and "error" in resp.json()
    resp = requests.get(
        platform.apihost + "/api/v1/namespaces/other/actions", auth=tuple(platform.auth.split(":", 1)), timeout=10
    )
    assert resp.status_code == 403
    with pytest.raises(NotFoundError):
        platform.client.invoke("no/such-action", {})


def test_bad_definitions_are_rejected(platform):
    c = platform.client
    with pytest.raises(OpenWhiskError, match="runtime 'swift:5.7' is not supported by this platform"):
        c.create_action("swift", {"kind": "swift:5.7", "code": "func main() {}"})
    with pytest.raises(OpenWhiskError, match="cannot run on the local platform in process mode"):
        c.create_action("img", {"kind": "blackbox", "image": "someone/else:latest", "code": "x"})
    with pytest.raises(OpenWhiskError, match="out of range"):
        c.create_action("lim", _py("def main(a):\n    return a\n"), limits={"timeout": 10**9})
    with pytest.raises(NotFoundError, match="Package"):
        c.create_action("nopkg/x", _py("def main(a):\n    return a\n"))
    c.create_package("full")
    c.create_action("full/x", _py("def main(a):\n    return a\n"))
    with pytest.raises(OpenWhiskError, match="not empty") as info:
        c.delete_package("full")
    assert info.value.status == 409


def test_package_parameters_merge_under_action_and_invoke_params(platform):
    c = platform.client
    c.create_package("merge", parameters={"a": "pkg", "b": "pkg", "c": "pkg"})
    c.create_action("merge/show", _py("def main(a):\n    return a\n"), parameters={"b": "action", "c": "action"})
    assert c.invoke("merge/show", {"c": "invoke"}, result=True) == {"a": "pkg", "b": "action", "c": "invoke"}


def test_twenty_concurrent_invocations_all_recorded(platform):
    c = platform.client
    c.create_action("conc", _py(SLEEPER))
    results, errors = [], []

    def one(i: int) -> None:
        try:
            results.append(c.invoke("conc", {"s": 0.2, "i": i}))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = {r["activationId"] for r in results}
    assert len(ids) == 20
    listed = {a["activationId"] for a in c.list_activations("conc", limit=100)}
    assert ids <= listed


def _wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _invoker_stats(info) -> dict:
    return requests.get(info.apihost + "/api/v1", timeout=5).json()["invoker"]


def test_cap_queues_and_records_wait_time(tmp_path):
    with LocalPlatform(tmp_path / "state", max_containers=1) as info:
        c = info.client()
        c.create_action("gate", _py(GATE))
        release = tmp_path / "release"
        first = c.invoke("gate", {"started": str(tmp_path / "first"), "release": str(release)}, blocking=False)[
            "activationId"
        ]
        _wait_for((tmp_path / "first").exists, "the first activation to hold the only container")
        second = c.invoke("gate", {"started": str(tmp_path / "second"), "release": str(release)}, blocking=False)[
            "activationId"
        ]
        _wait_for(lambda: _invoker_stats(info)["queued"] == 1, "the second activation to queue")
        assert not (tmp_path / "second").exists()
        released_ms = time.time() * 1000
        release.touch()
        a, b = c.wait_activation(first, timeout_s=60), c.wait_activation(second, timeout_s=60)
        # the second could only start once the first let go of the container, and waitTime says so
        assert a["response"]["result"] == b["response"]["result"] == {"released": True}
        assert b["start"] < released_ms <= b["start"] + _annotation(b, "waitTime") + 1
        assert _invoker_stats(info)["queued"] == 0


def test_idle_containers_are_evicted(tmp_path):
    with LocalPlatform(tmp_path, idle_timeout_s=0.5) as info:
        c = info.client()
        c.create_action("idle", _py("def main(a):\n    return {}\n"))
        c.invoke("idle", {})
        deadline = time.monotonic() + 20
        while (
            requests.get(info.apihost + "/api/v1", timeout=5).json()["invoker"]["containers"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert requests.get(info.apihost + "/api/v1", timeout=5).json()["invoker"]["containers"] == 0
        assert _annotation(c.invoke("idle", {}), "initTime") is not None


def test_blocking_invoke_past_wait_turns_into_202(tmp_path):
    with LocalPlatform(tmp_path, blocking_timeout_s=1) as info:
        c = info.client()
        c.create_action("s", _py(SLEEPER))
        resp = requests.post(
            info.apihost + "/api/v1/namespaces/_/actions/s?blocking=true",
            json={"s": 3},
            auth=tuple(info.auth.split(":", 1)),
            timeout=30,
        )
        assert resp.status_code == 202
        aid = resp.json()["activationId"]
        assert c.wait_activation(aid, timeout_s=30, result=True) == {"slept": 3}
        assert c.invoke("s", {"s": 2}, result=True) == {"slept": 2}  # the client follows the 202 itself


def test_state_persists_across_restart(tmp_path):
    owner = LocalPlatform(tmp_path)
    info = owner.start()
    try:
        c = info.client()
        c.create_action("keep", _py("def main(a):\n    return {'kept': True}\n"))
        aid = c.invoke("keep", {})["activationId"]
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=info.s3_endpoint,
            aws_access_key_id=info.s3_access_key,
            aws_secret_access_key=info.s3_secret_key,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="persist")
        s3.put_object(Bucket="persist", Key="jobs/j/model/1", Body=b"w")
        info = owner.restart()
        c = info.client()
        assert c.get_activation(aid)["response"]["result"] == {"kept": True}
        assert c.invoke("keep", {}, result=True) == {"kept": True}
        s3 = boto3.client(
            "s3",
            endpoint_url=info.s3_endpoint,
            aws_access_key_id=info.s3_access_key,
            aws_secret_access_key=info.s3_secret_key,
            region_name="us-east-1",
        )
        assert s3.get_object(Bucket="persist", Key="jobs/j/model/1")["Body"].read() == b"w"
    finally:
        owner.stop()


def test_activation_in_flight_when_platform_dies_is_closed_not_lost(tmp_path):
    owner = LocalPlatform(tmp_path)
    info = owner.start()
    try:
        c = info.client()
        c.create_action("gate", _py(GATE))
        started = tmp_path / "gate-started"
        aid = c.invoke("gate", {"started": str(started), "release": str(tmp_path / "gate-never")}, blocking=False)[
            "activationId"
        ]
        _wait_for(started.exists, "the action to start")
        owner.kill()
        info = owner.start()
        record = info.client().get_activation(aid)
        assert record["response"]["status"] == "whisk internal error"
        assert "platform stopped" in record["response"]["result"]["error"]
    finally:
        owner.stop()


def test_action_process_killed_mid_run_is_developer_error_and_next_runs(platform):
    c = platform.client
    code = (
        "import os, signal\n"
        "def main(a):\n"
        "    if a.get('die'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return {'alive': True}\n"
    )
    c.create_action("crash", _py(code))
    with pytest.raises(ActivationFailedError, match="exited unexpectedly"):
        c.invoke("crash", {"die": True})
    assert c.invoke("crash", {}, result=True) == {"alive": True}


def test_logs_are_truncated_at_log_limit(platform):
    c = platform.client
    c.create_action(
        "chatty",
        _py("def main(a):\n    for i in range(3):\n        print('x' * 100)\n    return {}\n"),
        limits={"logs": 0},
    )
    record = c.invoke("chatty", {})
    assert len(record["logs"]) == 1 and "Logs were truncated" in record["logs"][0]


def test_init_failure_is_developer_error_with_logs(platform):
    c = platform.client
    c.create_action("broken", _py("import no_such_module_here\ndef main(a):\n    return {}\n"))
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("broken", {})
    assert info.value.activation["response"]["status"] == "action developer error"
    assert "no_such_module_here" in info.value.result["error"]
    assert any("ModuleNotFoundError" in line for line in info.value.activation["logs"])


def test_a_local_platform_takes_ports_no_outgoing_connection_can_hold():
    """A restart needs its ports back; the kernel gives ephemeral ports to every connection on the
    machine, so one could sit on the old port between a crash and the restart (seen under load)."""
    from localwhisk.supervisor import stable_free_port

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    port = stable_free_port()
    assert 20000 <= port < low
    owner = LocalPlatform(Path("/nonexistent-never-started"))
    assert 20000 <= owner.port < low and 20000 <= owner.s3_port < low
