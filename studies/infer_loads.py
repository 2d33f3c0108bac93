"""`deployer bench infer`: the load each path is measured under, once infer_paths has set the paths up.

In-process calls, requests to the plain Flask + torch server, and `mnist/infer` on the
platform: cold starts, then warm invokes. The deploy step comes from the caller (the CLI's
wskdeploy reader): a redeploy is how a cold start is forced, on a given OpenWhisk as on the
local platform.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from .errors import BenchError
from .loadgen import closed_loop, summarize_ms

# deploy(client, storage env): puts manifests/infer.yaml on the client's platform, a new revision each call
Deploy = Callable[[object, dict], None]


def bench_in_process(
    classify: Callable[[bytes], dict], data: bytes, levels: list[int], iterations: int, requests_per_worker: int
) -> dict:
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        classify(data)
        samples.append(time.perf_counter() - t0)
    out = {"latency": summarize_ms(samples)}
    out["throughput"] = {str(c): closed_loop(lambda: classify(data), c, requests_per_worker) for c in levels}
    return out


def bench_baseline(url: str, payload: dict, levels: list[int], requests_per_worker: int) -> dict:
    import requests

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(levels))
    session.mount("http://", adapter)

    def call() -> None:
        resp = session.post(url + "/predict", json=payload, timeout=60)
        resp.raise_for_status()

    try:
        out = {}
        for c in levels:
            closed_loop(call, c, 2)
            out[str(c)] = closed_loop(call, c, requests_per_worker)
        return out
    finally:
        session.close()


def _annotation(record: dict, key: str):
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == key), None)


def bench_platform_cold(
    client, env: dict, payload: dict, runs: int, deploy: Deploy, apihost: str | None = None
) -> dict:
    """First invokes after a redeploy; on the local platform each waits for an ML stem cell first (OpenWhisk's
    prewarmed cold start), and the count of those that found one is reported."""
    from localwhisk.invoker.prewarm import DEFAULT_PREWARM

    from .platform_cost import prewarm_hits, wait_prewarmed

    ml_spec = next((part for part in DEFAULT_PREWARM.split(",") if "action-python-ml" in part), None)
    totals, inits, hits = [], [], 0
    for _ in range(runs):
        deploy(client, env)  # a new revision: the next invoke needs a new container
        if apihost and ml_spec:
            wait_prewarmed(apihost, spec=ml_spec)
        before = prewarm_hits(apihost)
        t0 = time.perf_counter()
        record = client.invoke("mnist/infer", payload, blocking=True)
        totals.append(time.perf_counter() - t0)
        hits += prewarm_hits(apihost) - before
        init = _annotation(record, "initTime")
        if init is None:
            raise BenchError("a first invoke after a redeploy carried no initTime: it was not a cold start")
        inits.append(init)
    out = summarize_ms(totals)
    out["init_time_ms_median"] = statistics.median(inits)
    out["stem_cell_hits"] = hits if apihost else None
    return out


def bench_platform_warm(
    client, payload: dict, levels: list[int], requests_per_worker: int, apihost: str | None = None
) -> dict:
    from .platform_cost import warm_up

    call = lambda: client.invoke("mnist/infer", payload, blocking=True, result=True)  # noqa: E731
    out = {}
    for c in levels:
        rounds = warm_up(call, c, apihost)
        out[str(c)] = closed_loop(call, c, requests_per_worker)
        out[str(c)]["warm_up_rounds"] = rounds
    return out


def bench_platform(
    client,
    env: dict,
    state: dict,
    payload: dict,
    expected: int,
    levels: list[int],
    requests_per_worker: int,
    cold_runs: int,
    apihost: str | None,
    progress: Callable[[str], None],
    deploy: Deploy,
) -> tuple[str, dict]:
    """Cold starts and warm invokes of mnist/infer serving `state`: (the model version it served, the results).

    Raises:
        BenchError: the platform's answer differs from the in-process model's `expected` digit.
    """
    from mlcore.storage import Storage, StorageConfig
    from mlcore.train import publish_model

    storage = Storage(StorageConfig.from_env(env))
    storage.ensure_bucket()
    # by name, not as latest: a benchmark must not replace the model users are served
    version = publish_model(storage, state, {"accuracy": None, "note": "bench infer"}, mark_latest=False)
    payload = {**payload, "model": version}
    progress("platform cold starts")
    cold = bench_platform_cold(client, env, payload, cold_runs, deploy, apihost)
    answer = client.invoke("mnist/infer", payload, blocking=True, result=True)
    if answer.get("digit") != expected:
        raise BenchError(f"the platform answered {answer}, the in-process model {expected}")
    progress("platform warm invokes")
    return version, {
        "platform_cold": cold,
        "platform_warm": bench_platform_warm(client, payload, levels, requests_per_worker, apihost),
    }
