"""Host CPU per thread during a measurement, read from /proc/<pid>/task/*/stat.

A throughput number means little without knowing which thread ran out of CPU:
under TCG a guest's vCPU thread, QEMU's main loop (which moves tap packets when
vhost-net is absent) and the OVS PMD thread each can be the bound. A thread
that used nearly a whole core over the interval is reported as the bound.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SATURATED_PERCENT = 90.0
DISTURBED_PERCENT = 25.0  # CPU used by processes this run did not start, in % of one core
IDLE_CPU = "no thread at a full core and the host has idle CPU: not a host CPU budget"


@dataclass(frozen=True)
class ThreadSample:
    owner: str  # what the process is: "qemu srv", "ovs-vswitchd"
    pid: int
    tid: int
    comm: str
    ticks: int


def thread_role(pid: int, tid: int, comm: str) -> str:
    """vcpu / pmd / main / other: the part of the datapath a thread is."""
    if comm.startswith("CPU ") and "/" in comm:
        return "vcpu"
    if comm.startswith("pmd"):
        return "pmd"
    if tid == pid:
        return "main"
    return "other"


def _read_stat(path: Path) -> tuple[str, int] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses; the fields after the last ')' are fixed.
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[11]) + int(fields[12])  # utime + stime


def snapshot(owners: dict[str, int]) -> dict[int, ThreadSample]:
    """Every thread of the given processes now: {tid: sample}."""
    samples = {}
    for owner, pid in owners.items():
        task_dir = Path(f"/proc/{pid}/task")
        try:
            tids = [int(t.name) for t in task_dir.iterdir()]
        except OSError:
            continue
        for tid in tids:
            stat = _read_stat(task_dir / str(tid) / "stat")
            if stat is not None:
                samples[tid] = ThreadSample(owner, pid, tid, stat[0], stat[1])
    return samples


def host_busy_percent(before: list[int], after: list[int]) -> float:
    """All-core busy share between two /proc/stat 'cpu' lines (100 = every core busy)."""
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta)
    idle = delta[3] + delta[4]  # idle + iowait
    return round(100 * (total - idle) / total, 1) if total else 0.0


def _proc_stat_cpu() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


class CpuMeter:
    """Measures the threads of `owners` between start() and stop()."""

    def __init__(self, owners: dict[str, int]) -> None:
        self.owners = {k: v for k, v in owners.items() if v}

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._cpu0 = _proc_stat_cpu()
        self._before = snapshot(self.owners)
        return self

    def stop(self) -> dict:
        after = snapshot(self.owners)
        elapsed = time.monotonic() - self._t0
        busy = host_busy_percent(self._cpu0, _proc_stat_cpu())
        return summarize(self._before, after, elapsed, busy)


def summarize(
    before: dict[int, ThreadSample], after: dict[int, ThreadSample], elapsed_s: float, host_busy: float
) -> dict:
    """Per-thread and per-role CPU %, the saturated threads, and what bounds the run."""
    threads = []
    for tid, sample in after.items():
        start = before.get(tid)
        used = sample.ticks - (start.ticks if start else 0)
        percent = round(100 * used / CLOCK_TICKS / elapsed_s, 1) if elapsed_s > 0 else 0.0
        if percent >= 1.0:
            threads.append(
                {
                    "owner": sample.owner,
                    "thread": sample.comm,
                    "tid": tid,
                    "role": thread_role(sample.pid, tid, sample.comm),
                    "cpu_percent": percent,
                }
            )
    threads.sort(key=lambda t: -t["cpu_percent"])
    roles: dict[str, float] = {}
    for t in threads:
        key = f"{t['owner']} {t['role']}"
        roles[key] = round(roles.get(key, 0.0) + t["cpu_percent"], 1)
    saturated = [f"{t['owner']} {t['thread']}" for t in threads if t["cpu_percent"] >= SATURATED_PERCENT]
    cores = len(os.sched_getaffinity(0))
    foreign = round(max(0.0, host_busy * cores - sum(t["cpu_percent"] for t in threads)), 1)
    limit = cpu_limit(threads, host_busy, cores)
    disturbed = (
        f"disturbed: processes outside this run used {foreign:.0f}% of a core" if foreign >= DISTURBED_PERCENT else None
    )
    bound = "; ".join(filter(None, [limit or IDLE_CPU, disturbed]))
    return {
        "interval_s": round(elapsed_s, 2),
        "host_busy_percent": host_busy,
        "foreign_percent": foreign,
        "threads": threads,
        "by_role": roles,
        "saturated": saturated,
        "cpu_limit": limit,
        "disturbed": disturbed,
        "bound": bound,
    }


def bound_statement(threads: list[dict], host_busy: float, cores: int | None = None) -> str:
    """One line saying which host CPU resource limited the run, or that none did."""
    return cpu_limit(threads, host_busy, cores) or IDLE_CPU


def cpu_limit(threads: list[dict], host_busy: float, cores: int | None = None) -> str | None:
    """The host CPU resource that limited the run, or None when CPU was to spare.

    A busy-polling PMD shows a full core whatever its load, so it is never the
    bound here (its processing share in pmd-stats says that); the other threads
    are compared with the CPU the PMD leaves them.
    """
    cores = cores or len(os.sched_getaffinity(0))
    work = [t for t in threads if t["role"] != "pmd"]
    hot = [t for t in work if t["cpu_percent"] >= SATURATED_PERCENT]
    if hot:
        names = ", ".join(f"{t['owner']} {t['thread']} ({t['cpu_percent']:.0f}%)" for t in hot)
        return f"thread at a full core: {names}"
    pmd_used = sum(t["cpu_percent"] for t in threads if t["role"] == "pmd")
    left = max(100.0, cores * 100 - pmd_used)
    used = sum(t["cpu_percent"] for t in work)
    if used >= 0.9 * left:
        return (
            f"CPU-starved: guest threads (vCPUs + QEMU main loops) use {used:.0f}% of the "
            f"{left:.0f}% of a core the PMD ({pmd_used:.0f}%) leaves on {cores} cores; "
            "no single thread at a full core"
        )
    if host_busy >= 95:
        return f"host CPU: all {cores} cores busy, no single thread at a full core"
    return None


def busiest_thread(threads: list[dict]) -> str:
    """The hottest non-PMD thread, named as a reader looks for it ('qemu cli CPU 0/TCG 61%')."""
    work = [t for t in threads if t["role"] != "pmd"]
    if not work:
        return "no thread measured"
    top = max(work, key=lambda t: t["cpu_percent"])
    return f"busiest: {top['owner']} {top['thread']} {top['cpu_percent']:.0f}%"


def wait_quiet(busy_below_percent: float, max_wait_s: float, window_s: float = 1.0) -> dict:
    """Wait, at most max_wait_s, for a window in which the host is mostly idle.

    Other people's jobs on a shared host move the numbers more than any knob;
    the result records how long we waited and how busy the host still was.
    """
    started = time.monotonic()
    while True:
        before = _proc_stat_cpu()
        time.sleep(window_s)  # the measurement window itself, not a stand-in for an event
        busy = host_busy_percent(before, _proc_stat_cpu())
        waited = time.monotonic() - started
        if busy < busy_below_percent or waited >= max_wait_s:
            return {"waited_s": round(waited, 1), "host_busy_percent": busy, "quiet": busy < busy_below_percent}
