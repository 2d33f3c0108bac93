"""The local platform in docker mode: Python actions in the runtime image, limits as cgroups, nothing left."""

from __future__ import annotations

import pytest

from deployer.errors import ActivationFailedError
from localwhisk.invoker import docker_container as dc
from localwhisk.invoker.factory import platform_id
from localwhisk.supervisor import LocalPlatform

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

PROBE = (
    "import os, json, urllib.error, urllib.request\n"
    "def main(a):\n"
    "    limit = open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip()\n"
    "    req = urllib.request.Request(os.environ['__OW_API_HOST'] + '/api/v1/namespaces/_/actions')\n"
    "    import base64\n"
    "    token = base64.b64encode(os.environ['__OW_API_KEY'].encode()).decode()\n"
    "    req.add_header('Authorization', 'Basic ' + token)\n"
    "    names = [x['name'] for x in json.load(urllib.request.urlopen(req, timeout=30))]\n"
    "    try:\n"
    "        s3 = urllib.request.urlopen(a['s3'], timeout=30).status\n"
    "    except urllib.error.HTTPError as exc:\n"
    "        s3 = exc.code\n"
    "    return {'limit': int(limit), 'names': names, 'hostname': os.uname().nodename, 's3': s3}\n"
)


@pytest.fixture
def docker_platform(runtime_image, tmp_path):
    state = tmp_path / "state"
    with LocalPlatform(state, containers="docker", prewarm="python:3.11@256x1") as info:
        yield info
    assert dc.leftovers(platform_id(state)) == {"containers": [], "networks": []}


def test_an_action_runs_in_a_container_with_its_memory_as_cgroup_and_reaches_api_and_s3(docker_platform):
    c = docker_platform.client()
    c.create_action(
        "probe", {"kind": "python:3.11", "code": PROBE}, limits={"memory": 256}, annotations={"provide-api-key": True}
    )
    out = c.invoke("probe", {"s3": docker_platform.s3_endpoint + "/"}, result=True)
    assert out["limit"] == 256 * 1024 * 1024
    assert "probe" in out["names"]  # the API on the host's loopback, reached through the relay
    assert out["s3"] == 403  # the embedded S3 answered (an unsigned request), through its relay


def test_the_container_has_a_route_out_as_an_invoker_gives_it(docker_platform):
    code = (
        "def main(a):\n"
        "    rows = [r.split() for r in open('/proc/net/route').read().splitlines()[1:] if r.strip()]\n"
        "    return {'default_route': any(r[1] == '00000000' for r in rows)}\n"
    )
    c = docker_platform.client()
    c.create_action("routes", {"kind": "python:3.11", "code": code})
    assert c.invoke("routes", {}, result=True) == {"default_route": True}
    network = dc.DockerNetwork(platform_id(docker_platform.state_dir)).name
    assert dc._docker("network", "inspect", "--format", "{{.Internal}}", network).stdout.strip() == "false"


def test_memory_hog_is_killed_by_the_cgroup_and_reported_as_openwhisk_does(docker_platform):
    c = docker_platform.client()
    hog = "def main(a):\n    blocks = [bytearray(16 << 20) for _ in range(40)]\n    return {'n': len(blocks)}\n"
    c.create_action("hog", {"kind": "python:3.11", "code": hog}, limits={"memory": 128})
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("hog", {})
    assert info.value.result["error"] == "The action exhausted its memory and was aborted."
    assert info.value.activation["response"]["status"] == "action developer error"


def test_a_timed_out_action_and_its_setsid_child_are_gone_with_the_container(docker_platform):
    c = docker_platform.client()
    code = (
        "import subprocess, sys, time\n"
        "def main(a):\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "    time.sleep(600)\n"
    )
    c.create_action("stuck", {"kind": "python:3.11", "code": code}, limits={"timeout": 3000})
    with pytest.raises(ActivationFailedError, match="exceeded its time limits of 3000"):
        c.invoke("stuck", {})
    live = dc.leftovers(platform_id(docker_platform.state_dir))["containers"]
    labels = [
        dc._docker("inspect", "--format", '{{index .Config.Labels "org.deployer.action"}}', cid).stdout for cid in live
    ]
    assert not any("stuck" in label for label in labels)  # removed, and everything in it with it


def _invoker(info) -> dict:
    import requests

    return requests.get(info.apihost + "/api/v1", timeout=10).json()["invoker"]


def test_a_stem_cell_container_takes_the_first_cold_start(docker_platform):
    import time

    deadline = time.monotonic() + 120
    while _invoker(docker_platform)["prewarmed"] < 1:  # started in the background after `up`
        assert time.monotonic() < deadline, "no stem cell container came up"
        time.sleep(0.1)
    c = docker_platform.client()
    c.create_action(
        "first", {"kind": "python:3.11", "code": "def main(a):\n    return {'ok': 1}\n"}, limits={"memory": 256}
    )
    record = c.invoke("first", {})
    assert record["response"]["result"] == {"ok": 1}
    assert next(a["value"] for a in record["annotations"] if a["key"] == "initTime") is not None
    assert _invoker(docker_platform)["prewarm_hits"] == 1


def test_a_killed_platforms_containers_are_reaped_by_its_next_start(runtime_image, tmp_path):
    state = tmp_path / "state"
    owner = LocalPlatform(state, containers="docker", prewarm="none")
    try:
        client = owner.start().client()
        client.create_action("x", {"kind": "python:3.11", "code": "def main(a):\n    return {}\n"})
        client.invoke("x", {})
        client.close()
        owner.kill()  # SIGKILL: nothing of the platform's got to remove its container or network
        left = dc.leftovers(platform_id(state))
        assert len(left["containers"]) == 1 and len(left["networks"]) == 1
        owner.start()
        assert set(left["containers"]).isdisjoint(dc.leftovers(platform_id(state))["containers"])
    finally:
        owner.stop()
        after = dc.leftovers(platform_id(state))
        dc.reap(platform_id(state))  # whatever went wrong above, nothing stays
    assert after == {"containers": [], "networks": []}
