"""`deployer train` end to end through CliRunner, against the test platform as a remote OpenWhisk."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from mlcore.storage import Storage, StorageConfig
from mlcore.training.job import JobLayout
from mlcore.training.state import SCRATCH_FOLDERS


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
            "--seed",
            "7",
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
    assert report["config"]["seed"] == 7
    assert (report["gb_s"]["ps"] > 0) == (topology == "ps") and report["activation_s"]["workers"] > 0
    storage = Storage(StorageConfig.from_env(dict(remote_env.storage_env)))
    layout = JobLayout(report["job"])
    assert storage.exists(layout.final) and storage.exists(layout.checkpoint_pointer)
    # a finished job replays nothing: its exchanges are gone from the bucket, its checkpoints and report stay
    assert [k for f in SCRATCH_FOLDERS for k in storage.list_keys(layout.prefix + f)] == []


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
        (["--seed", "-1"], 2, "'--seed'"),
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
