"""DockerContainer against a real Docker engine and the project's runtime image: OpenWhisk's action
contract over the container's bridge address, its limits as cgroup settings, OOM, timeout, logs,
pause, kill and reap. Every test's platform label must end with no container or network."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest

from localwhisk.invoker import docker_container as dc
from localwhisk.invoker.container import ContainerError, ContainerOutOfMemory, ContainerTimeout
from runtimes import contract

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # the session's first test may build the image (minutes)


@pytest.fixture
def make(runtime_image, platform_id, network):
    """make(memory_mb=256, **kw) -> a started DockerContainer on the test's network; killed at teardown."""
    made = []

    def _make(memory_mb: int = 256, start: bool = True, **kw) -> dc.DockerContainer:
        c = dc.DockerContainer(
            "guest/test@1",
            memory_mb=memory_mb,
            log_limit_bytes=1 << 20,
            platform_id=platform_id,
            network=network,
            image=runtime_image,
            **kw,
        )
        made.append(c)
        if start:
            c.start()
        return c

    yield _make
    for c in made:
        c.kill()


def _init(c, code, binary=False, main="main"):
    return c.init({"name": "t", "main": main, "code": code, "binary": binary, "env": {"GREETING": "hi"}}, 60)


def _inspect(c, fmt: str):
    return json.loads(dc._docker("inspect", "--format", "{{json " + fmt + "}}", c.id).stdout)


def test_source_action_init_and_run_over_the_bridge(make):
    c = make(api_host="http://apihost.test:3233")
    assert c.alive() and c.ip and not c.ip.startswith("127.")
    code = (
        "import os, sys\n"
        "def main(a):\n"
        "    return {'hello': a['name'], 'greeting': os.environ['GREETING'],\n"
        "            'api_host': os.environ['__OW_API_HOST'], 'aid': os.environ['__OW_ACTIVATION_ID'],\n"
        "            'python': sys.version.split()[0]}\n"
    )
    assert _init(c, code)[:2] == (200, {"ok": True})
    status, body = c.run({"value": {"name": "Ada"}, "activation_id": "a1"}, 30)
    assert status == 200
    assert body["hello"] == "Ada" and body["greeting"] == "hi" and body["aid"] == "a1"
    assert body["api_host"] == "http://apihost.test:3233" and body["python"].startswith("3.11")
    # a second init is refused as by the official runtime; runs go on
    assert _init(c, code)[0] == contract.FORBIDDEN
    assert c.run({"value": {"name": "Bo"}}, 30)[1]["hello"] == "Bo"


def test_zip_action_with_a_helper_module_and_torch(make):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "import helper\ndef main(a):\n    return helper.answer(a)\n")
        zf.writestr(
            "helper.py",
            "import torch\n"
            "def answer(a):\n"
            "    return {'sum': int(torch.tensor(a['xs']).sum()), 'torch': torch.__version__}\n",
        )
    c = make(memory_mb=1024)
    assert _init(c, base64.b64encode(buf.getvalue()).decode(), binary=True)[0] == 200
    status, body = c.run({"value": {"xs": [1, 2, 3]}}, 120)
    assert status == 200 and body["sum"] == 6 and body["torch"].startswith("2.14.1")


def test_limits_are_the_containers_cgroup_settings(make, platform_id, network):
    c = make(memory_mb=128)
    host = _inspect(c, ".HostConfig")
    assert host["Memory"] == host["MemorySwap"] == 128 * 1024 * 1024
    assert host["CpuShares"] == dc.DEFAULT_CPU_SHARES and host["PidsLimit"] == dc.DEFAULT_PIDS_LIMIT
    assert {"Name": "nofile", "Hard": dc.DEFAULT_NOFILE, "Soft": dc.DEFAULT_NOFILE} in host["Ulimits"]
    assert _inspect(c, ".Config.Labels")[dc.LABEL] == platform_id
    assert list(_inspect(c, ".NetworkSettings.Networks")) == [network.name]
    assert network.gateway and c.ip.rsplit(".", 1)[0] == network.gateway.rsplit(".", 1)[0]
    code = (
        "def main(a):\n"
        "    for p in ('/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory.max'):\n"
        "        try:\n"
        "            return {'limit': open(p).read().strip()}\n"
        "        except OSError:\n"
        "            pass\n"
        "    return {'limit': None}\n"
    )
    assert _init(c, code)[0] == 200
    assert c.run({"value": {}}, 30)[1]["limit"] == str(128 * 1024 * 1024)


def test_memory_hungry_action_is_out_of_memory(make):
    c = make(memory_mb=128)
    code = "def main(a):\n    block = b'x' * (400 * 1024 * 1024)\n    return {'len': len(block)}\n"
    assert _init(c, code)[0] == 200
    with pytest.raises(ContainerOutOfMemory):
        c.run({"value": {}}, 60)
    assert not c.alive()
    c.kill()


