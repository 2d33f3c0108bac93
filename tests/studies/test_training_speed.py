"""`bench train` as a study: a tiny real sweep on the local platform, and its views from a hand-made report."""

from __future__ import annotations

import copy
import json
import os

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from studies.bench_views import plot_train, train_view
from studies.results_page import render
from studies.tabular import Table
from studies.training_speed import plan, winners

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def remote_env(platform, mnist_root, monkeypatch):
    """The platform reached as any OpenWhisk would be: API host, auth and S3 from the environment."""
    monkeypatch.setenv("OW_APIHOST", platform.apihost)
    monkeypatch.setenv("OW_AUTH", platform.auth)
    for key, value in platform.storage_env.items():
        monkeypatch.setenv(key, value)
    return platform


def test_a_tiny_sweep_names_every_row_keeps_the_failed_one_and_plots_both_figures(remote_env, tmp_path):
    # Prepare: 8 workers and a coordinator do not fit the test platform's 8 containers, so that row fails
    out = tmp_path / "bench.json"
    args = ["bench", "train", "--topologies", "allreduce", "--modes", "sync", "--workers", "2,8"]
    args += ["--models", "lenet5,lenet5x4", "--epochs", "1", "--batch-size", "64", "--train-limit", "512"]
    args += ["--wide-epochs", "1", "--wide-train-limit", "256", "--eval-every", "2", "--targets", "0.3,0.99"]
    # Execute
    result = CliRunner().invoke(cli, [*args, "--json", str(out)])
    # Assert
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["complete"] and report["targets"] == [0.3, 0.99]
    assert {m: e["parameters"] for m, e in report["models"].items()} == {"lenet5": 61_706, "lenet5x4": 972_554}
    assert report["models"]["lenet5x4"]["recipe_differs"] == {"train_limit": [512, 256]}  # said in the JSON
    for model, entry in report["models"].items():
        base = entry["baseline"]
        assert base["threads"] == os.cpu_count() and base["model"] == model
        assert base["gb_s"] == pytest.approx(base["memory_mb"] / 1024 * base["train_seconds"], abs=0.001)
        floors = entry["compute_floor"]
        assert sorted(floors) == ["2", "8"] and all(
            f["step_s"] > 0 and f["ratio_to_baseline"] > 0 for f in floors.values()
        )
    named = [(r["model"], r["topology"], r["mode"], r["workers"]) for r in report["rows"]]
    assert named == [(m, "allreduce", "sync", n) for m in ("lenet5", "lenet5x4") for n in (2, 8)]
    ran, failed = [r for r in report["rows"] if "error" not in r], [r for r in report["rows"] if "error" in r]
    assert [r["workers"] for r in failed] == [8, 8] and all("9 at once" in r["error"] for r in failed), failed
    for row in ran:
        steps = 2 * (512 if row["model"] == "lenet5" else 256) // 64  # worker-steps: 2 workers, one epoch
        assert row["totals"]["rounds"] == steps and row["per_round"]["compute_s"] > 0
        # a sync all-reduce step puts one update and gets its peer's: two requests at least, polls on top
        assert row["per_step"]["requests"] >= 2 and row["totals"]["requests"] >= 2 * steps
        assert row["per_step"]["bytes"] == pytest.approx(row["totals"]["bytes"] / steps, abs=0.1)
        gb_s = row["gb_s"]
        assert gb_s["source"] == "activation records" and gb_s["activations"] >= 3  # 2 workers, a coordinator
        assert gb_s["workers"] > 0 and gb_s["coordinator"] > 0 and gb_s["ps"] == 0
        assert gb_s["total"] == pytest.approx(gb_s["workers"] + gb_s["coordinator"], abs=0.002)
        base = report["models"][row["model"]]["baseline"]
        assert row["gb_s_ratio_to_baseline"] == pytest.approx(gb_s["total"] / base["gb_s"], rel=0.01)
        assert row["time_to_accuracy_s"]["0.99"] is None and row["ratio_to_baseline"]["0.99"] is None
    wide = next(r for r in ran if r["model"] == "lenet5x4")
    lenet = next(r for r in ran if r["model"] == "lenet5")
    assert wide["per_step"]["bytes"] > 10 * lenet["per_step"]["bytes"]  # the update is 16x larger
    assert [p.endswith(s) for p, s in zip(report["plots"], ("bench.png", "bench-cost.png"))] == [True, True]
    assert all((tmp_path / name).read_bytes()[:8] == PNG for name in ("bench.png", "bench-cost.png"))
    assert "which topology reaches 99% first" in result.output and "failed: " in result.output
    page = render(tmp_path, tmp_path / "results.md")  # the results page takes the report as it is
    assert "## bench train" in page and "| lenet5x4 | 972,554 |" in page


def test_a_bad_list_or_a_batch_smaller_than_the_workers_is_refused_naming_the_option():
    for args, option in (
        (["--topologies", "ring"], "--topologies"),
        (["--models", "resnet"], "--models"),
        (["--workers", "4", "--batch-size", "2"], "--batch-size"),
    ):
        result = CliRunner().invoke(cli, ["bench", "train", *args])
        assert result.exit_code == 2 and option in result.output and result.output.count("\n") == 1, result.output


