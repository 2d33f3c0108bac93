"""The platform's processes sampled from /proc while a job runs, and the round's breakdown the bench reports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from studies.bench_views import train_view
from studies.process_cpu import ProcessCPU
from studies.tabular import Table
from studies.training_speed import round_breakdown

SPIN = """import sys, time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("spun", flush=True)
sys.stdin.readline()
"""


def test_a_child_born_while_sampling_is_counted_whole_and_named_by_its_pid():
    sampler = ProcessCPU(os.getpid(), every_s=0.05).start()
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "spun"
        sampler.stop()
    finally:
        child.communicate("\n", timeout=30)
    report = sampler.report({child.pid: "spinner"})
    spinner = report["roles"]["spinner"]
    assert spinner["cpu_s"] >= 0.35 and spinner["processes"] == 1
    assert 0 < spinner["core_share"] <= spinner["peak_core_share"]
    assert report["cores"] == os.cpu_count() and report["busiest"] in report["roles"]
    assert report["cores_busy"] == pytest.approx(sum(r["core_share"] for r in report["roles"].values()), abs=0.01)
    # an interval before anything was sampled holds nothing
    assert sampler.report(start=0, end=1) == {"seconds": 0.0, "roles": {}}


def _report(rows: list[dict]) -> dict:
    baseline = {"threads": 2, "precision": "bf16", "history": [], "time_to_accuracy_s": {"0.99": 10.0}}
    baseline.update(train_seconds=12.0, final_accuracy=0.9912, memory_mb=1024, gb_s=12.0)
    recipe = {"epochs": 3, "batch_size": 128, "train_limit": 0}
    return {
        "targets": [0.99],
        "recipe": recipe,
        "note": "one machine",
        "models": {"lenet5": {"parameters": 61_706, "recipe": recipe, "baseline": baseline}},
        "rows": [
            {
                "model": "lenet5",
                "topology": "allreduce",
                "mode": "sync",
                "workers": 2,
                "final_accuracy": 0.991,
                "time_to_accuracy_s": {"0.99": 15.0},
                "ratio_to_baseline": {"0.99": 1.5},
                "communication_fraction": 0.25,
                "per_round": {"compute_s": 0.01, "get_s": 0.002, "put_s": 0.001, "wait_s": 0.003},
                "per_step": {"bytes": 246_000.0, "requests": 2.5},
                "local_steps": [],
                "gb_s": {"total": 2.0},
                "gb_s_ratio_to_baseline": 0.2,
                **row,
            }
            for row in rows
        ],
    }


def _summary() -> dict:
    per = {"compute_s": 0.010, "get_s": 0.001, "put_s": 0.0005, "wait_s": 0.004}
    per.update(compute_cpu_s=0.006, main_cpu_s=0.008, cpu_s=0.0095)
    processes = {
        "seconds": 10.0,
        "cores": 2,
        "cores_busy": 1.1,
        "busiest": "worker 0",
        "roles": {
            "worker 0": {"cpu_s": 5.0, "core_share": 0.5, "peak_core_share": 0.9, "processes": 1},
            "worker 1": {"cpu_s": 4.0, "core_share": 0.4, "peak_core_share": 0.8, "processes": 1},
            "s3 endpoint": {"cpu_s": 2.0, "core_share": 0.2, "peak_core_share": 0.4, "processes": 1},
        },
    }
    return {
        "workers": {"totals": {"active_s": 32.0, "rounds": 2000}, "per_round": per},
        "per_step": {"rounds": 1000},
        "processes": processes,
    }


def test_a_rounds_milliseconds_split_into_compute_the_rest_of_the_cpu_and_waiting():
    breakdown = round_breakdown(_summary())
    assert breakdown["worker"] == {
        "wall": 16.0,
        "compute": 10.0,
        "compute_cpu": 6.0,
        "main_other_cpu": 2.0,
        "exchange_cpu": 1.5,
        "get": 1.0,
        "put": 0.5,
        "wait": 4.0,
    }
    assert breakdown["cpu"] == {"worker 0": 5.0, "worker 1": 4.0, "s3 endpoint": 2.0}
    # a report from before the CPU was measured has no split, and says so with None
    old = _summary()
    for key in ("compute_cpu_s", "main_cpu_s", "cpu_s"):
        del old["workers"]["per_round"][key]
    del old["processes"]
    assert round_breakdown(old)["worker"]["exchange_cpu"] is None and round_breakdown(old)["cpu"] == {}


def test_the_view_has_a_table_of_where_the_rounds_go_naming_the_busiest_process():
    summary = _summary()
    report = _report([{"round_ms": round_breakdown(summary), "processes": summary["processes"]}])
    tables = {b.title: b for b in train_view(report) if isinstance(b, Table)}
    (line,) = next(t for title, t in tables.items() if title.startswith("where a round")).rows
    assert line[4:8] == ("16.0", "10.0 (6.0)", "2.0 / 1.5", "1.0 / 0.5 / 4.0")
    assert line[8] == "9.0 / 2.0 / - / - / -" and line[9:] == ("worker 0 (0.50, 0.90)", "1.10 of 2")
    titles = [b.title for b in train_view(_report([{}])) if isinstance(b, Table)]
    assert not any(title.startswith("where a round") for title in titles)  # rows from before it have none
