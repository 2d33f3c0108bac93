"""Process trees, found through /proc and killed as a whole; and the polite stop of one child process."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from .stat import STATE, stat_fields


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
    except (OSError, ValueError):
        pass
    return out


def descendants(pid: int) -> list[int]:
    """The process and everything below it; the proxy is a subreaper, so daemonised orphans are included."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(_children(p))
    return found


def kill_tree(pid: int, timeout_s: float = 10.0) -> None:
    """Stops the whole tree first (a stopped process cannot fork), kills it and its process group, and
    waits until all of it has exited: a process still dying holds its sockets, and so the ports of the
    servers it talked to. A child that called setsid left the group, so the group kill alone would miss it.
    """
    for _ in range(3):
        tree = descendants(pid)
        for p in tree:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        if len(descendants(pid)) == len(tree):
            break
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(tree, timeout_s)


def gone(pid: int) -> bool:
    """Exited (a zombie holds no files or sockets any more) or never there."""
    fields = stat_fields(pid)
    return fields is None or fields[STATE] in ("Z", "X")


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Until every pid has exited (SIGKILL acts once a system call in flight returns); those left."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if not gone(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if not gone(p)]
    return left


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0, tree: bool = False) -> int:
    """SIGTERM, up to timeout_s to exit cleanly, then SIGKILL (`tree`: to its whole tree); returns the exit status.

    Raises:
        subprocess.TimeoutExpired: it outlived SIGKILL by 10 s (stuck in the kernel).
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if tree:
                kill_tree(proc.pid)
            else:
                proc.kill()
            proc.wait(timeout=10)
    return proc.returncode
