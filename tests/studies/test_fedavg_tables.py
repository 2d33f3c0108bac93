"""The paper's tables: lr probes continued, a table continuing where it stopped, its outputs and errors."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from fedavg.executors.serial import SerialExecutor
from fedavg.run import RunConfig, load_checkpoint, load_data, run
from studies import fedavg_executors as bench
from studies.fedavg_tables.cells import choose_lr, collapsed, new_report, run_cell, run_table
from studies.fedavg_tables.markdown import markdown, markdown_differences, markdown_probes
from studies.fedavg_tables.outputs import merge_earlier
from studies.fedavg_tables.paper import PAPER_TABLE1, PAPER_TABLE2_CNN
from studies.fedavg_tables.spec import TableSpec, cell_budget, table1_spec, table2_spec
from studies.results_page import render

BASE = RunConfig(model="2nn", clients=10, seed=1, train_limit=600, test_limit=200)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--clients", "10", "--train-limit", "600", "--test-limit", "200", "--executor", "serial", "--seed", "1"]


@pytest.fixture(scope="module")
def tiny_mnist(mnist_root):
    """600 training and 200 test images: a round of the 2NN on 10 clients takes milliseconds."""
    return load_data(train_limit=600, test_limit=200, root=mnist_root)


def serial(data):
    return SerialExecutor(data.train_images, data.train_labels, num_threads=1)


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_paper_numbers_are_the_published_ones():
    assert PAPER_TABLE2_CNN[(1, None)] == {"iid": 626, "shards": 483}
    assert PAPER_TABLE2_CNN[(1, 10)] == {"iid": 34, "shards": 350}
    assert PAPER_TABLE2_CNN[(5, 10)] == {"iid": 20, "shards": 229}
    assert bench.PAPER_ROUNDS_TO_99["shards"]["fedavg_e5_b10"] == PAPER_TABLE2_CNN[(5, 10)]["shards"]
    spec = table2_spec()
    assert [(r.key, r.epochs, r.batch_size, r.frac) for r in spec.rows] == [
        ("fedsgd", 1, None, 0.1),
        ("e1-b10", 1, 10, 0.1),
        ("e5-b10", 5, 10, 0.1),
    ]
    rows = {r.key: r for r in table1_spec("2nn").rows}
    assert rows["c0.1-b10"].paper == {"iid": 87, "shards": 664} and rows["c0.0-binf"].paper["shards"] == 4278
    assert rows["c0.5-binf"].paper == {"iid": None, "shards": None}
    assert PAPER_TABLE1["cnn"][None]["iid"][1.0] == 246 and PAPER_TABLE1["cnn"][None]["shards"][1.0] is None
    assert PAPER_TABLE1["cnn"][10]["shards"][1.0] == 97
    assert [r.epochs for r in table1_spec("cnn").rows] == [5] * 10 and table1_spec("cnn").target == 0.99


def probe(lr, acc, loss, reached=None):
    return {"lr": lr, "test_acc": acc, "test_loss": loss, "reached_at": reached}


def test_choose_lr_prefers_reaching_the_target_then_accuracy_then_lower_loss():
    assert choose_lr([probe(0.1, 0.90, 0.3), probe(0.2, 0.95, 0.5)])["lr"] == 0.2
    assert choose_lr([probe(0.1, 0.95, 0.4), probe(0.2, 0.95, 0.3)])["lr"] == 0.2
    assert choose_lr([probe(0.1, 0.95, math.nan), probe(0.2, 0.95, 9.0)])["lr"] == 0.2
    assert choose_lr([probe(0.1, 0.99, 0.1), probe(0.2, 0.97, 0.2, reached=2)])["lr"] == 0.2


def test_the_best_probe_is_continued_from_its_own_first_rounds(tiny_mnist, tmp_path):
    row = table1_spec("2nn", [0.5], [10]).rows[0]
    base = dataclasses.replace(BASE, mu=0.001, target=0.99, precision="bf16", channels_last=True)
    with serial(tiny_mnist) as executor:
        cell = run_cell(
            base,
            row,
            "iid",
            lrs=(0.001, 0.1),
            probe_rounds=1,
            max_rounds=3,
            executor=executor,
            data=tiny_mnist,
            checkpoint_root=tmp_path,
        )
    probes = {p["lr"]: p for p in cell["probes"]}
    assert probes[0.1]["test_acc"] > probes[0.001]["test_acc"] and cell["chosen_lr"] == 0.1
    assert cell["accuracy"][0] == probes[0.1]["test_acc"]
    assert cell["rounds_done"] == 3 and cell["rounds_run_now"] == 1 + 3
    _, loser = load_checkpoint(tmp_path / probes[0.001]["run_id"])
    assert len(loser["rounds"]) == 1
    assert (cell["config"]["mu"], cell["config"]["seed"], cell["config"]["frac"]) == (0.001, 1, 0.5)
    assert (cell["config"]["precision"], cell["config"]["channels_last"]) == ("bf16", True)
    assert cell["verdict"].startswith("not reached in 3 rounds (best 0.")


def _rounds(accuracy, loss=0.5):
    return [{"round": i + 1, "test_acc": a, "test_loss": loss} for i, a in enumerate(accuracy)]


def test_a_run_has_collapsed_when_its_loss_is_not_finite_or_its_accuracy_stays_below_half_its_best():
    assert collapsed(_rounds([0.5, 0.9] + [0.91] * 30)) is None
    assert collapsed(_rounds([0.9] * 5 + [0.11] * 19)) is None  # not for long enough yet
    assert "fell from 0.9000 to at most 0.1100" in collapsed(_rounds([0.9] * 5 + [0.11] * 20))
    assert collapsed(_rounds([0.9] * 5 + [0.11] * 19 + [0.5])) is None  # coming back
    assert "test loss nan" in collapsed(_rounds([0.9], loss=math.nan))


def test_a_continued_rate_that_diverges_gives_way_to_the_next_best_and_a_rerun_does_not_redo_it(tiny_mnist, tmp_path):
    row = table1_spec("2nn", [0.5], [10]).rows[0]
    base = dataclasses.replace(BASE, target=0.99)

    def cell():
        with serial(tiny_mnist) as executor:
            return run_cell(
                base,
                row,
                "iid",
                lrs=(0.001, 0.1),
                probe_rounds=1,
                max_rounds=4,
                executor=executor,
                data=tiny_mnist,
                checkpoint_root=tmp_path,
                give_up=lambda rounds: "gave up" if len(rounds) >= 2 else None,
            )

    first = cell()
    assert [d["lr"] for d in first["diverged"]] == [0.1, 0.001]  # best probe first, then the next
    assert all(d["rounds_done"] == 2 and d["why"] == "gave up" for d in first["diverged"])
    assert first["rounds_run_now"] == 2 + 2 and "Continued lr 0.1 diverged" in "\n".join(
        markdown_probes({"cells": [first]})
    )
    again = cell()
    assert again["rounds_run_now"] == 0 and again["diverged"] == first["diverged"]


def test_an_earlier_piece_written_before_a_config_field_existed_is_still_the_same_study():
    def piece(key, config):
        row = {"key": key, "batch_size": None, "frac": float(key)}
        cell = {"row": key, "partition": "shards", "executor": {"name": "serial"}}
        return {
            "table": 1,
            "model": "2nn",
            "target": 0.97,
            "config": config,
            "rows": [row],
            "partitions": ["shards"],
            "cells": [cell],
            "executor": {"name": "serial"},
        }

    now = dataclasses.asdict(dataclasses.replace(BASE, pixels="standardized"))
    before = {k: v for k, v in now.items() if k != "pixels"}
    merged = merge_earlier(piece("0.5", now), piece("0.1", before))
    assert sorted(c["row"] for c in merged["cells"]) == ["0.1", "0.5"]
    other = merge_earlier(piece("0.5", {**now, "pixels": "unit"}), piece("0.1", before))
    assert [c["row"] for c in other["cells"]] == ["0.5"]


def test_c_zero_trains_one_client_a_round(tiny_mnist):
    config = dataclasses.replace(BASE, frac=0.0, epochs=1, batch_size=10, rounds=2)
    with serial(tiny_mnist) as executor:
        report, _ = run(config, executor, tiny_mnist)
    assert [len(r["clients"]) for r in report["rounds"]] == [1, 1]


def test_a_table_reports_after_every_cell_and_a_reached_cell_gives_its_round(tiny_mnist, tmp_path):
    spec = TableSpec(1, "2nn", 0.2, table1_spec("2nn", [1.0], [10]).rows, "low-target table")
    partial = []
    report = run_table(
        spec,
        dataclasses.replace(BASE, model="cnn"),
        ["iid", "shards"],
        lambda: serial(tiny_mnist),
        tiny_mnist,
        probe_rounds={"iid": 1, "shards": 2},
        max_rounds=4,
        lrs=[0.1],
        checkpoint_root=tmp_path,
        on_cell=lambda r: partial.append(len(r["cells"])),
    )
    assert partial == [1, 2]
    iid = report["cells"][0]
    assert iid["config"]["model"] == "2nn" and iid["config"]["target"] == 0.2
    assert iid["rounds_to_target"] is not None and iid["verdict"] == str(iid["rounds_to_target"])
    assert iid["rounds_done"] == iid["rounds_to_target"] and iid["probes"][0]["reached_at"] is not None
    assert report["cells"][1]["probe_rounds"] == 2


def test_markdown_shows_the_paper_beside_cells_not_run_yet():
    spec = table2_spec(["fedsgd", "e5-b10"])
    text = markdown(new_report(spec, RunConfig(), ["iid", "shards"], {"iid": 3, "shards": 6}, 500, None))
    assert "| FedSGD (E=1, B=inf) | 1 | inf | 0.1 | not run yet |  | 626 |  |  | not run yet |  | 483 |  |  |" in text
    assert "| 20 |  | paper 31.3x |" in text and "| 229 |  | paper 2.1x |" in text and "10^(1/3) or 10^(1/6)" in text
    one = markdown(new_report(table1_spec("2nn", [0.3, 0.5], [None]), RunConfig(), ["iid"], {"iid": 3}, 9, None))
    assert "| C=0.3, B=inf | 1 | inf | 0.3 | not run yet |  | not in the paper |  |  |" in one
    assert "| C=0.5, B=inf | 1 | inf | 0.5 | not run yet |  | — (not reached) |  |  |" in one
    bf16 = markdown(new_report(spec, RunConfig(precision="bf16", channels_last=True), ["iid"], {"iid": 3}, 9, None))
    assert "bf16 autocast with fp32 master weights, channels-last convolutions" in bf16


def test_a_cell_runs_to_the_papers_rounds_by_half_again_and_a_dash_cell_to_half_again_its_slowest_c():
    t2 = table2_spec(["fedsgd", "e5-b10"])
    assert [cell_budget(t2, row, "iid") for row in t2.rows] == [939, 30]
    assert [cell_budget(t2, row, "shards") for row in t2.rows] == [725, 344]
    t1 = table1_spec("2nn", [0.0, 0.5, 0.3], [None])
    assert [cell_budget(t1, row, "iid") for row in t1.rows] == [2183, 2487, 3000]
    assert [cell_budget(t1, row, "shards") for row in t1.rows] == [6417, 6417, 3000]
    cnn = {row.key: row for row in table1_spec("cnn").rows}
    assert cell_budget(table1_spec("cnn"), cnn["c1.0-binf"], "shards") == math.ceil(1.5 * 1181)


def _cell(row, partition, reached, done, best=0.99, lr=0.1):
    return {
        "row": row.key,
        "label": row.label,
        "partition": partition,
        "rounds_to_target": reached,
        "rounds_done": done,
        "best_acc": best,
        "verdict": str(reached) if reached else f"not reached in {done} rounds (best {best})",
        "chosen_lr": lr,
        "probes": [probe(x, 0.9, 0.3) for x in (0.05, lr, 1.0)],
        "max_rounds": done,
        "probe_rounds": 3,
    }


def test_markdown_gives_the_ratio_to_the_paper_the_speedup_over_fedsgd_and_lists_cells_over_2x():
    spec = table2_spec(["fedsgd", "e1-b10", "e5-b10"])
    fedsgd, e1, e5 = spec.rows
    report = new_report(spec, RunConfig(), ["iid", "shards"], {"iid": 3, "shards": 6}, None, None)
    report["cells"] = [
        _cell(fedsgd, "iid", 500, 500),
        _cell(e1, "iid", 100, 100),
        _cell(e5, "iid", 25, 25),
        _cell(e5, "shards", None, 344, best=0.9861),
    ]
    text = markdown(report)
    assert "| FedSGD (E=1, B=inf) | 1 | inf | 0.1 | 500 | 0.1 | 626 | 0.80 |  |" in text
    assert "| FedAvg E=1, B=10 | 1 | 10 | 0.1 | 100 | 0.1 | 34 | 2.94 | 5.0x (paper 18.4x) |" in text
    assert "| 25 | 0.1 | 20 | 1.25 | 20.0x (paper 31.3x) |" in text
    assert "| 229 | > 1.50 | paper 2.1x |" in text
    assert markdown_differences(report) == [
        "- FedAvg E=1, B=10, IID: 2.94x the paper's rounds; lr 0.1",
        "- FedAvg E=5, B=10, non-IID (shards): not reached in 344 rounds (1.50x the paper's), best 0.9861; lr 0.1",
    ]
    assert "## Cells more than 2x from the paper's rounds, or not reached by half again" in text


def test_table_command_writes_its_files_and_a_second_run_continues_without_redoing_rounds(tmp_path, mnist_root):
    out = tmp_path / "out"
    args = [
        "fedavg",
        "table",
        "2",
        *TINY,
        "--rows",
        "e1-b10",
        "--partitions",
        "iid",
        "--lrs",
        "0.02,0.1",
        "--precision",
        "fp32",
        "--no-channels-last",
        "--probe-rounds",
        "1",
        "--checkpoint-root",
        str(tmp_path / "ckpt"),
        "--out",
        str(out),
    ]
    first = invoke(*args, "--max-rounds", "2")
    assert first.exit_code == 0, first.output
    report = json.loads((out / "table2.json").read_text())
    cell = report["cells"][0]
    assert cell["rounds_run_now"] == 3 and cell["rounds_done"] == 2 and len(cell["round_s"]) == 2
    assert [p["lr"] for p in cell["probes"]] == [0.02, 0.1] and all("test_loss" in p for p in cell["probes"])
    assert report["precision"] == report["config"]["precision"] == "fp32" and "arithmetic" in report
    text = (out / "table2.md").read_text()
    assert "| FedAvg E=1, B=10 | 1 | 10 | 0.1 | not reached in 2 rounds (best 0." in text and "| 34 |" in text
    assert f"| {cell['chosen_lr']:.3g} (grid edge) | 34 |" in text
    assert "Arithmetic: fp32 on CPU" in text
    assert (out / "table2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| FedAvg E=1, B=10 | 1 | 10 | 0.1 | not reached in 2 rounds" in render(out, out / "results.md")
    again = invoke(*args, "--max-rounds", "2")
    assert again.exit_code == 0, again.output
    second = json.loads((out / "table2.json").read_text())
    assert second["rounds_run_now"] == 0 and second["cells"][0]["resumed_after_round"] == 2
    assert second["cells"][0]["accuracy"] == cell["accuracy"]
    longer = invoke(*args, "--max-rounds", "3")
    assert longer.exit_code == 0, longer.output
    third = json.loads((out / "table2.json").read_text())["cells"][0]
    assert third["rounds_run_now"] == 1 and third["accuracy"][:2] == cell["accuracy"]
    fresh = invoke(*args, "--max-rounds", "2", "--fresh")
    assert fresh.exit_code == 0, fresh.output
    again = json.loads((out / "table2.json").read_text())["cells"][0]
    assert again["rounds_run_now"] == 3 and again["resumed_after_round"] == 0
    assert again["accuracy"] == cell["accuracy"]


def test_a_study_run_in_pieces_keeps_one_table_and_another_study_replaces_it(tmp_path, mnist_root):
    out = tmp_path / "out"
    args = [
        "fedavg",
        "table",
        "2",
        *TINY,
        "--partitions",
        "iid",
        "--lrs",
        "0.1",
        "--precision",
        "fp32",
        "--no-channels-last",
        "--probe-rounds",
        "1",
        "--checkpoint-root",
        str(tmp_path / "ckpt"),
        "--out",
        str(out),
    ]
    assert invoke(*args, "--rows", "e1-b10", "--max-rounds", "2").exit_code == 0
    assert (
        invoke(
            *args, "--rows", "fedsgd", "--max-rounds", "3", "--partitions", "shards", "--probe-rounds", "shards=1"
        ).exit_code
        == 0
    )
    report = json.loads((out / "table2.json").read_text())
    assert sorted((c["row"], c["partition"], c["rounds_done"]) for c in report["cells"]) == [
        ("e1-b10", "iid", 2),
        ("fedsgd", "shards", 3),
    ]
    assert [r["key"] for r in report["rows"]] == ["fedsgd", "e1-b10"] and report["partitions"] == ["iid", "shards"]
    assert report["rounds_run_now"] == 3 and all(c["executor"]["name"] == "serial" for c in report["cells"])
    text = (out / "table2.md").read_text()
    assert "| FedSGD (E=1, B=inf) | 1 | inf | 0.1 | not run yet |  | 626 |  |  | not reached in 3 rounds" in text
    assert "| FedAvg E=1, B=10 | 1 | 10 | 0.1 | not reached in 2 rounds" in text
    assert "2 of 4 cells done" in text and "its own budget (2 to 3 rounds" in text and "executor serial," in text
    assert invoke(*args, "--rows", "e1-b10", "--max-rounds", "2", "--seed", "2").exit_code == 0
    other = json.loads((out / "table2.json").read_text())
    assert [(c["row"], c["config"]["seed"]) for c in other["cells"]] == [("e1-b10", 2)]


@pytest.mark.parametrize(
    "args, says",
    [
        (["2", "--rows", "e7-b3"], "--rows"),
        (["2", "--model", "2nn"], "table 2 is the CNN"),
        (["1", "--rows", "0.1,1.5"], "--rows"),
        (["1", "--batches", "inf,0"], "--batches"),
        (["1", "--probe-rounds", "iid=x"], "--probe-rounds"),
        (["1", "--probe-rounds", "iid=3", "--partitions", "iid,shards"], "--probe-rounds"),
        (["1", "--partitions", "dirichlet"], "--partitions"),
        (["2", "--lrs", "0.1,-1"], "--lrs"),
        (["2", "--probe-rounds", "5", "--max-rounds", "3"], "--max-rounds"),
        (["3"], "'3' is not one of"),
    ],
)
def test_table_user_mistakes_are_one_line_click_errors(args, says):
    result = CliRunner().invoke(cli, ["fedavg", "table", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_table_help_does_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from deployer.cli import cli; "
        "r = CliRunner().invoke(cli, ['fedavg', 'table', '--help']); "
        "print(r.exit_code, 'torch' in sys.modules, 'continues where it' in ' '.join(r.output.split()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["0", "False", "True"], out.stderr
