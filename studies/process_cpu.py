"""Which process of the local platform spends the CPU while a job runs, read from /proc.

A synchronous step is bounded by whichever process is busy on its critical path; on a
machine with few cores, that is the one whose share of a core approaches 1.0. The platform
is one tree of processes (the controller and invoker in one, the S3 endpoint, an action
proxy and a launcher per container), so sampling the tree's /proc/<pid>/stat every
`every_s` gives each process's CPU over any part of the run, and its busiest window.

Launchers are named by the role their action reported (a worker's or the PS's stats carry
its pid); the remaining busy launchers are the coordinator's and other actions'.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from procs import cpu_s, descendants

KINDS = (
    ("embedded_s3", "s3 endpoint"),
    ("localwhisk.server", "controller and invoker"),
    ("runtimes.proxy", "action proxies"),
    ("launcher", "other actions"),
)


def kind_of(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return "other"
    return next((kind for needle, kind in KINDS if needle in command), "other")


class ProcessCPU:
    """Samples a process tree's CPU in the background between `start()` and `stop()`."""

    def __init__(self, root_pid: int, every_s: float = 0.5) -> None:
        self.root_pid, self.every_s = root_pid, every_s
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.kinds: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-cpu", daemon=True)

    def start(self) -> ProcessCPU:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def __enter__(self) -> ProcessCPU:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def _sample(self) -> None:
        now, seen = time.time(), {}
        for pid in descendants(self.root_pid):
            used = cpu_s(pid)
            if used is None:
                continue
            seen[pid] = used
            if pid not in self.kinds:
                self.kinds[pid] = kind_of(pid)
        self.samples.append((now, seen))

    def report(self, roles: dict[int, str] | None = None, start: float | None = None, end: float | None = None) -> dict:
        """Per role: CPU seconds in [start, end] (default: all sampled), share of one core, busiest window's share.

        `roles` names pids (a worker's, the PS's); the rest are named by their kind (KINDS). A
        process born inside the interval counts from its birth, one that ended to its last sample.
        `cores_busy` sums the shares: near the machine's cores, the tree used them all; well below
        with no process near 1.0, the step waited on its chain of requests rather than on a core.
        """
        roles = roles or {}
        window = [(t, seen) for t, seen in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        if len(window) < 2:
            return {"seconds": 0.0, "roles": {}}
        wall = window[-1][0] - window[0][0]
        used: dict[int, float] = {}
        peak: dict[int, float] = {}
        for (t0, before), (t1, after) in zip(window, window[1:]):
            for pid, cpu in after.items():
                spent = max(0.0, cpu - before.get(pid, 0.0))  # one born in between: all its CPU is in the window
                used[pid] = used.get(pid, 0.0) + spent
                peak[pid] = max(peak.get(pid, 0.0), spent / (t1 - t0))
        by_role: dict[str, dict] = {}
        for pid, cpu in used.items():
            role = roles.get(pid) or self.kinds.get(pid, "other")
            entry = by_role.setdefault(role, {"cpu_s": 0.0, "processes": 0, "peak": 0.0})
            entry["cpu_s"] += cpu
            entry["processes"] += cpu > 0
            entry["peak"] = max(entry["peak"], peak[pid])
        out = {
            role: {
                "cpu_s": round(e["cpu_s"], 3),
                "core_share": round(e["cpu_s"] / wall, 3),  # of one core, all the role's processes together
                "peak_core_share": round(e["peak"], 3),  # its busiest process in its busiest window
                "processes": e["processes"],
            }
            for role, e in sorted(by_role.items(), key=lambda item: -item[1]["cpu_s"])
            if e["cpu_s"] > 0
        }
        busiest = max(out, key=lambda role: out[role]["core_share"], default=None)
        return {
            "seconds": round(wall, 3),
            "cores": os.cpu_count(),
            "cores_busy": round(sum(r["core_share"] for r in out.values()), 3),
            "busiest": busiest,
            "roles": out,
        }
