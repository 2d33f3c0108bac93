"""The platform benchmark runs end to end on a small budget and reports what it claims."""

import tempfile
from pathlib import Path

import pytest

from studies import platform_cost as bp
from studies.loadgen import percentile


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0


def test_bench_platform_small_run():
    report = bp.run([1, 2], requests_per_worker=5, cold_runs=2, direct_iterations=1000, modes=("process",))
    # every layer measured as many times as asked, without errors
    assert report["direct_call"]["n"] == 1000 and report["proxy_direct"]["n"] == 200
    measured = report["modes"]["process"]
    assert set(measured["warm"]) == {"sdk", "raw"}  # deployer's client, and a bare kept connection
    for levels in measured["warm"].values():
        assert set(levels) == {"1", "2"}
        assert all(r["errors"] == 0 and r["n"] == r["concurrency"] * 5 for r in levels.values())
    # initTime is only present when the invoke paid for /init: each cold run really was cold
    assert measured["cold_start"]["n"] == 2 and measured["cold_start"]["init_time_ms_median"] > 0
    # and the prewarmed ones each took a stem cell, the others none
    assert measured["cold_prewarmed"]["stem_cell_hits"] == 2 and measured["cold_start"]["stem_cell_hits"] == 0
    # the ratios are the measured numbers divided, not something else
    warm1, raw1 = measured["warm"]["sdk"]["1"]["p50_ms"], measured["warm"]["raw"]["1"]["p50_ms"]
    assert measured["ratios"] == {
        "cold_prewarmed_p50_over_warm_p50": round(measured["cold_prewarmed"]["p50_ms"] / warm1, 1),
        "cold_start_p50_over_warm_p50": round(measured["cold_start"]["p50_ms"] / warm1, 1),
        "warm_p50_over_direct_call": round(warm1 / report["direct_call"]["p50_ms"]),
        "warm_p50_over_proxy_http": round(warm1 / report["proxy_direct"]["p50_ms"], 2),
        "raw_warm_p50_over_proxy_http": round(raw1 / report["proxy_direct"]["p50_ms"], 2),
    }


def test_the_raw_invoker_names_a_refused_invoke():
    from localwhisk.supervisor import LocalPlatform

    with tempfile.TemporaryDirectory() as tmp, LocalPlatform(Path(tmp), prewarm="none") as info:
        invoke = bp.RawInvoker(info.apihost, info.auth, "no-such-action")
        with pytest.raises(RuntimeError, match="invoke answered 404"):
            invoke()
        with pytest.raises(RuntimeError, match="invoke answered 401"):
            bp.RawInvoker(info.apihost, info.auth.split(":")[0] + ":wrong", "x")()
