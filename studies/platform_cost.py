"""`deployer bench platform`: what the platform costs over calling the same function directly.

Three layers, measured in one run so the machine's noise hits them alike: the no-op
function called in-process, the same function through one runtime proxy over HTTP (the
container contract alone), and through the whole platform (controller, invoker, proxy)
at several concurrencies; plus cold starts.
"""

from __future__ import annotations

import base64
import http.client
import os
import platform as pyplatform
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from .loadgen import closed_loop, summarize_ms

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
    from localwhisk.invoker.container import Container

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


COLD_MEMORY_MB = {"prewarmed": 256, "unprewarmed": 320}  # the platform prewarms python:3.11@256 only
PREWARM = "python:3.11@256x1"


def invoker_stats(apihost: str) -> dict | None:
    """The local platform's invoker counters from GET /api/v1, or None where it does not give them."""
    import requests

    try:
        return requests.get(apihost + "/api/v1", timeout=10).json().get("invoker")
    except (requests.RequestException, ValueError):
        return None


def wait_prewarmed(apihost: str, timeout_s: float = 120.0, spec: str | None = None) -> None:
    """Until the stem cell (of `spec`, a prewarm label, or any) is back: the pool refills in the background."""

    def ready() -> int:
        stats = invoker_stats(apihost) or {}
        return stats.get("prewarmed_by_spec", {}).get(spec, 0) if spec else stats.get("prewarmed", 0)

    deadline = time.monotonic() + timeout_s
    while ready() < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the stem cell did not come back within the bench's wait")
        time.sleep(0.05)


def prewarm_hits(apihost: str | None) -> int:
    """Cold starts that took a stem cell so far (0 where the target does not say)."""
    return (invoker_stats(apihost) or {}).get("prewarm_hits", 0) if apihost else 0


def bench_cold(client, runs: int, apihost: str | None = None, kind: str = "unprewarmed") -> dict:
    """Each run updates the action (a new revision, so no warm container) and times its first invoke.

    `prewarmed` runs wait for a stem cell first and fit it (256 MB); `unprewarmed` ones ask for a size
    no stem cell has, so they start a container from nothing.
    """
    totals, inits, hits = [], [], 0
    name = f"bench-noop-cold-{kind}"
    for i in range(runs):
        client.create_action(
            name, {"kind": "python:3.11", "code": NOOP_SOURCE + f"# rev {i}\n"}, limits={"memory": COLD_MEMORY_MB[kind]}
        )
        if kind == "prewarmed" and apihost:
            wait_prewarmed(apihost)
        before = prewarm_hits(apihost)
        t0 = time.perf_counter()
        record = client.invoke(name, {}, blocking=True)
        totals.append(time.perf_counter() - t0)
        hits += prewarm_hits(apihost) - before
        init = next((a["value"] for a in record["annotations"] if a["key"] == "initTime"), None)
        if init is None:
            raise RuntimeError("a cold invoke carried no initTime annotation")
        inits.append(init)
    client.delete_action(name)
    out = summarize_ms(totals)
    out["init_time_ms_median"] = statistics.median(inits)
    out["stem_cell_hits"] = hits if apihost else None
    return out


def warm_up(call: Callable[[], None], concurrency: int, apihost: str | None, max_rounds: int = 10) -> int:
    """Rounds of load until one starts no container (on the local platform; one round elsewhere): a cold
    start inside the measured loop would be timed as a warm invoke."""
    for rounds in range(1, max_rounds + 1):
        before = (invoker_stats(apihost) or {}).get("cold_starts") if apihost else None
        closed_loop(call, concurrency, 3)
        if before is None or (invoker_stats(apihost) or {}).get("cold_starts") == before:
            return rounds
    return max_rounds


