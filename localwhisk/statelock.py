"""One platform per state folder: an exclusive lock its server process holds for its life, and who holds it.

Two platforms on one folder would share one SQLite database and one object folder, each with its own
cache of the actions (so each serves stale code to the other's clients), and `down` would stop one of
them. The server takes `platform.lock` with flock(2) before it touches anything in the folder; the
kernel drops the lock when the process ends however it ends, so a killed platform leaves no stale lock.
The file's content says who holds it (pid, ports) and stays after a stop: the ports the folder last
used, for the next start to take again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from localwhisk.errors import PlatformError
from procs import gone

LOCK_FILE = "platform.lock"


class StateFolderInUse(PlatformError):
    """Another platform process holds this state folder."""


class StateLock:
    """The held lock; `record()` rewrites who holds it, `release()` (or the process's end) lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, state_dir: Path, identity: dict) -> StateLock:
        """Raises StateFolderInUse naming the holder when another process has the folder."""
        path = Path(state_dir) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateFolderInUse(in_use_message(state_dir, holder(state_dir))) from None
        except BaseException:
            os.close(fd)
            raise
        lock = cls(fd, path)
        lock.record(identity)
        return lock

    def record(self, identity: dict) -> None:
        data = json.dumps(identity).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock_holder_pid(path: Path) -> int | None:
    """The pid holding an exclusive flock on `path`, from /proc/locks (asking with a lock of our own would
    make a platform starting at that moment fail to take it)."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a request blocked behind the lock, not the lock itself
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE" and fields[5] == inode:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


def recorded(state_dir: Path) -> dict:
    """What the lock file says: its holder's, or the last holder's pid and ports ({} if nothing readable)."""
    try:
        doc = json.loads((Path(state_dir) / LOCK_FILE).read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def holder(state_dir: Path) -> dict | None:
    """{"pid", and "port"/"s3_port" where known} of the process holding the folder, or None when none does."""
    pid = _lock_holder_pid(Path(state_dir) / LOCK_FILE)
    doc = recorded(state_dir)
    if pid is None:  # /proc/locks names the device a file system keeps underneath (overlay, btrfs): trust a live pid
        return doc if isinstance(doc.get("pid"), int) and not gone(doc["pid"]) else None
    return doc if doc.get("pid") == pid else {"pid": pid}


def in_use_message(state_dir: Path, who: dict | None) -> str:
    who = who or {}
    ports = (
        f"API port {who['port']}, S3 port {who['s3_port']}"
        if who.get("port") and who.get("s3_port")
        else "still starting, ports not yet bound"
    )
    return (
        f"the state folder {state_dir} is in use by the platform pid {who.get('pid', '?')} ({ports}); "
        f"stop it with `deployer down`, or set DEPLOYER_HOME to another folder"
    )