def test_the_plan_runs_each_models_rows_together_in_a_fixed_order():
    rows = plan(["lenet5", "lenet5x4"], ["allreduce", "ps"], ["sync"], [2, 4])
    assert [str(r) for r in rows[:3]] == [
        "lenet5, allreduce, sync, 2 workers",
        "lenet5, allreduce, sync, 4 workers",
        "lenet5, ps, sync, 2 workers",
    ]
    assert len(rows) == 8 and {r.model for r in rows[4:]} == {"lenet5x4"}


def _row(model, topology, mode, workers, seconds, gb_s=2.0):
    reached = None if seconds is None else seconds
    return {
        "model": model,
        "topology": topology,
        "mode": mode,
        "workers": workers,
        "job": f"job-{topology}-{mode}-{workers}",
        "final_accuracy": 0.991,
        "elapsed_s": 20.0,
        "time_to_accuracy_s": {"0.98": 5.0, "0.99": reached},
        "ratio_to_baseline": {"0.98": 1.0, "0.99": None if reached is None else round(reached / 10.0, 3)},
        "communication_fraction": 0.25,
        "per_round": {"compute_s": 0.01, "get_s": 0.002, "put_s": 0.001, "wait_s": 0.003},
        "per_step": {"bytes": 246_000.0, "requests": 2.5},
        "local_steps": [],
        "gb_s": {"workers": gb_s - 0.5, "ps": 0.0, "coordinator": 0.5, "total": gb_s, "source": "activation records"},
        "gb_s_ratio_to_baseline": gb_s / 10.0,
        "evaluations": [{"seconds": 4.0, "accuracy": 0.97}, {"seconds": 9.0, "accuracy": 0.991}],
    }


HAND_MADE = {
    "benchmark": "train",
    "targets": [0.98, 0.99],
    "recipe": {"epochs": 3, "batch_size": 128, "train_limit": 0},
    "machine": {"cores": 2, "cpu_bf16": True, "python": "3.11.2"},
    "note": "one machine",
    "models": {
        "lenet5": {
            "parameters": 61_706,
            "recipe": {"epochs": 3, "batch_size": 128, "train_limit": 0},
            "baseline": {
                "threads": 2,
                "precision": "bf16",
                "history": [{"seconds": 4.0, "accuracy": 0.98}, {"seconds": 10.0, "accuracy": 0.99}],
                "time_to_accuracy_s": {"0.98": 4.0, "0.99": 10.0},
                "train_seconds": 12.0,
                "final_accuracy": 0.9912,
                "memory_mb": 1024,
                "gb_s": 12.0,
            },
        },
    },
    "rows": [
        _row("lenet5", "allreduce", "sync", 2, 15.0),
        _row("lenet5", "scatter", "sync", 2, 12.0),
        {"model": "lenet5", "topology": "ps", "mode": "sync", "workers": 2, "error": "no mnist-train/ps action"},
        _row("lenet5", "allreduce", "local", 2, None),
    ],
}


def test_the_fastest_topology_to_the_last_target_wins_and_one_that_failed_or_missed_cannot():
    found = winners(HAND_MADE)
    assert [(w["mode"], w["winner"]) for w in found] == [("sync", "scatter"), ("local", None)]
    assert found[0]["by_topology"]["ps"] == {"error": "no mnist-train/ps action"}
    assert found[0]["by_topology"]["scatter"] == {"seconds": 12.0, "ratio": 1.2, "gb_s": 2.0}


def test_the_view_shows_baselines_rows_failures_and_winners_as_the_page_renders_them():
    blocks = train_view(HAND_MADE)
    tables = {b.title: b for b in blocks if isinstance(b, Table)}
    rows = tables["bench train"].rows
    assert rows[1][:6] == ("lenet5", "scatter", "sync", "2", "5.0 (1.00×)", "12.0 (1.20×)")
    assert rows[1][7:9] == ("246.0 / 2.50", "10.0 / 2.0 / 1.0 / 3.0") and rows[1][-2] == "2.0 (0.20×)"
    assert rows[2][4] == "failed: no mnist-train/ps action" and rows[3][5] == "not reached"
    won = tables["which topology reaches 99% first"]
    assert won.headers[-1] == "fastest" and won.rows[0][-1] == "scatter" and won.rows[1][-1] == "none reached it"
    assert won.rows[0][4:7] == ("15.0 (1.50×)", "12.0 (1.20×)", "failed")
    base = tables["bench train: one process per model"].rows[0]
    assert base[:4] == ("lenet5", "61,706", "3", "all") and base[-2:] == ("12.0 (1024 MB)", "0.9912")


def test_a_model_trained_with_another_recipe_is_said_so(tmp_path):
    report = copy.deepcopy(HAND_MADE)
    report["models"]["lenet5x4"] = {
        **copy.deepcopy(report["models"]["lenet5"]),
        "parameters": 972_554,
        "recipe_differs": {"epochs": [3, 2]},
    }
    report["rows"].append(_row("lenet5x4", "allreduce", "sync", 2, 30.0))
    assert "lenet5x4 trains with epochs 2 instead of 3." in train_view(report)
    accuracy, cost = plot_train(report, tmp_path / "train.png")
    assert accuracy.read_bytes()[:8] == PNG and cost.name == "train-cost.png" and cost.read_bytes()[:8] == PNG