class RawInvoker:
    """A blocking invoke as a load generator sends it (wrk, OpenWhisk's own latency tests): one kept
    HTTP/1.1 connection per thread and a request prepared once, so the number is the platform's, not
    the SDK's (deployer's client adds its session, retry policy and JSON handling on top)."""

    def __init__(self, apihost: str, auth: str, action: str, namespace: str = "_") -> None:
        url = urllib.parse.urlsplit(apihost)
        self._connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._netloc = url.netloc
        self._path = f"/api/v1/namespaces/{namespace}/actions/{action}?blocking=true&result=true"
        token = base64.b64encode(auth.encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self._local = threading.local()

    def __call__(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connection_class(self._netloc, timeout=90)
        try:
            conn.request("POST", self._path, body=b"{}", headers=self._headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            raise
        if response.status != 200:
            raise RuntimeError(f"invoke answered {response.status}: {body[:200]!r}")


def bench_warm(client, concurrencies: list[int], requests_per_worker: int, apihost: str | None = None) -> dict:
    """Per concurrency, through deployer's client (`sdk`) and a raw kept connection (`raw`), one after the other."""
    client.create_action("bench-noop", {"kind": "python:3.11", "code": NOOP_SOURCE})
    callers: dict[str, Callable[[], None]] = {
        "sdk": lambda: client.invoke("bench-noop", {}, blocking=True, result=True),
        "raw": RawInvoker(client.apihost, client.auth, "bench-noop"),
    }
    out: dict = {name: {} for name in callers}
    for c in concurrencies:
        for name, invoke in callers.items():
            rounds = warm_up(invoke, c, apihost)
            out[name][str(c)] = closed_loop(invoke, c, requests_per_worker)
            out[name][str(c)]["warm_up_rounds"] = rounds
    client.delete_action("bench-noop")
    return out


def bench_target(
    client,
    apihost: str | None,
    concurrencies: list[int],
    requests_per_worker: int,
    cold_runs: int,
    progress: Callable[[str], None],
) -> dict:
    out = {}
    if apihost:  # stem cells are visible only on the local platform's /api/v1
        progress("prewarmed cold starts")
        out["cold_prewarmed"] = bench_cold(client, cold_runs, apihost, "prewarmed")
    progress("cold starts without a stem cell")
    out["cold_start"] = bench_cold(client, cold_runs, apihost, "unprewarmed")
    progress("warm invokes")
    out["warm"] = bench_warm(client, concurrencies, requests_per_worker, apihost)
    warm1 = out["warm"]["sdk"][str(concurrencies[0])]["p50_ms"]
    out["ratios"] = {
        f"{k}_p50_over_warm_p50": round(out[k]["p50_ms"] / warm1, 1)
        for k in ("cold_prewarmed", "cold_start")
        if k in out
    }
    return out


def docker_unavailable() -> str | None:
    """Why docker mode cannot be measured here, or None."""
    from localwhisk.invoker.docker_cli import DockerUnavailable, check_docker, missing_runtime_images

    try:
        check_docker()
    except DockerUnavailable as exc:
        return str(exc)
    missing = missing_runtime_images()
    if missing:
        return f"runtime images not built: {', '.join(missing)} (deployer runtime build)"
    return None


def run(
    concurrencies: list[int],
    requests_per_worker: int = 50,
    cold_runs: int = 5,
    direct_iterations: int = 20000,
    apihost: str | None = None,
    auth: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    modes: tuple[str, ...] = ("process", "docker"),
) -> dict:
    """Against a given OpenWhisk, or an owned local platform per container mode, one after the other."""
    report: dict = {"benchmark": "platform", "conditions": _conditions(requests_per_worker, cold_runs), "modes": {}}
    progress("in-process calls")
    report["direct_call"] = bench_direct(direct_iterations)
    progress("runtime proxy over HTTP")
    report["proxy_direct"] = bench_proxy(max(200, requests_per_worker * 4))

    def measure(client, owned_apihost: str | None) -> dict:
        return bench_target(client, owned_apihost, concurrencies, requests_per_worker, cold_runs, progress)

    if apihost and auth:
        report["conditions"]["target"] = apihost
        report["modes"]["remote"] = _bench_remote(apihost, auth, measure)
    else:
        for mode in modes:
            # room for the warm containers, the stem cell, and each cold run's old revision (idle, not yet reaped)
            slots = max(concurrencies) + 2 * cold_runs + 2
            report["modes"][mode] = _bench_local(mode, slots, measure, progress)
    report["conditions"]["target"] = report["conditions"].get("target") or "local platform (owned, per mode)"
    _add_overhead_ratios(report, concurrencies)
    return report


def _conditions(requests_per_worker: int, cold_runs: int) -> dict:
    return {
        "host_cores": os.cpu_count(),
        "python": pyplatform.python_version(),
        "requests_per_worker": requests_per_worker,
        "cold_runs": cold_runs,
        "prewarm": PREWARM,
        "cold_memory_mb": COLD_MEMORY_MB,
    }


def _bench_remote(apihost: str, auth: str, measure: Callable[[object, str | None], dict]) -> dict:
    """A given OpenWhisk: its stem cells are not visible, so `measure` gets no API host of ours."""
    from mlcore.openwhisk import OpenWhiskClient

    client = OpenWhiskClient(apihost, auth)
    try:
        return measure(client, None)
    finally:
        client.close()


def _bench_local(
    mode: str, max_containers: int, measure: Callable[[object, str | None], dict], progress: Callable[[str], None]
) -> dict:
    """A local platform of `mode` containers started for this measurement, or why docker mode is skipped."""
    from localwhisk.supervisor import LocalPlatform

    why = docker_unavailable() if mode == "docker" else None
    if why:
        return {"skipped": why}
    with tempfile.TemporaryDirectory(prefix=f"bench-platform-{mode}-") as tmp:
        progress(f"{mode} containers")
        with LocalPlatform(
            Path(tmp), max_containers=max_containers, idle_timeout_s=600, prewarm=PREWARM, containers=mode
        ) as info:
            client = info.client()
            try:
                return measure(client, info.apihost)
            finally:
                client.close()


def _add_overhead_ratios(report: dict, concurrencies: list[int]) -> None:
    """How much slower a warm invoke is than calling the function, and than the proxy over HTTP alone."""
    direct, proxy = report["direct_call"], report["proxy_direct"]
    for measured in report["modes"].values():
        if "warm" in measured:
            warm1 = measured["warm"]["sdk"][str(concurrencies[0])]["p50_ms"]
            raw1 = measured["warm"]["raw"][str(concurrencies[0])]["p50_ms"]
            measured["ratios"].update(
                warm_p50_over_direct_call=round(warm1 / direct["p50_ms"]),
                warm_p50_over_proxy_http=round(warm1 / proxy["p50_ms"], 2),
                raw_warm_p50_over_proxy_http=round(raw1 / proxy["p50_ms"], 2),
            )
