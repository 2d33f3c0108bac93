"""procs with real processes: each readiness sign, a child that dies or stays silent, one that ignores SIGTERM,
a tree killed whole, and owners killed with SIGKILL after the thread that started the child has ended."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import procs

ROOT = Path(__file__).resolve().parents[2]
PY = [sys.executable, "-c"]
WAIT_FOREVER = "import threading; threading.Event().wait()"


def _ended_within(pid: int, timeout_s: float) -> bool:
    """Whether pid ends within timeout_s (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_line_on_stdout_is_the_ready_value_and_what_follows_stays_in_the_pipe():
    code = "import sys; sys.stdout.write('ready 1\\nlater\\n'); sys.stdout.flush(); " + WAIT_FOREVER
    with procs.Child(PY + [code], ready=procs.ReadyLine("stdout"), stdout=subprocess.PIPE) as child:
        assert child.ready_value == "ready 1"
        assert child.popen.stdout.readline() == b"later\n"
    assert child.returncode == -signal.SIGTERM
    child.popen.stdout.close()


def test_a_line_on_the_ready_pipe_leaves_stdout_to_the_child():
    code = "import os, sys; print('a log line', flush=True); os.write(int(sys.argv[1]), b'4242\\n'); " + WAIT_FOREVER
    child = procs.Child(PY + [code, procs.READY_FD], ready=procs.ReadyLine("fd"), stdout=subprocess.PIPE)
    try:
        assert child.start(timeout_s=60) == "4242"
        assert child.popen.stdout.readline() == b"a log line\n"
    finally:
        child.stop()
        child.popen.stdout.close()


def test_a_port_that_accepts_is_ready():
    port = _free_port()
    code = (
        "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); "
        "[s.accept()[0].close() for _ in iter(int, 1)]"
    )
    with procs.Child(PY + [code, str(port)], ready=procs.PortAccepts("127.0.0.1", port)) as child:
        assert child.ready_value == port
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_a_check_that_passes_is_ready(tmp_path):
    marker = tmp_path / "up"
    code = f"open({str(marker)!r}, 'w').write('7'); " + WAIT_FOREVER

    def check():
        return marker.read_text() or None if marker.exists() else None

    with procs.Child(PY + [code], ready=procs.ReadyWhen(check)) as child:
        assert child.ready_value == "7"


@pytest.mark.parametrize(
    "ready, kwargs",
    [
        (procs.ReadyLine("stdout"), {"stdout": subprocess.PIPE}),
        (procs.PortAccepts("127.0.0.1", 9), {}),
        (procs.ReadyWhen(lambda: None), {}),
    ],
    ids=["line", "port", "check"],
)
def test_a_child_that_dies_before_it_is_ready_fails_with_its_exit_status(ready, kwargs):
    child = procs.Child(PY + ["import sys; sys.exit(3)"], name="the quitter", ready=ready, **kwargs)
    with pytest.raises(procs.NotReady) as caught:
        child.start(timeout_s=120)
    assert caught.value.returncode == 3, caught.value
    assert "the quitter exited with status 3 before it was ready" in str(caught.value)
    assert child.stop() == 3  # idempotent after a failed start


def test_a_child_that_says_nothing_in_time_is_killed():
    child = procs.Child(PY + [WAIT_FOREVER, procs.READY_FD], name="the mute", ready=procs.ReadyLine("fd"))
    with pytest.raises(procs.NotReady, match="the mute was not ready within 0.2 s") as caught:
        child.start(timeout_s=0.2)
    assert caught.value.returncode is None
    assert child.returncode == -signal.SIGKILL and procs.gone(child.pid)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period_and_stop_is_idempotent():
    code = "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); " + WAIT_FOREVER
    child = procs.Child(PY + [code], ready=procs.ReadyLine("stdout"), stdout=subprocess.PIPE)
    child.start(timeout_s=60)
    assert child.stop(timeout_s=0.5) == -signal.SIGKILL
    assert child.stop() == -signal.SIGKILL and not child.alive()
    child.popen.stdout.close()


def test_kill_tree_takes_the_grandchild_that_left_the_session():
    code = (
        "import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
        "start_new_session=True); print(g.pid, flush=True); " + WAIT_FOREVER
    )
    child = procs.Child(
        PY + [code], ready=procs.ReadyLine("stdout"), kill_tree=True, start_new_session=True, stdout=subprocess.PIPE
    )
    grandchild = int(child.start(timeout_s=60))
    assert procs.descendants(child.pid) == [child.pid, grandchild]
    assert child.kill() == -signal.SIGKILL
    assert procs.wait_gone([grandchild], 60) == []
    child.popen.stdout.close()


OWNER_DIES_WITH = """
import json, sys, threading, subprocess
import procs

ECHO = "import sys; [print(line, end='', flush=True) for line in sys.stdin]"
started = {}
def start():  # from a thread that ends: a plain PR_SET_PDEATHSIG would fire when it does
    started["child"] = procs.Child([sys.executable, "-c", ECHO], die_with_parent=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    started["child"].spawn()
t = threading.Thread(target=start)
t.start()
t.join()
child = started["child"]
child.popen.stdin.write("alive\\n")
child.popen.stdin.flush()
print(json.dumps({"child": child.pid, "echo": child.popen.stdout.readline()}), flush=True)
threading.Event().wait()
"""

OWNER_WATCHED_BY = """
import json, subprocess, sys, threading

WATCHER = '''
import os, sys, threading, procs
def gone():
    open(sys.argv[1], "w").write("owner gone")
    os._exit(0)
print(procs.watch_owner(os.getppid(), gone), flush=True)
threading.Event().wait()
'''
started = {}
t = threading.Thread(target=lambda: started.setdefault(
    "child", subprocess.Popen([sys.executable, "-c", WATCHER, sys.argv[1]], stdout=subprocess.PIPE, text=True)))
t.start()
t.join()
child = started["child"]
print(json.dumps({"child": child.pid, "watching": child.stdout.readline().strip()}), flush=True)
threading.Event().wait()
"""


def _owner(script: str, *args: str) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen(PY + [script, *args], stdout=subprocess.PIPE, text=True, env=env)
    return owner, json.loads(owner.stdout.readline())


def _kill(owner: subprocess.Popen) -> None:
    owner.kill()
    owner.wait(timeout=30)
    owner.stdout.close()


def test_a_child_started_from_a_thread_that_ended_lives_on_and_dies_with_its_owner_killed_by_sigkill():
    owner, started = _owner(OWNER_DIES_WITH)
    try:
        assert started["echo"] == "alive\n", "the child outlived the thread that forked it"
    finally:
        _kill(owner)
    assert _ended_within(started["child"], 60), "the child outlived its SIGKILLed owner"


def test_a_watcher_runs_its_callback_when_its_owner_is_killed_by_sigkill(tmp_path):
    marker = tmp_path / "watched"
    owner, started = _owner(OWNER_WATCHED_BY, str(marker))
    try:
        assert started["watching"] == "True"
    finally:
        _kill(owner)
    assert _ended_within(started["child"], 60), "the watcher outlived its SIGKILLed owner"
    assert marker.read_text() == "owner gone"


def test_an_owner_that_is_not_the_parent_or_gone_is_not_watched():
    called = []
    assert procs.watch_owner(os.getpid(), lambda: called.append(1)) is False  # not this process's parent
    dead = subprocess.Popen(PY + ["pass"])
    dead.wait()
    assert procs.watch_owner(dead.pid, lambda: called.append(1)) is False
    assert called == []


def test_an_owner_that_is_not_the_parent_is_watched_by_its_start_time(tmp_path):
    # Prepare: a watcher whose parent is not its owner, as a worker forked by a fork server is
    marker = tmp_path / "watched"
    owner = subprocess.Popen(PY + [WAIT_FOREVER])
    watcher_code = (
        "import os, sys, threading, procs\n"
        "pid, started = int(sys.argv[1]), int(sys.argv[2])\n"
        "def gone():\n"
        "    open(sys.argv[3], 'w').write('owner gone')\n"
        "    os._exit(0)\n"
        "print(procs.watch_owner(pid, gone, started=started), flush=True)\n"
        "threading.Event().wait()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = procs.start_ticks(owner.pid)
    watcher = subprocess.Popen(
        PY + [watcher_code, str(owner.pid), str(started), str(marker)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        # Execute
        watching = watcher.stdout.readline().strip()
        owner.kill()
        owner.wait(timeout=30)
        # Assert
        assert watching == "True"
        assert _ended_within(watcher.pid, 60), "the watcher outlived its SIGKILLed owner"
        assert marker.read_text() == "owner gone"
    finally:
        for process in (owner, watcher):
            process.kill()
            process.wait(timeout=30)
        watcher.stdout.close()


def test_an_owner_whose_start_time_differs_is_a_reused_pid_and_is_not_watched():
    called = []
    ticks = procs.start_ticks(os.getpid())
    assert ticks is not None and procs.start_ticks(os.getpid()) == ticks
    assert procs.watch_owner(os.getpid(), lambda: called.append(1), started=ticks + 1) is False
    assert procs.start_ticks(2**22 + 12345) is None  # no such process
    assert called == []


def test_a_process_named_with_parentheses_and_spaces_is_read_past_its_name_and_gone_once_reaped():
    # Prepare: a command name that imitates the fields after it
    named = "import threading; open('/proc/self/comm', 'w').write(') Z 1 (x'); print(flush=True); " + WAIT_FOREVER
    child = subprocess.Popen(PY + [named], stdout=subprocess.PIPE)
    try:
        child.stdout.readline()
        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == ") Z 1 (x"
        # Execute
        fields = procs.stat_fields(child.pid)
        used = procs.cpu_s(child.pid)
        # Assert
        assert fields is not None and fields[0] in ("S", "R")  # not the "Z" in its name
        assert not procs.gone(child.pid)
        assert procs.start_ticks(child.pid) == int(fields[19]) > 0
        assert used is not None and used >= 0
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert procs.gone(child.pid)
    assert procs.stat_fields(child.pid) is None and procs.cpu_s(child.pid) is None
