"""Stem cells: started ahead of need, taken by a matching cold start, refilled, never in the way."""

from __future__ import annotations

import time

import pytest

from localwhisk.entities import kinds
from localwhisk.invoker.pool import SUCCESS, Invoker
from localwhisk.invoker.prewarm import parse

ENV = {"__OW_API_HOST": "http://127.0.0.1:9"}
LIMITS = {"timeout": 30000, "memory": 256, "logs": 1, "concurrency": 1}


def _wait(cond, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _profile(exec_: dict) -> dict:
    """What the platform's invocation passes Invoker.run for an action of that exec."""
    runtime, deny = kinds.container_profile(exec_)
    return {"runtime": runtime, "deny": deny, "image": kinds.image(exec_)}


PY = _profile({"kind": "python:3.11"})


def _run(invoker: Invoker, key: str, memory: int = 256):
    init = {"name": key, "code": "def main(a):\n    return {'k': a['k']}\n", "env": {}}
    return invoker.run(key, init, {"value": {"k": key}}, {**LIMITS, "memory": memory}, env=ENV, **PY)


def test_specs_parse_and_bad_ones_say_what_is_wrong():
    specs = parse("python:3.11@256x2,nodejs:default@128x1,deployer/action-python-ml@1024x1")
    assert [(s.runtime, s.memory_mb, s.count) for s in specs] == [
        ("python", 256, 2),
        ("nodejs", 128, 1),
        ("python", 1024, 1),
    ]
    assert "torch" in specs[0].deny and "torch" not in specs[2].deny
    assert [s.image for s in specs] == [kinds.PYTHON_IMAGE, kinds.NODEJS_IMAGE, kinds.PYTHON_IMAGE]
    assert parse("none") == []
    with pytest.raises(ValueError, match="KIND@MEMORY_MBxCOUNT"):
        parse("python:3.11x2")
    with pytest.raises(ValueError, match="not supported"):
        parse("cobol:1@256x1")


def test_a_matching_cold_start_takes_a_stem_cell_and_the_pool_refills():
    invoker = Invoker(max_containers=4, stem_cells=parse("python:3.11@256x1"))
    try:
        invoker.prewarm(ENV)
        _wait(lambda: invoker.stats()["prewarmed"] == 1, "the stem cell")
        out = _run(invoker, "a")
        assert out.status_code == SUCCESS and out.result == {"k": "a"} and out.init_ms is not None
        assert invoker.stats()["prewarm_hits"] == 1
        _wait(lambda: invoker.stats()["prewarmed"] == 1, "the pool to refill")
        other = _run(invoker, "b", memory=512)  # no stem cell of that size: an ordinary cold start
        assert other.status_code == SUCCESS and invoker.stats()["prewarm_hits"] == 1
        assert invoker.stats()["containers"] == 2
    finally:
        invoker.shutdown()
    assert invoker.stats()["prewarmed"] == 0


def test_stem_cells_give_way_when_the_cap_is_reached():
    invoker = Invoker(max_containers=1, stem_cells=parse("nodejs:20@256x1"))
    try:
        invoker.prewarm(ENV)
        _wait(lambda: invoker.stats()["prewarmed"] == 1, "the stem cell")
        out = _run(invoker, "py")  # the only slot holds a Node.js stem cell: it is evicted, not waited for
        assert out.status_code == SUCCESS
        stats = invoker.stats()
        assert stats["containers"] == 1 and stats["prewarmed"] == 0 and stats["prewarm_hits"] == 0
    finally:
        invoker.shutdown()


def test_the_pool_refills_after_a_cold_start_that_failed_and_none_starts_while_one_runs():
    invoker = Invoker(max_containers=4, stem_cells=parse("python:3.11@256x1"))
    try:
        invoker.prewarm(ENV)
        _wait(lambda: invoker.stats()["prewarmed"] == 1, "the stem cell")
        broken = {"name": "x", "code": "raise SystemExit(3)\n", "env": {}}
        out = invoker.run("x", broken, {"value": {}}, LIMITS, env=ENV, **PY)
        assert out.status_code != SUCCESS and invoker.stats()["prewarm_hits"] == 1
        _wait(lambda: invoker.stats()["prewarmed"] == 1, "the pool to refill after a failed /init")
        # while a cold start holds the stem cell it took, no other stem cell is started beside it
        seen = []
        init = {"name": "s", "code": "def main(a):\n    return {}\n", "env": {}}
        orig = invoker._admit

        def admit(container, init_ms):
            seen.append(invoker.stats()["prewarmed"] + invoker._stems_starting.get(invoker._stem_specs[0], 0))
            return orig(container, init_ms)

        invoker._admit = admit
        assert invoker.run("s", init, {"value": {}}, LIMITS, env=ENV, **PY).status_code == SUCCESS
        assert seen == [0]
        _wait(lambda: invoker.stats()["prewarmed"] == 1, "the pool to refill once the activation ended")
    finally:
        invoker.shutdown()


def _proxies() -> list[int]:
    import os

    from procs import descendants

    def cmdline(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    return [pid for pid in descendants(os.getpid()) if "runtimes.proxy" in cmdline(pid)]


def test_a_shutdown_while_a_stem_cell_starts_leaves_no_process_behind():
    invoker = Invoker(max_containers=2, stem_cells=parse("python:3.11@256x1"))
    before = set(_proxies())
    invoker.prewarm(ENV)
    _wait(lambda: invoker._starting == 1 and set(_proxies()) - before, "the stem cell's process, still starting")
    invoker.shutdown()  # returns once the starting stem cell is killed, not before
    assert set(_proxies()) - before == set()


def test_the_image_is_the_kinds_row_of_the_manifest_and_a_blackbox_keeps_its_own():
    for rt in kinds.MANIFEST:
        assert kinds.image({"kind": rt.kind}) == rt.image
    assert kinds.image({"kind": "nodejs:default"}) == kinds.NODEJS_IMAGE
    assert kinds.image({"kind": "blackbox", "image": "openwhisk/action-python-v3.11:nightly"}) == kinds.PYTHON_IMAGE
    assert kinds.image({"kind": "blackbox", "image": "someone/else:1"}) == "someone/else:1"
    # a stem cell serves the actions its spec's kind would: same image, module set and memory
    (node,) = parse("nodejs:20@256x1")
    assert node.image == kinds.image({"kind": "nodejs:18"}) and node.runtime == "nodejs"
