"""`deployer demo` (the README's main job) and `deployer model`/`data` as a user runs them, on the session platform."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deployer.cli import cli
from mlcore.storage import Storage, StorageConfig
from mlcore.train import publish_model


def test_demo_reuses_the_published_model_and_classifies_through_the_platform(
    platform, lenet5_augmented, tmp_path, monkeypatch
):
    # Prepare: the user's S3 settings exported, a model already published there
    env = {**platform.storage_env, "S3_BUCKET": "demo-cli-tests"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage = Storage(StorageConfig.from_env(env))
    storage.ensure_bucket()
    version = publish_model(storage, *lenet5_augmented)
    report_path = tmp_path / "demo.json"
    # Execute
    result = CliRunner().invoke(
        cli,
        ["--apihost", platform.apihost, "--auth", platform.auth, "demo", "--images", "192", "--json", str(report_path)],
    )
    # Assert
    assert result.exit_code == 0, result.output
    assert f"reusing published {version}" in result.output
    report = json.loads(report_path.read_text())
    assert report["through_platform"]["images"] == 192 and report["through_platform"]["model"] == version
    assert report["through_platform"]["accuracy"] >= 0.98
    assert "deployer serve" in result.output


def test_data_mnist_writes_verified_files(tmp_path):
    result = CliRunner().invoke(cli, ["data", "mnist", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "sha256 verified" in result.output
    assert (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_model_train_refuses_bad_settings():
    result = CliRunner().invoke(cli, ["model", "train", "--epochs", "0"])
    assert result.exit_code == 2 and "--epochs" in result.output


def test_model_train_reports_mnist_and_printed_digits_and_publishes_both(
    storage_config, tmp_path, monkeypatch, mnist_root
):
    # Prepare: the user's S3 settings exported; one epoch keeps it short (the defaults are measured by hand)
    env = {
        "S3_ENDPOINT_URL": storage_config.endpoint_url,
        "S3_BUCKET": storage_config.bucket,
        "AWS_ACCESS_KEY_ID": storage_config.access_key,
        "AWS_SECRET_ACCESS_KEY": storage_config.secret_key,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    report_path = tmp_path / "train.json"
    # Execute
    result = CliRunner().invoke(
        cli,
        [
            "--apihost",
            "http://127.0.0.1:9",
            "--auth",
            "user:key",
            "model",
            "train",
            "--epochs",
            "1",
            "--json",
            str(report_path),
        ],
    )
    # Assert: both scores in the output, the report and the published metadata
    assert result.exit_code == 0, result.output
    assert "test accuracy 0.9" in result.output and "printed digits: " in result.output
    report = json.loads(report_path.read_text())
    assert report["accuracy"] > 0.95 and report["config"]["augment"] is not None
    printed = report["printed_digits"]
    assert printed["total"] == 30 and f"printed digits: {printed['right']} of 30" in result.output
    meta = Storage(StorageConfig.from_env(env)).get_json(f"models/lenet5/{report['version']}.json")
    assert meta["printed_digits"] == printed and meta["arch"] == "lenet5" and meta["accuracy"] == report["accuracy"]
