"""A process's /proc/<pid>/stat, split past the command name, which may hold spaces and parentheses."""

from __future__ import annotations

import os

STATE, UTIME, STIME, STARTTIME = 0, 11, 12, 19  # indexes into stat_fields(), proc(5)'s fields 3, 14, 15 and 22
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str] | None:
    """The fields after the command name, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a process (its ended threads included), or None when it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[UTIME]) + int(fields[STIME])) * _TICK_S
