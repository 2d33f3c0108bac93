"""`deployer train` end to end through CliRunner, against the test platform as a remote OpenWhisk."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from mlcore.dist_job import JobLayout
from mlcore.storage import Storage, StorageConfig


@pytest.fixture
def remote_env(platform, mnist_root, monkeypatch):
    """The platform reached as any OpenWhisk would be: API host, auth and S3 from the environment."""
    monkeypatch.setenv("OW_APIHOST", platform.apihost)
    monkeypatch.setenv("OW_AUTH", platform.auth)
    for key, value in platform.storage_env.items():
        monkeypatch.setenv(key, value)
    return platform


def test_train_runs_a_job_and_writes_the_report(remote_env, tmp_path):
    out = tmp_path / "train.json"
    result = CliRunner().invoke(cli, ["train", "--workers", "2", "--epochs", "1", "--batch-size", "64",
                                      "--train-limit", "512", "--compress", "fp16", "--keep-versions", "0",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["state"] == "done" and report["steps"] == 8
    assert 0.0 < report["final_accuracy"] <= 1.0 and report["config"]["compress"] == "fp16"
    assert report["step_mean"]["compute_s"] > 0 and report["gb_s"]["workers_and_ps"] > 0
    assert "test accuracy" in result.output and "GB-s billed" in result.output
    storage = Storage(StorageConfig.from_env(dict(remote_env.storage_env)))
    assert len(list(storage.list_keys(JobLayout(report["job"]).prefix + "model/"))) == 9  # --keep-versions 0


@pytest.mark.parametrize("args, message", [
    (["--mode", "sync", "--local-steps", "3"], "--local-steps applies to --mode local only"),
    (["--workers", "4", "--batch-size", "2"], "must be at least the number of workers"),
    (["--resume", "no-such-job"], "job 'no-such-job' does not exist"),
    (["--keep-versions", "-1"], "keep_versions must be >= 0"),
    (["--workers", "7"], "runs at most 8 action containers and this job needs 9 at once"),
])
def test_user_mistakes_end_in_one_line(remote_env, args, message):
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
