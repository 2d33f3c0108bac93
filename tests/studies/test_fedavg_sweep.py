"""`deployer fedavg sweep`: every (partition, K) setting, its table, plot and JSON, continued from checkpoints."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deployer.cli import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "--model",
    "2nn",
    "--clients",
    "4",
    "--frac",
    "0.5",
    "--epochs",
    "1",
    "--batch",
    "10",
    "--train-limit",
    "800",
    "--test-limit",
    "300",
    "--seed",
    "3",
    "--executor",
    "serial",
]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_sweep_writes_a_table_a_plot_and_json_and_continues_its_checkpoints(tmp_path, mnist_root):
    args = [
        "fedavg",
        "sweep",
        *[a for a in TINY if a not in ("--clients", "4")],
        "--clients",
        "2,4",
        "--partition",
        "iid,shards",
        "--checkpoint-root",
        str(tmp_path / "ckpt"),
        "--json",
        str(tmp_path / "s.json"),
    ]
    first = invoke(*args, "--rounds", "1")
    assert first.exit_code == 0, first.output
    result = invoke(*args, "--rounds", "2", "--plot", str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "s.json").read_text())
    assert [s["label"] for s in report["settings"]] == ["iid K=2", "iid K=4", "shards K=2", "shards K=4"]
    assert all(len(s["accuracy"]) == 2 and s["resumed_after_round"] == 1 for s in report["settings"])
    assert (tmp_path / "s.png").stat().st_size > 1000
    fresh = invoke(*args, "--rounds", "1", "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert all(s["resumed_after_round"] == 0 for s in json.loads((tmp_path / "s.json").read_text())["settings"])
