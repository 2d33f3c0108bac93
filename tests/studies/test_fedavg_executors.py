"""`bench fedavg`: executors timed side by side, rounds to target continued, FedSGD compared as the paper does."""

import json

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from fedavg.run import RunConfig
from studies.fedavg_executors import PAPER_ROUNDS_TO_99, compare_to_fedsgd, fedsgd_config
from studies.results_page import render

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_speedup_is_taken_at_the_lower_of_the_two_best_accuracies():
    fedavg = {"iid": {"accuracy": [0.90, 0.95, 0.97, 0.99]}, "shards": {"accuracy": [0.5, 0.7]}}
    fedsgd = {
        "iid": {"accuracy": [0.2, 0.6, 0.8, 0.9, 0.94, 0.95, 0.93]},
        "shards": {"accuracy": [0.3, 0.4, 0.6, 0.75, 0.8]},
    }
    out = compare_to_fedsgd(fedavg, fedsgd)
    assert out["iid"]["accuracy_level"] == 0.95
    assert (out["iid"]["fedsgd_rounds"], out["iid"]["fedavg_rounds"], out["iid"]["speedup"]) == (6, 2, 3.0)
    assert out["iid"]["fedsgd_rounds_run"] == 7
    assert out["iid"]["paper_speedup_at_99"] == PAPER_ROUNDS_TO_99["iid"]["fedsgd"] / 20
    # FedAvg's budget ended below FedSGD's best: the level is FedAvg's best.
    assert out["shards"]["accuracy_level"] == 0.7
    assert (out["shards"]["fedsgd_rounds"], out["shards"]["fedavg_rounds"]) == (4, 2)


def test_partitions_without_both_curves_are_left_out():
    assert (
        compare_to_fedsgd({"iid": {"accuracy": []}}, {"iid": {"accuracy": [0.5]}, "shards": {"accuracy": [0.4]}}) == {}
    )


def test_fedsgd_is_one_epoch_on_the_whole_local_set():
    base = RunConfig(epochs=5, batch_size=10, lr=0.05)
    sgd = fedsgd_config(base)
    assert (sgd.epochs, sgd.batch_size, sgd.lr) == (1, None, 0.05)
    assert fedsgd_config(base, 0.2).lr == 0.2
    assert sgd.run_id() != base.run_id()


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
    page = render(tmp_path, tmp_path / "results.md")  # the results page takes the report as it is
    assert "## bench fedavg" in page and "| serial fp32 | " in page and "**rounds to 0.99 (CNN" in page
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
