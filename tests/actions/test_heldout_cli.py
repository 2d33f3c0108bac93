"""`deployer model heldout` on the session platform: every set sent through the deployed mnist/infer, JSON out."""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from deployer.cli import cli
from deployer.commands.ml import refusal
from mlcore.errors import ActivationFailedError
from mlcore.fonts import FontFamiliesError, split_families
from mlcore.storage import Storage, StorageConfig
from mlcore.train import publish_model
from studies import heldout_digits


@pytest.fixture(scope="module")
def split():
    try:
        return split_families(min_each=2)
    except FontFamiliesError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def user_env(platform, monkeypatch):
    env = {**platform.storage_env, "S3_BUCKET": "heldout-cli-tests"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage = Storage(StorageConfig.from_env(env))
    storage.ensure_bucket()
    return storage


def heldout(platform, *args):
    return CliRunner().invoke(cli, ["--apihost", platform.apihost, "--auth", platform.auth, "model", "heldout", *args])


def test_heldout_reports_each_set_through_the_action(platform, lenet5_augmented, split, user_env, tmp_path):
    # Prepare: the shared model published, with a record of a split that matches this machine's
    state, metrics = lenet5_augmented
    version = publish_model(user_env, state, dict(metrics, printed_fonts=split.to_dict()))
    report_path = tmp_path / "heldout.json"
    # Execute: a few digits of each set
    result = heldout(platform, "--model", version, "--printed", "20", "--limit", "70", "--json", str(report_path))
    # Assert
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["model"] == version and set(report["sets"]) == {
        "mnist",
        "printed_heldout",
        "printed_training",
        "sklearn",
        "mnist_8x8",
    }
    totals = {name: s["total"] for name, s in report["sets"].items()}
    assert totals == {"mnist": 70, "printed_heldout": 20, "printed_training": 20, "sklearn": 70, "mnist_8x8": 70}
    assert report["sets"]["mnist"]["accuracy"] > 0.8  # the action really classified them
    assert set(report["sets"]["printed_heldout"]["per_group"]) <= set(report["fonts"]["heldout_groups"])
    assert report["fonts"]["heldout"] == [f.name for f in split.heldout]
    assert "printed_heldout: " in result.output and "(target 97.0%" in result.output


def test_a_model_that_printed_a_held_out_family_is_refused(platform, lenet5_augmented, split, user_env):
    state, metrics = lenet5_augmented
    record = dict(split.to_dict(), training=[f.name for f in split.training] + [split.heldout[0].name])
    version = publish_model(user_env, state, dict(metrics, printed_fonts=record), mark_latest=False)
    result = heldout(platform, "--model", version, "--sets", "printed_heldout", "--printed", "10")
    assert result.exit_code == 1 and f"trained on {split.heldout[0].name}" in result.output
    assert "Traceback" not in result.output


def test_a_bad_set_is_refused_naming_the_option(platform):
    result = heldout(platform, "--sets", "mnist,fashion")
    assert result.exit_code == 2 and "--sets" in result.output


def test_a_picture_the_action_finds_no_digit_in_becomes_the_studys_refusal(platform, lenet5_augmented, split, user_env):
    # Prepare: the action deployed by a first small run; a batch of a real digit and a blank page
    state, metrics = lenet5_augmented
    version = publish_model(user_env, state, dict(metrics, printed_fonts=split.to_dict()), mark_latest=False)
    assert heldout(platform, "--model", version, "--sets", "mnist", "--limit", "1").exit_code == 0
    digit = heldout_digits.mnist_pictures(limit=1)[0][0]
    blank = heldout_digits.png(Image.new("L", (64, 64), 255))
    batch = [base64.b64encode(p).decode() for p in (digit, blank)]
    # Execute
    with pytest.raises(ActivationFailedError) as failed:
        platform.client.invoke("mnist/infer", {"images": batch, "model": version}, result=True)
    refused = refusal(failed.value)
    # Assert: the action's own words name the picture; any other failure is not a refusal
    assert isinstance(refused, heldout_digits.Refused) and refused.index == 1 and "no digit found" in refused.reason
    assert refusal(ActivationFailedError("x", None, {"error": "model must be a version name"})) is None
