"""`deployer train` end to end through CliRunner, against the test platform as a remote OpenWhisk."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from mlcore.storage import Storage, StorageConfig
from mlcore.training.job import JobLayout
from studies.results_page import render


@pytest.fixture
def remote_env(platform, mnist_root, monkeypatch):
    """The platform reached as any OpenWhisk would be: API host, auth and S3 from the environment."""
    monkeypatch.setenv("OW_APIHOST", platform.apihost)
    monkeypatch.setenv("OW_AUTH", platform.auth)
    for key, value in platform.storage_env.items():
        monkeypatch.setenv(key, value)
    return platform


@pytest.mark.parametrize("topology", ["allreduce", "ps"])
def test_train_runs_a_job_and_writes_the_report(remote_env, tmp_path, topology):
    out = tmp_path / "train.json"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--workers",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--train-limit",
            "512",
            "--mode",
            "sync",
            "--eval-every",
            "4",
            "--topology",
            topology,
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["state"] == "done" and report["workers"]["totals"]["rounds"] == 16
    assert [e["batch"] for e in report["evaluations"]] == [4, 8]
    assert 0.0 < report["final_accuracy"] <= 1.0 and report["config"]["compress"] == "fp16"
    assert report["workers"]["per_round"]["compute_s"] > 0 and report["gb_s"]["workers"] > 0
    assert "test accuracy" in result.output and "GB-s billed" in result.output and "a step" in result.output
    assert report["config"]["topology"] == topology and report["per_step"]["requests"] > 0
    assert (report["gb_s"]["ps"] > 0) == (topology == "ps") and report["activation_s"]["workers"] > 0
    storage = Storage(StorageConfig.from_env(dict(remote_env.storage_env)))
    assert storage.exists(JobLayout(report["job"]).final)


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--mode", "sync", "--local-steps", "3"], 2, "'--local-steps': applies to --mode local only"),
        (["--workers", "4", "--batch-size", "2"], 2, "'--batch-size': 2 is less than --workers (4)"),
        (["--workers", "2", "--quorum", "3"], 2, "'--quorum': 3 is more than --workers (2)"),
        (["--comm-target", "2"], 2, "'--comm-target': must be a number in (0, 1)"),
        (["--resume", "no-such-job"], 1, "job 'no-such-job' does not exist"),
        (["--workers", "8"], 1, "runs at most 8 action containers and this job needs 9 at once"),
        (["--topology", "ring"], 2, "'--topology'"),
        (
            ["--topology", "scatter", "--workers", "3", "--quorum", "2"],
            2,
            "'--quorum': applies to --topology allreduce only (scatter waits for every worker)",
        ),
        (
            ["--workers", "7", "--topology", "ps"],
            1,
            "this job needs 9 at once (7 workers, the parameter server and the coordinator)",
        ),
    ],
)
def test_user_mistakes_end_in_one_line(remote_env, args, status, message):
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == status
    assert result.output.count("\n") == 1 and message in result.output and "Traceback" not in result.output


def test_bench_train_puts_rows_beside_the_baseline_and_plots_them(remote_env, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "train",
            "--workers",
            "2",
            "--modes",
            "local,sync",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--train-limit",
            "1024",
            "--eval-every",
            "8",
            "--targets",
            "0.3,0.99",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    base = report["baseline"]
    assert base["threads"] == os.cpu_count() and [h["batch"] for h in base["history"]] == [8, 16]
    assert [(r["mode"], r["workers"]) for r in report["rows"]] == [("local", 2), ("sync", 2)]
    for row in report["rows"]:
        assert row["per_round"]["compute_s"] > 0 and row["gb_s"]["total"] > 0
        assert row["time_to_accuracy_s"]["0.99"] is None and row["ratio_to_baseline"]["0.99"] is None
        reached = row["time_to_accuracy_s"]["0.3"]
        assert reached is None or row["ratio_to_baseline"]["0.3"] == pytest.approx(
            reached / base["time_to_accuracy_s"]["0.3"], rel=0.01
        )
    assert report["complete"] and out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "baseline" in result.output and "not reached" in result.output
    page = render(tmp_path, tmp_path / "results.md")  # the results page takes the report as it is
    assert "## bench train" in page and f"| baseline ({base['threads']} threads" in page
