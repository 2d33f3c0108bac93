"""Percentiles and load loops shared by the benchmarks."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def summarize_ms(samples_s: list[float]) -> dict:
    ms = [s * 1000.0 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 6),
        "p99_ms": round(percentile(ms, 99), 6),
        "mean_ms": round(statistics.fmean(ms), 6),
        "min_ms": round(min(ms), 6),
    }


def closed_loop(call: Callable[[], None], concurrency: int, requests_per_worker: int) -> dict:
    """`concurrency` threads each issue requests back to back; latency per request and throughput."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        mine = []
        barrier.wait()
        for _ in range(requests_per_worker):
            t0 = time.perf_counter()
            try:
                call()
            except Exception as exc:
                with lock:
                    errors.append(str(exc)[:200])
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out = summarize_ms(latencies) if latencies else {"n": 0}
    out.update(
        concurrency=concurrency,
        wall_s=round(wall, 3),
        errors=len(errors),
        throughput_rps=round(len(latencies) / wall, 2) if wall > 0 else None,
    )
    if errors:
        out["first_error"] = errors[0]
    return out
