"""`fedavg compare`: runs grouped by arithmetic, paired by seed, and refused when they are not comparable."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from studies.errors import ReportError
from studies.fedavg_compare import compare, load_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = "--model 2nn --clients 4 --frac 0.5 --epochs 1 --batch 10 --train-limit 800 --test-limit 300 --executor serial"
CONFIG = {"model": "cnn", "lr": 0.05, "partition": "shards", "rounds": 300, "target": 0.99}


def report(accs, seed=0, precision="bf16", channels_last=True, **config):
    cfg = {**CONFIG, "seed": seed, "precision": precision, "channels_last": channels_last, **config}
    return {"config": cfg, "rounds": [{"round": i + 1, "test_acc": a} for i, a in enumerate(accs)]}


def test_same_seed_pairs_give_per_round_differences_and_round_gaps():
    named = [
        ("a0", report([0.90, 0.97, 0.98, 0.99], seed=0)),
        ("b0", report([0.91, 0.96, 0.99], seed=0, precision="fp32", channels_last=False)),
        ("a1", report([0.95, 0.99], seed=1)),
        ("b1", report([0.95, 0.98, 0.985], seed=1, precision="fp32", channels_last=False)),
        ("a2", report([0.99], seed=2)),  # no fp32 run with seed 2: grouped, never paired
    ]
    out = compare(named, thresholds=(0.97, 0.99))
    assert [g["arithmetic"] for g in out["arithmetics"]] == ["bf16 channels-last", "fp32"]
    bf16, fp32 = out["arithmetics"]
    assert bf16["reached"]["0.99"] == {"runs": 3, "reached": 3, "mean": pytest.approx(7 / 3), "min": 1, "max": 4}
    assert fp32["reached"]["0.99"]["mean"] is None and fp32["reached"]["0.99"]["reached"] == 1
    p0, p1 = out["pairs"]
    assert (p0["seed"], p0["rounds_compared"]) == (0, [1, 3])
    assert p0["acc_b_minus_a"]["mean"] == pytest.approx((0.01 - 0.01 + 0.01) / 3)
    assert p0["acc_b_minus_a"]["max_abs"] == pytest.approx(0.01)
    assert p0["rounds_b_minus_a"] == {"0.97": 1, "0.99": -1}
    assert p1["rounds_b_minus_a"] == {"0.97": 0, "0.99": None}
    assert p1["rounds_compared"] == [1, 2]
    (summary,) = out["summary"]
    assert summary["seeds"] == [0, 1]
    assert summary["rounds_b_minus_a"]["0.99"] == {"pairs": 1, "mean": -1}
    assert summary["acc_b_minus_a"] == pytest.approx((p0["acc_b_minus_a"]["mean"] + p1["acc_b_minus_a"]["mean"]) / 2)


def test_from_round_skips_the_climb():
    named = [("a", report([0.5, 0.98, 0.99])), ("b", report([0.9, 0.98, 0.98], precision="fp32"))]
    (pair,) = compare(named, thresholds=(0.99,), from_round=2)["pairs"]
    assert pair["rounds_compared"] == [2, 3]
    assert pair["acc_b_minus_a"]["mean"] == pytest.approx(-0.005)
    (late,) = compare(named, thresholds=(0.99,), from_round=9)["pairs"]
    assert late["rounds_compared"] is None and late["acc_b_minus_a"] is None


@pytest.mark.parametrize(
    ("named", "message"),
    [
        ([("a", report([0.9]))], "at least two"),
        ([("a", report([0.9])), ("b", report([0.9], lr=0.1, precision="fp32"))], "b has lr=0.1 where a has 0.05"),
        ([("a", report([0.9])), ("b", report([0.8]))], "b and a are both bf16 channels-last with seed 0"),
    ],
)
def test_runs_that_cannot_be_compared_are_refused(named, message):
    with pytest.raises(ReportError, match=message):
        compare(named)


def test_load_report_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"settings": []}))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "noacc.json").write_text(json.dumps({"config": {}, "rounds": [{"round": 1}]}))
    with pytest.raises(ReportError, match="not a FedAvg run report"):
        load_report(tmp_path / "sweep.json")
    with pytest.raises(ReportError, match="is not JSON"):
        load_report(tmp_path / "bad.json")
    with pytest.raises(ReportError, match="without test_acc"):
        load_report(tmp_path / "noacc.json")
    with pytest.raises(ReportError, match="cannot read"):
        load_report(tmp_path / "missing.json")
    with pytest.raises(ReportError, match="holds no checkpoint.pt"):
        load_report(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="not a FedAvg run report"):
        load_report(tmp_path / "list.json")


def test_cli_compares_real_runs_from_reports_and_checkpoints(tmp_path, mnist_root):
    paths = {}
    for precision in ("fp32", "bf16"):
        ckpt, out = tmp_path / f"ckpt-{precision}", tmp_path / f"{precision}.json"
        ran = CliRunner().invoke(
            cli,
            ["fedavg", "run", *TINY.split(), "--rounds", "2", "--precision", precision, "--no-channels-last"]
            + ["--checkpoint-dir", str(ckpt), "--json", str(out)],
            catch_exceptions=False,
        )
        assert ran.exit_code == 0, ran.output
        paths[precision] = (out, ckpt)
    args = ["fedavg", "compare", str(paths["fp32"][0]), str(paths["bf16"][1]), "--thresholds", "0.5,0.1"]
    result = CliRunner().invoke(cli, [*args, "--json", str(tmp_path / "c.json"), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "bf16 - fp32 over 1 seed(s)" in result.output
    written = json.loads((tmp_path / "c.json").read_text())
    assert [r["arithmetic"] for r in written["runs"]] == ["fp32", "bf16"]
    assert written["thresholds"] == [0.1, 0.5]
    assert written["pairs"][0]["rounds_compared"] == [1, 2]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refusals_exit_1_with_one_line(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(report([0.9])))
    bad = CliRunner().invoke(cli, ["fedavg", "compare", str(tmp_path / "a.json"), str(tmp_path / "nowhere")])
    assert bad.exit_code == 1
    assert "cannot read" in bad.output and bad.output.count("\n") == 1, bad.output
    threshold = CliRunner().invoke(cli, ["fedavg", "compare", str(tmp_path / "a.json"), "--thresholds", "1.5"])
    assert threshold.exit_code == 2 and "--thresholds" in threshold.output
