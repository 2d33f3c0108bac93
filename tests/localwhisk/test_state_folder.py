"""One platform per state folder, and what `status` and a start on demand learn from the folder.

Real processes: platform servers and `deployer` commands started at once on one folder.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localwhisk import statelock
from localwhisk.settings import Settings
from localwhisk.supervisor import _wait_ready, stable_free_port
from procs import gone, wait_gone

ROOT = Path(__file__).resolve().parents[2]


def _server(state: Path, log: Path) -> subprocess.Popen:
    settings = Settings(state, port=0, s3_port=0, prewarm="none", owner_pid=os.getpid())
    cmd = [sys.executable, "-m", "localwhisk.server", "--settings", settings.to_json()]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _first_to_exit(procs: list[subprocess.Popen], timeout_s: float = 120) -> subprocess.Popen:
    fds = {os.pidfd_open(p.pid): p for p in procs}
    try:
        ready, _, _ = select.select(list(fds), [], [], timeout_s)
        assert ready, "neither process ended"
        first = fds[ready[0]]
        first.wait(timeout=30)
        return first
    finally:
        for fd in fds:
            os.close(fd)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_two_platform_servers_started_at_once_on_one_folder_one_serves_the_other_names_it(tmp_path):
    # Prepare
    state = tmp_path / "state"
    procs = [_server(state, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        # Execute
        loser = _first_to_exit(procs)
        winner = next(p for p in procs if p is not loser)
        info = _wait_ready(winner, state, 60)
        # Assert
        said = (tmp_path / f"server{procs.index(loser)}.log").read_text().strip().splitlines()
        assert loser.returncode == 2 and said[-1].startswith("platform cannot start: the state folder")
        assert f"in use by the platform pid {winner.pid} " in said[-1]
        assert info.pid == winner.pid and statelock.holder(state)["pid"] == winner.pid
        assert statelock.holder(state)["port"] == int(info.apihost.rsplit(":", 1)[1])
    finally:
        for proc in procs:
            _stop(proc)
    assert statelock.holder(state) is None  # the kernel let go of the lock with the process


def _cli(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deployer.cli", *args],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OW_", "WSK_", "S3_", "AWS_"))}
    env.update(DEPLOYER_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    yield env
    _finish(_cli(["down"], env))


def test_two_deployer_up_at_once_start_one_platform_and_the_other_says_who_holds_it(cli_env):
    # Prepare
    port, s3_port = stable_free_port(), stable_free_port()
    args = ["up", "--port", str(port), "--s3-port", str(s3_port), "--prewarm", "none"]
    # Execute
    ups = [_finish(p) for p in [_cli(args, cli_env), _cli(args, cli_env)]]
    # Assert
    started = [u for u in ups if u[0] == 0 and u[1].startswith("started")]
    assert len(started) == 1, ups
    other = next(u for u in ups if u is not started[0])
    holder = statelock.holder(Path(cli_env["DEPLOYER_HOME"]))
    if other[0] == 0:  # it came late enough to find the first one answering
        assert other[1].startswith(f"already running: OpenWhisk API http://127.0.0.1:{port}")
    else:
        lines = other[2].strip().splitlines()
        assert other[0] == 1 and len(lines) == 1 and "Traceback" not in other[2], other
        assert f"in use by the platform pid {holder['pid']} (API port {port}, S3 port {s3_port})" in lines[0]
    code, out, _ = _finish(_cli(["down"], cli_env))
    assert code == 0 and out.strip() == "stopped"
    assert wait_gone([holder["pid"]], 30) == []
    code, out, _ = _finish(_cli(["down"], cli_env))
    assert code == 0 and out.strip() == "the local platform was not running"


def test_status_names_a_dead_s3_process_and_exits_non_zero(cli_env):
    # Prepare
    assert _finish(_cli(["up", "--port", "0", "--s3-port", "0", "--prewarm", "none"], cli_env))[0] == 0
    code, out, _ = _finish(_cli(["status", "--json"], cli_env))
    status = json.loads(out)
    assert code == 0 and status["running"] and status["problems"] == []
    # Execute
    os.kill(status["s3_pid"], signal.SIGKILL)
    assert wait_gone([status["s3_pid"]], 30) == []
    # Assert
    code, out, err = _finish(_cli(["status"], cli_env))
    assert code == 1 and f"the embedded S3 (pid {status['s3_pid']}) is not running" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"pid          {status['pid']}" in out  # what runs is still shown
    code, out, _ = _finish(_cli(["status", "--json"], cli_env))
    assert code == 1 and json.loads(out)["problems"] and not gone(status["pid"])


def test_a_start_on_demand_takes_the_ports_the_folder_last_used(cli_env):
    # Prepare: a platform on two ports of its own, then stopped
    port, s3_port = stable_free_port(), stable_free_port()
    up = ["up", "--port", str(port), "--s3-port", str(s3_port), "--prewarm", "none"]
    assert _finish(_cli(up, cli_env))[0] == 0
    assert _finish(_cli(["down"], cli_env))[0] == 0
    # Execute: a command that needs the platform starts it
    code, _, err = _finish(_cli(["actions", "list"], cli_env))
    # Assert
    assert code == 0 and f"started the local platform on http://127.0.0.1:{port}" in err
    status = json.loads(_finish(_cli(["status", "--json"], cli_env))[1])
    assert status["apihost"] == f"http://127.0.0.1:{port}" and status["s3_endpoint"].endswith(f":{s3_port}")
