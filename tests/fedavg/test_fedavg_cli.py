"""`deployer fedavg run|partition` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from deployer.cli import cli

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


def test_cli_offers_every_model_without_importing_torch_for_help():
    from deployer.commands.fedavg_options import MODEL_NAMES
    from fedavg.models import MODELS

    assert MODEL_NAMES == tuple(MODELS)
    code = (
        "import sys; from click.testing import CliRunner; from deployer.cli import cli; "
        "r = CliRunner().invoke(cli, ['fedavg', 'run', '--help']); "
        "print(r.exit_code, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["0", "False"], out.stderr


def test_partition_writes_a_plot_and_a_summary(tmp_path, mnist_root):
    result = invoke(
        "fedavg",
        "partition",
        "--clients",
        "20",
        "--partition",
        "shards",
        "--plot",
        str(tmp_path / "labels.png"),
        "--json",
        str(tmp_path / "p.json"),
    )
    assert result.exit_code == 0, result.output
    assert "labels 1..2" in result.output
    assert (tmp_path / "labels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["clients"] == 20 and summary["examples"] == 60000


def test_run_then_resume_reports_every_round(tmp_path, mnist_root):
    ckpt = str(tmp_path / "ckpt")
    first = invoke("fedavg", "run", *TINY, "--rounds", "1", "--checkpoint-dir", ckpt)
    assert first.exit_code == 0, first.output
    second = invoke(
        "fedavg",
        "run",
        *TINY,
        "--rounds",
        "2",
        "--target",
        "0.99",
        "--checkpoint-dir",
        ckpt,
        "--resume",
        "--json",
        str(tmp_path / "run.json"),
    )
    assert second.exit_code == 0, second.output
    assert "not reached within 2 rounds" in second.output
    report = json.loads((tmp_path / "run.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert report["rounds"][-1]["test_acc"] > 0.3
    assert report["rounds_to_target"] is None and report["mean_round_s"] > 0


def test_user_mistakes_are_one_line_errors(tmp_path, mnist_root):
    result = CliRunner().invoke(cli, ["fedavg", "run", *TINY, "--checkpoint-dir", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 1
    assert "no checkpoint" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["fedavg", "sweep", "--clients", "ten"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output
    result = CliRunner().invoke(cli, ["bench", "fedavg", "--skip-target", "--fedsgd-rounds", "5"])
    assert result.exit_code == 2 and "--fedsgd-rounds" in result.output


def test_the_ray_executor_without_ray_is_a_one_line_error(monkeypatch, mnist_root):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    monkeypatch.delitem(sys.modules, "fedavg.executors.ray", raising=False)
    result = CliRunner().invoke(cli, ["fedavg", "run", *TINY, "--rounds", "1", "--executor", "ray"])
    assert result.exit_code == 1
    assert "pip install '.[ray]'" in result.output and "Traceback" not in result.output
