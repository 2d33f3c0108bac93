"""`deployer bench platform`: what the platform costs over calling the same function directly.

Three layers, measured in one run so the machine's noise hits them alike: the no-op
function called in-process, the same function through one runtime proxy over HTTP (the
container contract alone), and through the whole platform (controller, invoker, proxy)
at several concurrencies; plus cold starts.
"""

from __future__ import annotations

import os
import platform as pyplatform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from .stats import closed_loop, summarize_ms

NOOP_SOURCE = "def main(args):\n    return {}\n"


def _noop(args: dict) -> dict:
    return {}


def bench_direct(iterations: int) -> dict:
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        _noop({})
        samples.append(time.perf_counter() - t0)
    return summarize_ms(samples)


def bench_proxy(iterations: int) -> dict:
    from ..local.container import Container

    with Container("bench/noop", memory_mb=256, log_limit_bytes=1 << 20) as c:
        c.start()
        c.init({"name": "noop", "main": "main", "code": NOOP_SOURCE, "binary": False}, 30)
        samples = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            status, _ = c.run({"value": {}, "activation_id": "x"}, 30)
            samples.append(time.perf_counter() - t0)
            c.take_logs(1.0)
            if status != 200:
                raise RuntimeError(f"proxy answered {status}")
    return summarize_ms(samples)


def bench_cold(client, runs: int) -> dict:
    """Each run updates the action (new revision, so no warm container) and times the first invoke."""
    totals, inits = [], []
    for i in range(runs):
        client.create_action("bench-noop-cold", {"kind": "python:3.11", "code": NOOP_SOURCE + f"# rev {i}\n"})
        t0 = time.perf_counter()
        record = client.invoke("bench-noop-cold", {}, blocking=True)
        totals.append(time.perf_counter() - t0)
        init = next((a["value"] for a in record["annotations"] if a["key"] == "initTime"), None)
        if init is None:
            raise RuntimeError("a cold invoke carried no initTime annotation")
        inits.append(init)
    client.delete_action("bench-noop-cold")
    out = summarize_ms(totals)
    out["init_time_ms_median"] = statistics.median(inits)
    return out


def bench_warm(client, concurrencies: list[int], requests_per_worker: int) -> dict:
    client.create_action("bench-noop", {"kind": "python:3.11", "code": NOOP_SOURCE})
    invoke: Callable[[], None] = lambda: client.invoke("bench-noop", {}, blocking=True, result=True)  # noqa: E731
    out = {}
    for c in concurrencies:
        closed_loop(invoke, c, 3)  # warm c containers first
        out[str(c)] = closed_loop(invoke, c, requests_per_worker)
    client.delete_action("bench-noop")
    return out


def run(concurrencies: list[int], requests_per_worker: int = 50, cold_runs: int = 5,
        direct_iterations: int = 20000, apihost: str | None = None, auth: str | None = None,
        progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Against a given OpenWhisk, or an owned local platform in a scratch state dir."""
    from ..client import OpenWhiskClient
    from ..local.supervisor import LocalPlatform

    report: dict = {
        "benchmark": "platform",
        "conditions": {"host_cores": os.cpu_count(), "python": pyplatform.python_version(),
                       "requests_per_worker": requests_per_worker, "cold_runs": cold_runs},
    }
    progress("in-process calls")
    report["direct_call"] = bench_direct(direct_iterations)
    progress("runtime proxy over HTTP")
    report["proxy_direct"] = bench_proxy(max(200, requests_per_worker * 4))
    with tempfile.TemporaryDirectory(prefix="bench-platform-") as tmp:
        owned = None
        if apihost and auth:
            client = OpenWhiskClient(apihost, auth)
            report["conditions"]["target"] = apihost
        else:
            owned = LocalPlatform(Path(tmp), max_containers=max(concurrencies), idle_timeout_s=600)
            info = owned.start()
            client = info.client()
            report["conditions"]["target"] = f"local platform (owned, max_containers={max(concurrencies)})"
        try:
            progress("cold starts")
            report["cold_start"] = bench_cold(client, cold_runs)
            progress("warm invokes")
            report["warm"] = bench_warm(client, concurrencies, requests_per_worker)
        finally:
            client.close()
            if owned:
                owned.stop()
    direct, proxy, warm1 = report["direct_call"], report["proxy_direct"], report["warm"][str(concurrencies[0])]
    report["ratios"] = {
        "warm_p50_over_direct_call": round(warm1["p50_ms"] / direct["p50_ms"]),
        "warm_p50_over_proxy_http": round(warm1["p50_ms"] / proxy["p50_ms"], 2),
        "cold_p50_over_warm_p50": round(report["cold_start"]["p50_ms"] / warm1["p50_ms"], 1),
    }
    return report
