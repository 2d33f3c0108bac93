"""`deployer fedavg ...` and `deployer bench fedavg` through the real CLI entry point."""

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


def test_bench_times_executors_side_by_side_and_continues_rounds_to_target(tmp_path, mnist_root):
    args = [
        "bench",
        "fedavg",
        "--executors",
        "serial,process",
        "--partitions",
        "iid",
        "--train-limit",
        "1000",
        "--test-limit",
        "300",
        "--checkpoint-root",
        str(tmp_path / "ckpt"),
        "--json",
        str(tmp_path / "b.json"),
        "--precision",
        "bf16",
    ]
    first = invoke(*args, "--timing-rounds", "1", "--timing-epochs", "1", "--max-rounds", "1")
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "b.json").read_text())
    timing = report["executors"]
    assert timing["same_weights"] and set(timing["executors"]) == {
        "serial fp32",
        "serial bf16 channels-last",
        "process bf16 channels-last",
    }
    assert all(v["mean_round_s"] > 0 for v in timing["executors"].values())
    assert timing["baseline"] == "serial fp32" and timing["ratio_to_baseline"]["serial fp32"] == 1.0
    assert timing["same_weights_by_arithmetic"] == {"fp32": True, "bf16 channels-last": True}
    assert report["paper_rounds_to_99"]["shards"]["fedavg_e5_b10"] == 229
    second = invoke(*args, "--timing-rounds", "0", "--max-rounds", "2", "--fedsgd-rounds", "3")
    assert second.exit_code == 0, second.output
    report = json.loads((tmp_path / "b.json").read_text())
    iid = report["rounds_to_target"]["partitions"]["iid"]
    assert iid["resumed_after_round"] == 1 and len(iid["accuracy"]) == 2
    assert iid["verdict"].startswith("not reached within 2 rounds") and iid["paper_fedavg_rounds"] == 20
    fedsgd = report["fedsgd"]
    assert (fedsgd["config"]["epochs"], fedsgd["config"]["batch_size"]) == (1, None)
    assert len(fedsgd["partitions"]["iid"]["accuracy"]) == 3
    assert fedsgd["partitions"]["iid"]["checkpoint_dir"] != iid["checkpoint_dir"]
    versus = report["fedsgd_vs_fedavg"]["iid"]
    assert 1 <= versus["fedsgd_rounds"] <= 3 and 1 <= versus["fedavg_rounds"] <= 2
    assert "speed-up" in second.output
