"""A `deployer fedavg run` stopped from outside leaves no worker, tracker or shared-memory block behind.

`kill PID` is how service managers, CI runners and impatient users stop a long study;
SIGKILL is how the OOM killer does. Both used to leave spawned workers waiting forever.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedavg.run import load_checkpoint
from procs.tree import descendants

ROOT = Path(__file__).resolve().parents[2]
TINY = "--model 2nn --clients 4 --frac 0.5 --epochs 1 --batch 10 --train-limit 800 --test-limit 300 --seed 5"


def _workers_and_helpers(pid: int) -> tuple[set[int], set[int]]:
    """The executor's workers, and the command's own children that serve multiprocessing: the fork server
    (the workers' parent) and the resource tracker, which exit on their own once the command's end of their
    pipes closes: after the command, never joined by it."""
    helpers = set(descendants(pid)) - {pid}
    workers = {p for helper in helpers for p in descendants(helper) if p != helper}
    return workers, helpers - workers


def _shared_blocks(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps if "/dev/shm/psm_" in line}


def _wait_exit(pids: set[int], timeout_s: float) -> set[int]:
    """The pids still running after timeout_s, waiting on their pidfds (no polling)."""
    deadline = time.monotonic() + timeout_s
    alive = set()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                alive.add(pid)
        finally:
            os.close(fd)
    return alive


@pytest.fixture
def running(tmp_path, mnist_root):
    """A process-executor run, past its second round, with its children and shared blocks."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "deployer.cli", "fedavg", "run", *TINY.split(), "--executor", "process"]
    cmd += ["--rounds", "100000", "--checkpoint-dir", str(tmp_path / "ckpt")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "process round 2:" in line:
                break
        else:
            pytest.fail("the run ended before round 2:\n" + "".join(seen))
        (workers, helpers), blocks = _workers_and_helpers(proc.pid), _shared_blocks(proc.pid)
        assert len(workers) >= 2 and blocks, (workers, helpers, blocks)
        yield proc, (workers, helpers), blocks, tmp_path / "ckpt"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()


def test_sigterm_stops_like_ctrl_c(running):
    proc, (workers, helpers), blocks, ckpt = running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 1
    rest = proc.stderr.read()
    assert "Aborted!" in rest and "leaked" not in rest, rest
    assert not _wait_exit(workers, 0.0), "workers outlived the command"
    assert not _wait_exit(helpers, 30.0), "the fork server or the resource tracker outlived the command"
    assert not [b for b in blocks if Path(b).exists()]
    assert len(load_checkpoint(ckpt)[1]["rounds"]) >= 2


def test_a_killed_parent_takes_its_workers_and_blocks_with_it(running):
    proc, (workers, helpers), blocks, _ = running
    proc.kill()
    proc.wait(timeout=60)
    assert not _wait_exit(workers | helpers, 60.0), "workers outlived a SIGKILLed parent"
    assert not [b for b in blocks if Path(b).exists()]