def test_timeout_raises_and_removes_the_container(make, platform_id):
    c = make()
    assert _init(c, "import time\ndef main(a):\n    time.sleep(60)\n    return {}\n")[0] == 200
    with pytest.raises(ContainerTimeout):
        c.run({"value": {}}, 1.0)
    assert not c.alive()
    assert dc.leftovers(platform_id)["containers"] == []


def test_logs_per_activation_up_to_the_sentinel(make):
    c = make()
    code = (
        "import sys\ndef main(a):\n    print('out', a['n'])\n    print('err', a['n'], file=sys.stderr)\n    return {}\n"
    )
    assert _init(c, code)[0] == 200
    for n in (1, 2):
        assert c.run({"value": {"n": n}}, 30)[0] == 200
        logs = c.take_logs()
        assert sorted(line.split(" ", 1)[1] for line in logs) == [f"stderr: err {n}", f"stdout: out {n}"]
        assert all(line[:4].isdigit() and line.split(" ", 1)[0].endswith("Z") for line in logs)
    assert not any(contract.SENTINEL in line for line in c.take_logs(0.2))


def test_failed_init_returns_its_logs(make):
    c = make()
    status, body, logs = _init(c, "raise ValueError('broken at import')\n")
    assert status == contract.BAD_GATEWAY and "broken at import" in body["error"]
    assert any("ValueError: broken at import" in line for line in logs)


def test_pause_freezes_and_the_next_run_unpauses(make):
    c = make()
    assert _init(c, "def main(a):\n    return {'n': a['n']}\n")[0] == 200
    c.pause()
    assert c.paused and _inspect(c, ".State.Paused") is True
    assert c.run({"value": {"n": 1}}, 30) == (200, {"n": 1})  # unpaused on use
    assert not c.paused and _inspect(c, ".State.Paused") is False
    c.pause()
    c.unpause()
    assert c.run({"value": {"n": 2}}, 30) == (200, {"n": 2})
    c.pause()  # a paused container is removed as well
    c.kill()


def test_kill_leaves_no_container_and_is_idempotent(make, platform_id):
    c = make()
    cid = c.id
    c.kill()
    c.kill()
    assert not c.alive()
    assert dc._docker("ps", "-aq", "--filter", f"id={cid}").stdout.strip() == ""
    assert dc.leftovers(platform_id)["containers"] == []
    with pytest.raises(ContainerError):
        c.run({"value": {}}, 5)


def test_a_container_that_cannot_start_fails_and_is_removed(runtime_image, platform_id, network):
    c = dc.DockerContainer(
        "k",
        memory_mb=256,
        log_limit_bytes=1 << 20,
        platform_id=platform_id,
        network=network,
        image="deployer/no-such-image:0",
    )
    with pytest.raises(ContainerError, match="docker run"):
        c.start()
    c.kill()
    assert dc.leftovers(platform_id)["containers"] == []


def test_unknown_runtime_is_refused():
    with pytest.raises(ContainerError, match="no docker image for runtime"):
        dc.DockerContainer("k", memory_mb=256, log_limit_bytes=1024, runtime="swift")


def test_reap_removes_orphans_of_one_platform_only(runtime_image, docker_engine):
    mine, other = dc.DockerNetwork(f"test-reap-{id(object())}"), dc.DockerNetwork(f"test-keep-{id(object())}")
    try:
        for net in (mine, other):
            net.create()
        orphans = [
            dc.DockerContainer(
                "k",
                memory_mb=128,
                log_limit_bytes=1024,
                platform_id=mine.platform_id,
                network=mine,
                image=runtime_image,
            )
            for _ in range(2)
        ]
        keeper = dc.DockerContainer(
            "k", memory_mb=128, log_limit_bytes=1024, platform_id=other.platform_id, network=other, image=runtime_image
        )
        for c in (*orphans, keeper):
            c.start()
        orphans[0].pause()  # a paused orphan goes too
        removed = dc.reap(mine.platform_id)  # as a platform's next start would: the objects are forgotten
        assert sorted(removed["containers"]) == sorted(c.id for c in orphans)
        assert len(removed["networks"]) == 1
        assert dc.leftovers(mine.platform_id) == {"containers": [], "networks": []}
        assert dc.leftovers(other.platform_id)["containers"] == [keeper.id] and keeper.alive()
        for c in orphans:
            c.kill()  # already gone: still fine
    finally:
        dc.reap(mine.platform_id)
        dc.reap(other.platform_id)
    assert dc.leftovers(other.platform_id) == {"containers": [], "networks": []}
