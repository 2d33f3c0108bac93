"""A TCP stream across a live migration: iperf3 from the lab namespace into the guest.

iperf3 3.12 writes its JSON only at the end, so the client runs in text mode
with 100 ms intervals and --forceflush; each interval line is stamped with the
host clock as it arrives, which places the migration on the stream's timeline.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from hostnet.errors import HostnetError
from hostnet.netns import NetworkNamespace
from hostnet.process import ManagedProcess

INTERVAL_S = 0.1
_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
_LINE = re.compile(
    r"^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+[\d.]+\s+\w?Bytes\s+"
    r"([\d.]+)\s+(\w?)bits/sec(?:\s+(\d+))?(.*)$"
)


def parse_interval(line: str) -> dict | None:
    """One iperf3 text line -> interval (start, end, Mbit/s, retransmits), or None."""
    match = _LINE.match(line.strip())
    if not match:
        return None
    return {
        "start_s": float(match.group(1)),
        "end_s": float(match.group(2)),
        "mbps": float(match.group(3)) * _UNITS[match.group(4)] / 1e6,
        "retransmits": int(match.group(5)) if match.group(5) else 0,
        "summary": next((w for w in ("sender", "receiver") if match.group(6).rstrip().endswith(w)), None),
    }


class StreamLoad:
    """iperf3 -c target for `seconds`, from `netns`; intervals collected as they come."""

    def __init__(self, netns: NetworkNamespace, target: str, seconds: float, run_dir: Path, on_start=None) -> None:
        argv = netns.exec_argv(["iperf3", "-c", target, "-t", f"{seconds:g}", "-i", str(INTERVAL_S), "--forceflush"])
        self.seconds = seconds
        self._process = ManagedProcess(
            argv, name=f"iperf3 stream to {target}", log_path=Path(run_dir) / f"stream-{target}.log", stdout_pipe=True
        )
        self._on_start = on_start
        self._cond = threading.Condition()
        self.intervals: list[dict] = []
        self.sender: dict | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> StreamLoad:
        self._process.start()
        if self._on_start:
            self._on_start(self._process)
        self._reader = threading.Thread(target=self._read, daemon=True, name="stream-reader")
        self._reader.start()
        return self

    def _read(self) -> None:
        for raw in iter(self._process.stdout.readline, b""):
            parsed = parse_interval(raw.decode(errors="replace"))
            with self._cond:
                if parsed and parsed["summary"] == "sender":
                    self.sender = parsed
                elif parsed and parsed["summary"] is None:
                    self.intervals.append({**parsed, "host_time": time.time()})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_intervals(self, count: int, timeout_s: float = 60) -> None:
        """Wait until `count` intervals arrived (the stream is running).

        Raises:
            HostnetError: the stream ended or stalled first.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.intervals) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._process.running() and not self._reader.is_alive()):
                    raise HostnetError(f"the TCP stream did not reach {count} intervals; {self._process.log_tail(400)}")
                self._cond.wait(min(remaining, 0.5))

    def wait_done(self, timeout_s: float) -> None:
        self._process.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def stop(self) -> None:
        self._process.stop()
        if self._reader is not None:
            self._reader.join(timeout=10)

    def __enter__(self) -> StreamLoad:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def stream_report(intervals: list[dict], migrate_start: float, migrate_end: float, sender: dict | None) -> dict:
    """Throughput before/during/after, the dip, the longest zero gap, retransmits."""
    if not intervals:
        return {"intervals": 0}
    origin = intervals[0]["host_time"] - intervals[0]["end_s"]  # host time of stream start

    def at(i):
        return origin + i["start_s"], origin + i["end_s"]

    before = [i for i in intervals if at(i)[1] <= migrate_start]
    during = [i for i in intervals if at(i)[1] > migrate_start and at(i)[0] < migrate_end]
    after = [i for i in intervals if at(i)[0] >= migrate_end]
    gap = longest = 0.0
    for i in intervals:
        gap = gap + (i["end_s"] - i["start_s"]) if i["mbps"] == 0 else 0.0
        longest = max(longest, gap)

    def mean(rows):
        return round(sum(r["mbps"] for r in rows) / len(rows), 1) if rows else None

    window = [i for i in intervals if at(i)[1] > migrate_start - 1 and at(i)[0] < migrate_end + 1]
    return {
        "intervals": len(intervals),
        "interval_s": INTERVAL_S,
        "mbps_before": mean(before),
        "mbps_during": mean(during),
        "mbps_after": mean(after),
        "mbps_min_around_migration": min((i["mbps"] for i in window), default=None),
        "longest_zero_gap_ms": round(longest * 1000),
        "retransmits_total": sender["retransmits"] if sender else sum(i["retransmits"] for i in intervals),
        "retransmits_around_migration": sum(i["retransmits"] for i in window),
        "timeline": [
            {"t_s": round(at(i)[0] - migrate_start, 2), "mbps": round(i["mbps"], 1), "retransmits": i["retransmits"]}
            for i in intervals
        ],
    }
