"""A child that dies with its owner, and an owner watched by its child.

Two kernel mechanisms, for two cases:

- `popen(..., die_with_parent=True)`: the child gets PR_SET_PDEATHSIG (SIGKILL) before it runs
  anything. The signal fires when the *thread* that forked the child ends, not the process; a
  child started from an HTTP connection's thread (which ends when its client hangs up) would be
  killed mid-work. So every such child is forked by one long-lived spawner thread here.
- `watch_owner`: the child itself waits on its owner's pidfd, so it may stop cleanly (a
  platform closing its records) where a SIGKILL would lose work, and it does not matter which
  of the owner's threads started it.

Both check, once armed, that the parent is still the one expected: an owner that died before
the child was set up would otherwise never be noticed.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .stat import STARTTIME, stat_fields

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# resolved here, in the parent: a dlopen between fork and exec could wait forever on a lock another thread held
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the signal is not armed, the parent check still runs
    _prctl = None

_lock = threading.Lock()
_spawner: ThreadPoolExecutor | None = None


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL, exit_status: int = 1) -> None:
    """Has the kernel send `sig` to this process when its parent's forking thread ends; exits at once with
    `exit_status` when the parent is no longer `parent_pid` (it died before this was armed).

    Called in the child (a preexec_fn, or the first thing its main does): see the module's note on threads.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent_pid:
        os._exit(exit_status)


def become_subreaper() -> None:
    """Orphans below this process are re-parented to it, not to init, so killing its tree kills them too."""
    if _prctl is not None:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def popen(argv, *, die_with_parent: bool = False, **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(argv, **kwargs)`; with `die_with_parent`, forked by the spawner thread with
    PR_SET_PDEATHSIG armed (after any `preexec_fn` given). Raises what Popen raises."""
    if not die_with_parent:
        return subprocess.Popen(argv, **kwargs)
    return _spawner_thread().submit(_popen_dying_with_us, argv, kwargs).result()


def _popen_dying_with_us(argv, kwargs: dict) -> subprocess.Popen:
    parent, then = os.getpid(), kwargs.pop("preexec_fn", None)

    def setup() -> None:
        if then is not None:
            then()
        die_with_parent(parent)

    return subprocess.Popen(argv, preexec_fn=setup, **kwargs)


def _spawner_thread() -> ThreadPoolExecutor:
    global _spawner
    with _lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
    return _spawner


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: with its pid, what tells it from a later one."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[STARTTIME])


def watch_owner(
    owner_pid: int, on_exit: Callable[[], None], name: str = "owner-watch", started: int | None = None
) -> bool:
    """Calls `on_exit()` from a daemon thread once the owner ends, however it ends (SIGKILL, the OOM killer).

    `owner_pid` must be this process's parent, or `started` its `start_ticks`: that is how a pid
    reused after the owner died is told apart (a process forked by a fork server has the server
    as its parent, not its owner). Returns False, without calling `on_exit`, when the owner has
    ended already.
    """
    try:
        fd = os.pidfd_open(owner_pid)
    except OSError:
        return False
    if (os.getppid() != owner_pid) if started is None else (start_ticks(owner_pid) != started):
        os.close(fd)
        return False

    def watch() -> None:
        select.select([fd], [], [])
        os.close(fd)
        on_exit()

    threading.Thread(target=watch, name=name, daemon=True).start()
    return True
