"""The FedAvg paper's Tables 1 and 2 as resumable studies: our rounds to target beside the paper's.

Source: H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas, "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017, PMLR 54:1273-1282
(arXiv:1602.05629), Section 3. Table 2 gives the rounds the MNIST CNN needs to reach 99% test
accuracy at C=0.1, for FedSGD (E=1, B=inf) and FedAvg at several E and B. Table 1 gives the
effect of the client fraction C (0.0 meaning one client per round) for the 2NN with E=1 (to 97%)
and the CNN with E=5 (to 99%), each with B=inf and B=10.

How the paper chose learning rates (Section 3): "The results reported here are based on
training over a sufficiently wide grid of learning rates (typically 11-13 values for eta on a
multiplicative grid of resolution 10^(1/3) or 10^(1/6)). We checked to ensure the best
learning rates were in the middle of our grids". Each table entry is then read off the best
rate's learning curve, made monotone (best accuracy so far), where it crosses the target,
interpolating linearly between rounds. The text names no MNIST learning rate; the one pair it
states, for the large-scale word LSTM, has FedSGD's rate above FedAvg's (18.0 against 9.0),
which is why our B=inf grid sits higher.

Eleven full runs per cell are out of reach on 2 cores, so each cell here probes a small grid
(4 rates, 10^(1/3) apart) for a few rounds, keeps the rate with the best test accuracy at the
end of the probe (a probe that already reached the target wins; ties go to the lower test
loss), and continues that rate's run to the target or the round budget. A probe is the first
rounds of that rate's own checkpointed run (same RunConfig apart from `rounds`), so the winner
continues without repeating them, and a table that was stopped continues where it stopped.
Fields of the base RunConfig that a table does not set (seed, limits, precision,
channels-last, ...) are passed through untouched.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlcore import compute as precisions

from .errors import FedAvgError
from .run import Data, RunConfig, first_round_at, label_rounds, run_resumable

CITATION = (
    "McMahan, Moore, Ramage, Hampson, Agüera y Arcas: Communication-Efficient Learning of Deep "
    "Networks from Decentralized Data, AISTATS 2017 (arXiv:1602.05629)"
)
PARTITIONS = ("iid", "shards")

# Table 2, MNIST CNN, C=0.1, rounds to 99% test accuracy; (E, B) -> rounds per partition, B None = inf.
# (1, None) is FedSGD. "shards" is the paper's pathological non-IID partition.
PAPER_TABLE2_CNN: dict[tuple[int, int | None], dict[str, int]] = {
    (1, None): {"iid": 626, "shards": 483},
    (5, None): {"iid": 179, "shards": 1000},
    (1, 50): {"iid": 65, "shards": 600},
    (20, None): {"iid": 234, "shards": 672},
    (1, 10): {"iid": 34, "shards": 350},
    (5, 50): {"iid": 29, "shards": 334},
    (20, 50): {"iid": 32, "shards": 426},
    (5, 10): {"iid": 20, "shards": 229},
    (20, 10): {"iid": 18, "shards": 173},
}

# Table 1: model -> B -> partition -> {C: rounds}; 2NN to 97% with E=1, CNN to 99% with E=5.
# None is the paper's "—": one of the five large-batch runs that "did not reach the target
# accuracy in the allowed time". Every other cell was found in the paper.
PAPER_TABLE1: dict[str, dict[int | None, dict[str, dict[float, int | None]]]] = {
    "2nn": {
        None: {
            "iid": {0.0: 1455, 0.1: 1474, 0.2: 1658, 0.5: None, 1.0: None},
            "shards": {0.0: 4278, 0.1: 1796, 0.2: 1528, 0.5: None, 1.0: None},
        },
        10: {
            "iid": {0.0: 316, 0.1: 87, 0.2: 77, 0.5: 75, 1.0: 70},
            "shards": {0.0: 3275, 0.1: 664, 0.2: 619, 0.5: 443, 1.0: 380},
        },
    },
    "cnn": {
        None: {
            "iid": {0.0: 387, 0.1: 339, 0.2: 337, 0.5: 164, 1.0: 246},
            "shards": {0.0: 1181, 0.1: 1100, 0.2: 978, 0.5: 1067, 1.0: None},
        },
        10: {
            "iid": {0.0: 50, 0.1: 18, 0.2: 18, 0.5: 18, 1.0: 16},
            "shards": {0.0: 956, 0.1: 206, 0.2: 200, 0.5: 261, 1.0: 97},
        },
    },
}
TABLE1_MODELS = {"2nn": {"epochs": 1, "target": 0.97}, "cnn": {"epochs": 5, "target": 0.99}}
TABLE1_FRACS = (0.0, 0.1, 0.2, 0.5, 1.0)
TABLE2_DEFAULT_ROWS = ("fedsgd", "e1-b10", "e5-b10")
DEFAULT_MAX_ROUNDS = {(2, "cnn"): 1000, (1, "2nn"): 3000, (1, "cnn"): 1000}
DEFAULT_PROBE_ROUNDS = {"iid": 3, "shards": 6}

# 10^(k/3): the paper's coarser grid resolution, four steps each.
MINIBATCH_LRS = tuple(round(10 ** (k / 3), 4) for k in (-5, -4, -3, -2))  # 0.0215 .. 0.215
FULL_BATCH_LRS = tuple(round(10 ** (k / 3), 4) for k in (-3, -2, -1, 0))  # 0.1 .. 1.0


@dataclass(frozen=True)
class Row:
    """One line of a table: the local work (E, B) and client fraction C, with the paper's rounds."""

    key: str
    label: str
    epochs: int
    batch_size: int | None
    frac: float
    paper: Mapping[str, int | None]

    def lrs(self) -> tuple[float, ...]:
        """The grid to probe: one step of B=inf is a whole local set, which takes larger rates."""
        return FULL_BATCH_LRS if self.batch_size is None else MINIBATCH_LRS


@dataclass(frozen=True)
class TableSpec:
    number: int
    model: str
    target: float
    rows: tuple[Row, ...]
    title: str


def _b(batch_size: int | None) -> str:
    return "inf" if batch_size is None else str(batch_size)


def _rounds(n: int) -> str:
    return f"{n} round" + ("" if n == 1 else "s")


def _c(frac: float) -> str:
    """C as the paper writes it: 0.0, 0.1, ... 1.0."""
    return f"{frac:.1f}" if round(frac, 1) == frac else f"{frac:g}"


def table2_row_keys() -> list[str]:
    return ["fedsgd" if eb == (1, None) else f"e{eb[0]}-b{_b(eb[1])}" for eb in PAPER_TABLE2_CNN]


def table2_spec(keys: Sequence[str] = TABLE2_DEFAULT_ROWS) -> TableSpec:
    """Table 2's rows by key ('fedsgd', 'e5-b10', ...); the paper's headline rows by default.

    Raises:
        FedAvgError: a key that is not a row of the paper's Table 2.
    """
    by_key = dict(zip(table2_row_keys(), PAPER_TABLE2_CNN.items()))
    unknown = [k for k in keys if k not in by_key]
    if unknown or not keys:
        raise FedAvgError(f"table 2 has rows {', '.join(by_key)}; got {', '.join(unknown) or 'none'}")
    rows = []
    for key in keys:
        (epochs, batch), paper = by_key[key]
        label = "FedSGD (E=1, B=inf)" if key == "fedsgd" else f"FedAvg E={epochs}, B={_b(batch)}"
        rows.append(Row(key, label, epochs, batch, 0.1, dict(paper)))
    return TableSpec(2, "cnn", 0.99, tuple(rows), "Table 2: MNIST CNN, rounds to 99% test accuracy, C=0.1")


def table1_spec(
    model: str = "2nn", fracs: Sequence[float] = TABLE1_FRACS, batches: Sequence[int | None] = (None, 10)
) -> TableSpec:
    """Table 1's rows: every (C, B) pair; C=0.0 is one client per round.

    Raises:
        FedAvgError: a model the paper's Table 1 does not have, or C outside [0, 1].
    """
    if model not in TABLE1_MODELS:
        raise FedAvgError(f"table 1 is for {' and '.join(TABLE1_MODELS)}, got {model!r}")
    if not fracs or not batches or any(not 0 <= c <= 1 for c in fracs):
        raise FedAvgError(f"table 1 needs C values in [0, 1] and at least one B, got {fracs} and {batches}")
    epochs, target = TABLE1_MODELS[model]["epochs"], TABLE1_MODELS[model]["target"]
    rows = []
    for batch in batches:
        for c in fracs:
            paper = {kind: PAPER_TABLE1[model].get(batch, {}).get(kind, {}).get(c) for kind in PARTITIONS}
            rows.append(Row(f"c{_c(c)}-b{_b(batch)}", f"C={_c(c)}, B={_b(batch)}", epochs, batch, c, paper))
    title = f"Table 1: MNIST {model.upper()}, E={epochs}, rounds to {target:.0%} test accuracy by client fraction C"
    return TableSpec(1, model, target, tuple(rows), title)


def paper_cell_known(spec: TableSpec, row: Row) -> bool:
    """Whether the paper has this (C, B) at all; a None inside it is the paper's 'not reached'."""
    if spec.number == 2:
        return True
    return row.frac in TABLE1_FRACS and row.batch_size in PAPER_TABLE1[spec.model]


def paper_as_json() -> dict:
    """Both tables with string keys (JSON has no tuple or None keys)."""
    return {
        "citation": CITATION,
        "table2_cnn_rounds_to_99": [{"E": e, "B": _b(b), **cells} for (e, b), cells in PAPER_TABLE2_CNN.items()],
        "table1_rounds_to_target": {
            model: {
                f"B={_b(b)}": {kind: {_c(c): n for c, n in by_c.items()} for kind, by_c in parts.items()}
                for b, parts in by_b.items()
            }
            for model, by_b in PAPER_TABLE1.items()
        },
        "table1_none_means": "the paper's '—': did not reach the target in the allowed time",
        "lr_procedure": "a grid of typically 11-13 learning rates, multiplicative resolution 10^(1/3) or 10^(1/6), "
        "best rate per setting; rounds read where the monotone (best-so-far) curve crosses the "
        "target, interpolated linearly",
    }


def probe_record(lr: float, report: dict, probe_rounds: int, target: float) -> dict:
    """What one learning rate showed after its probe (taken at the probe's last round, however far it ran since)."""
    rounds = report["rounds"]
    if not rounds:
        raise FedAvgError(f"the probe of lr={lr:g} ran no round")
    at = rounds[min(probe_rounds, len(rounds)) - 1]
    accuracy = [r["test_acc"] for r in rounds[:probe_rounds]]
    reached = first_round_at(accuracy, target)
    return {
        "lr": lr,
        "round": at["round"],
        "test_acc": at["test_acc"],
        "test_loss": at["test_loss"],
        "reached_at": reached,
        "accuracy": accuracy,
        "test_loss_curve": [r["test_loss"] for r in rounds[:probe_rounds]],
        "rounds_done": len(rounds),
        "run_id": report["run_id"],
        "resumed_after_round": report.get("resumed_after_round", 0),
    }


def choose_lr(probes: Sequence[dict]) -> dict:
    """The probe to continue: reached the target soonest, else best accuracy, then lower loss, then lower lr.

    A diverged probe has a NaN loss; it ranks as an infinite one.
    """
    if not probes:
        raise FedAvgError("no learning rate was probed")

    def rank(p: dict) -> tuple:
        loss = p["test_loss"] if math.isfinite(p["test_loss"]) else math.inf
        reached = p["reached_at"] if p["reached_at"] is not None else math.inf
        return reached, -p["test_acc"], loss, p["lr"]

    return min(probes, key=rank)


def _new_rounds(report: dict) -> int:
    return len(report["rounds"]) - report.get("resumed_after_round", 0)


def run_cell(
    base: RunConfig,
    row: Row,
    partition: str,
    *,
    lrs: Sequence[float],
    probe_rounds: int,
    max_rounds: int,
    executor,
    data: Data,
    checkpoint_root: Path | None,
    on_round: Callable[[str, dict], None] | None = None,
) -> dict:
    """Probes each lr for probe_rounds, then continues the best one to base.target or max_rounds.

    Without a checkpoint_root the winner starts again from round 0, so callers that want no
    lasting checkpoints should pass a temporary folder instead.
    """
    if probe_rounds < 1 or max_rounds < probe_rounds:
        raise FedAvgError(f"need 1 <= probe rounds <= max rounds, got {probe_rounds} and {max_rounds}")

    def config(lr: float, rounds: int) -> RunConfig:
        return dataclasses.replace(
            base, epochs=row.epochs, batch_size=row.batch_size, frac=row.frac, partition=partition, lr=lr, rounds=rounds
        )

    probes, new_rounds = [], 0
    for lr in lrs:
        report = run_resumable(
            config(lr, probe_rounds),
            executor,
            data,
            checkpoint_root,
            on_round=label_rounds(on_round, f"{row.key} {partition} lr={lr:.3g} (probe)"),
        )
        probes.append(probe_record(lr, report, probe_rounds, base.target))
        new_rounds += _new_rounds(report)
    best = choose_lr(probes)
    final = run_resumable(
        config(best["lr"], max_rounds),
        executor,
        data,
        checkpoint_root,
        on_round=label_rounds(on_round, f"{row.key} {partition} lr={best['lr']:.3g}"),
    )
    new_rounds += _new_rounds(final)
    return _cell(row, partition, probes, best, final, probe_rounds, max_rounds, new_rounds)


def _cell(
    row: Row,
    partition: str,
    probes: list[dict],
    best: dict,
    final: dict,
    probe_rounds: int,
    max_rounds: int,
    new_rounds: int,
) -> dict:
    """One cell of the JSON; resumed_after_round counts the winner's rounds that existed before this call."""
    rounds = final["rounds"]
    reached = final["rounds_to_target"]
    return {
        "row": row.key,
        "label": row.label,
        "partition": partition,
        "epochs": row.epochs,
        "batch_size": row.batch_size,
        "frac": row.frac,
        "paper_rounds": row.paper.get(partition),
        "probes": probes,
        "chosen_lr": best["lr"],
        "probe_rounds": probe_rounds,
        "max_rounds": max_rounds,
        "target": final["config"]["target"],
        "rounds_to_target": reached,
        "verdict": str(reached)
        if reached is not None
        else f"not reached in {_rounds(len(rounds))} (best {final['best_acc']:.4f})",
        "rounds_done": len(rounds),
        "best_acc": final["best_acc"],
        "final_acc": final["final_acc"],
        "accuracy": [r["test_acc"] for r in rounds],
        "test_loss": [r["test_loss"] for r in rounds],
        "train_loss": [r["train_loss"] for r in rounds],
        "round_s": [r["round_s"] for r in rounds],
        "eval_s": [r["eval_s"] for r in rounds],
        "mean_round_s": final["mean_round_s"],
        "failed_clients": final["failed_clients"],
        "resumed_after_round": best["resumed_after_round"],
        "rounds_run_now": new_rounds,
        "run_id": final["run_id"],
        "checkpoint_dir": final.get("checkpoint_dir"),
        "config": final["config"],
        "final_state_sha256": final.get("final_state_sha256"),
    }


def new_report(
    spec: TableSpec,
    base: RunConfig,
    partitions: Sequence[str],
    probe_rounds: Mapping[str, int],
    max_rounds: int,
    lrs: Sequence[float] | None,
    executor: Mapping | None = None,
) -> dict:
    """The report before any cell has run: what will run, the paper's numbers, and how ours are made."""
    now = _now()
    return {
        "table": spec.number,
        "title": spec.title,
        "model": spec.model,
        "target": spec.target,
        "rows": [
            {
                **dataclasses.asdict(row),
                "paper": dict(row.paper),
                "lrs": list(lrs or row.lrs()),
                "paper_known": paper_cell_known(spec, row),
            }
            for row in spec.rows
        ],
        "partitions": list(partitions),
        "probe_rounds": dict(probe_rounds),
        "max_rounds": max_rounds,
        "lrs_override": list(lrs) if lrs else None,
        "config": base.as_dict(),
        "precision": base.precision,
        "channels_last": base.channels_last,
        "arithmetic": precisions.describe(),
        "executor": dict(executor or {}),
        "host": {"cpus": os.cpu_count()},
        "paper": paper_as_json(),
        "started_at": now,
        "updated_at": now,
        "rounds_run_now": 0,
        "cells": [],
    }


def run_table(
    spec: TableSpec,
    base: RunConfig,
    partitions: Sequence[str],
    factory: Callable,
    data: Data,
    *,
    probe_rounds: Mapping[str, int],
    max_rounds: int,
    lrs: Sequence[float] | None = None,
    checkpoint_root: Path | None,
    on_round: Callable[[str, dict], None] | None = None,
    on_cell: Callable[[dict], None] | None = None,
    executor_info: Mapping | None = None,
) -> dict:
    """Runs every (partition, row) cell, IID first so the cheap cells fill the table early.

    `base` gives everything a table does not set (K, seed, limits, precision, ...); the spec
    sets model and target, each row E, B and C. on_cell sees the report after each finished
    cell, so a study stopped midway still leaves its partial table. factory() gives a fresh
    executor context per cell.

    Raises:
        FedAvgError: a partition the paper does not have, or one without probe rounds.
    """
    unknown = [p for p in partitions if p not in PARTITIONS or p not in probe_rounds]
    if unknown or not partitions:
        raise FedAvgError(
            f"partitions must be among {', '.join(PARTITIONS)}, each with probe rounds; "
            f"got {list(partitions)} and {dict(probe_rounds)}"
        )
    base = dataclasses.replace(base, model=spec.model, target=spec.target)
    report = new_report(spec, base, partitions, probe_rounds, max_rounds, lrs, executor_info)
    for partition in partitions:
        for row in spec.rows:
            with factory() as executor:
                cell = run_cell(
                    base,
                    row,
                    partition,
                    lrs=lrs or row.lrs(),
                    probe_rounds=probe_rounds[partition],
                    max_rounds=max_rounds,
                    executor=executor,
                    data=data,
                    checkpoint_root=checkpoint_root,
                    on_round=on_round,
                )
            report["cells"].append({**cell, "executor": dict(executor_info or {})})
            report["rounds_run_now"] += cell["rounds_run_now"]
            report["updated_at"] = _now()
            if on_cell is not None:
                on_cell(report)
    return report


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


PARTITION_NAMES = {"iid": "IID", "shards": "non-IID (shards)"}


def _paper_text(row: dict, partition: str) -> str:
    if not row["paper_known"]:
        return "not in the paper"
    value = row["paper"].get(partition)
    return "— (not reached)" if value is None else str(value)


def markdown_table(report: dict) -> list[str]:
    """Our rounds to target and chosen lr beside the paper's, one line per row, a column group per partition."""
    cells = {(c["row"], c["partition"]): c for c in report["cells"]}
    head = ["row", "E", "B", "C"]
    for p in report["partitions"]:
        name = PARTITION_NAMES.get(p, p)
        head += [f"{name}: ours", "lr", "paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        out = [row["label"], str(row["epochs"]), _b(row["batch_size"]), _c(row["frac"])]
        for p in report["partitions"]:
            cell = cells.get((row["key"], p))
            out += [cell["verdict"], _lr_text(cell)] if cell else ["not run yet", ""]
            out.append(_paper_text(row, p))
        lines.append("| " + " | ".join(out) + " |")
    return lines


def _lr_text(cell: dict) -> str:
    """The chosen rate, flagged when it lies at an end of the probed grid (the paper widened its grid then)."""
    probed = [p["lr"] for p in cell["probes"]]
    edge = len(probed) > 1 and cell["chosen_lr"] in (min(probed), max(probed))
    return f"{cell['chosen_lr']:.3g}" + (" (grid edge)" if edge else "")


def markdown_probes(report: dict) -> list[str]:
    """Every probe: accuracy (and loss) after its probe rounds, the chosen rate in bold."""
    lines = []
    for cell in report["cells"]:
        shown = []
        for p in cell["probes"]:
            text = f"lr {p['lr']:.3g}: {p['test_acc']:.4f} (loss {p['test_loss']:.3g})"
            if p["reached_at"] is not None:
                text += f", target at round {p['reached_at']}"
            shown.append(f"**{text}**" if p["lr"] == cell["chosen_lr"] else text)
        lines.append(
            f"- {cell['label']}, {PARTITION_NAMES.get(cell['partition'], cell['partition'])}, after "
            f"{_rounds(cell['probe_rounds'])}: " + "; ".join(shown)
        )
    return lines


def _grids_text(report: dict) -> str:
    if report["lrs_override"]:
        return ", ".join(f"{lr:.3g}" for lr in report["lrs_override"]) + " (given with --lrs)"
    return (
        ", ".join(f"{lr:.3g}" for lr in MINIBATCH_LRS)
        + " for minibatch rows and "
        + ", ".join(f"{lr:.3g}" for lr in FULL_BATCH_LRS)
        + " for B=inf rows"
    )


def markdown_notes(report: dict) -> list[str]:
    """How the learning rates were chosen and what differs from the paper, from the report alone."""
    config = report["config"]
    probes = ", ".join(f"{PARTITION_NAMES.get(p, p)} {n}" for p, n in report["probe_rounds"].items())
    lines = [
        "## How the learning rate was chosen",
        "",
        "The paper trained each setting over a grid of typically 11-13 learning rates (multiplicative "
        "resolution 10^(1/3) or 10^(1/6)), checked that the best rates lay inside the grid, and reported the "
        f"best rate's curve. Here each cell probes {_grids_text(report)}, for a few rounds each ({probes}); "
        "the rate with the best test accuracy after its probe is kept (a probe that already reached the target "
        "wins; ties go to the lower test loss) and its run continues to the target or "
        f"{_budget_text(report)}. The probe rounds are the first rounds of the continued run. A short "
        "probe favours rates that start fast, which is not always the rate that reaches the target first. "
        '"(grid edge)" marks a chosen rate at an end of its grid, where the paper would have widened the grid: '
        "try `--lrs` with rates beyond it.",
        "",
        "## What differs from the paper",
        "",
        "- Rounds to target: the paper takes the best-so-far accuracy curve and interpolates linearly where it "
        "crosses the target; here it is the first round whose test accuracy reaches the target (the same "
        "crossing, in whole rounds). Test accuracy is measured on the test set after every round, as in the paper.",
        f"- One run per cell (seed {config['seed']}), with the rate from the short probe above instead of the "
        "best of a full grid.",
        "- Non-IID: the paper sorts the training set by label and cuts 200 shards of 300, two per client; here "
        "the shards are cut inside each label (in proportion to its examples), so no shard straddles two labels "
        "and every client holds at most two digits.",
        f"- Budget: a cell that does not reach the target within {_budget_text(report)} says so, with its "
        'best accuracy. The paper marks five large-batch runs of Table 1 as not reached "in the allowed time" '
        "(shown as —).",
        f"- Arithmetic: {_arithmetic(report)} on CPU; the paper does not state its own.",
    ]
    lines += _quick_check_notes(config) + _model_notes(report)
    return lines


def _budget_text(report: dict) -> str:
    """One budget, or the range where the study's cells were run with several (each verdict names its own)."""
    budgets = sorted({c["max_rounds"] for c in report["cells"]} or {report["max_rounds"]})
    if len(budgets) == 1:
        return f"the budget of {budgets[0]} rounds"
    return f"its own budget ({budgets[0]} to {budgets[-1]} rounds; an unreached cell names the rounds it ran)"


def _executor_text(executor: dict) -> str:
    name = executor.get("name", "?")
    if name != "process":
        return name
    threads = executor["threads"]
    return f"process ({executor['workers']} workers x {threads} thread{'s' if threads != 1 else ''})"


def _arithmetic(report: dict) -> str:
    text = "bf16 autocast with fp32 master weights" if report["precision"] == "bf16" else report["precision"]
    return text + (", channels-last convolutions" if report["channels_last"] else "")


def _quick_check_notes(config: dict) -> list[str]:
    limited = [f"K={config['clients']} clients (paper: 100)"] if config["clients"] != 100 else []
    if config.get("train_limit") is not None:
        limited.append(f"the first {config['train_limit']} training images (paper: 60,000)")
    if config.get("test_limit") is not None:
        limited.append(f"the first {config['test_limit']} test images (paper: 10,000)")
    return [f"- **Quick check only**: {', '.join(limited)}; not comparable with the paper."] if limited else []


def _model_notes(report: dict) -> list[str]:
    if report["table"] == 2:
        return [
            "- Rows: the paper's Table 2 has nine CNN rows; the others run with `--rows` "
            f"({', '.join(table2_row_keys())})."
        ]
    if report["model"] == "2nn":
        return [
            "- Table 1 is run here for the 2NN (E=1, to 97%), the default: the CNN version (`--model cnn`, "
            "E=5, to 99%) trains 100 clients x 5 local epochs (300 steps each) every round at C=1.0, for "
            "hundreds of rounds, which takes days on 2 cores."
        ]
    return [
        "- Table 1 for the CNN (E=5, to 99%): at C=1.0 every round trains all 100 clients for 5 epochs; "
        "expect days on 2 cores for the whole table."
    ]


def markdown(report: dict) -> str:
    """tableN.md: the table, the probes, and the notes; written from the JSON report alone."""
    config = report["config"]
    done, total = len(report["cells"]), len(report["rows"]) * len(report["partitions"])
    used = {_executor_text(c.get("executor") or report.get("executor") or {}) for c in report["cells"]}
    where = " and ".join(sorted(used or {_executor_text(report.get("executor") or {})}))
    lines = [
        f"# {report['title']}",
        "",
        f"Ours beside the paper's: {CITATION}, Table {report['table']}. Rounds to "
        f"{report['target']:.0%} test accuracy; K={config['clients']}, seed {config['seed']}, executor {where}, "
        f"{_arithmetic(report)}. {done} of {total} cells done (updated {report['updated_at']}).",
        "",
    ]
    lines += markdown_table(report)
    if report["cells"]:
        lines += ["", "## Learning-rate probes (test accuracy after the probe; chosen in bold)", ""]
        lines += markdown_probes(report)
    lines += [""] + markdown_notes(report)
    return "\n".join(lines) + "\n"


def plot_table(report: dict, path: Path) -> Path:
    """Test accuracy per round of every finished cell's chosen rate, with the target line."""
    from .plot import plot_curves

    curves = {
        f"{c['label']}, {PARTITION_NAMES.get(c['partition'], c['partition'])}, lr {c['chosen_lr']:.3g}": c["accuracy"]
        for c in report["cells"]
    }
    return plot_curves(
        curves,
        path,
        title=report["title"].split(":")[0] + f": MNIST {report['model'].upper()}",
        target=report["target"],
    )


def _write_text(path: Path, text: str) -> None:
    """Write-then-rename, so a study stopped mid-write keeps the previous complete file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# RunConfig fields a table sets per cell; the rest say which study a cell belongs to.
CELL_FIELDS = ("epochs", "batch_size", "frac", "partition", "lr", "rounds")


def _study(report: dict) -> tuple:
    config = {k: v for k, v in report["config"].items() if k not in CELL_FIELDS}
    return report["table"], report["model"], report["target"], json.dumps(config, sort_keys=True)


def _row_rank(report: dict, row: dict) -> tuple:
    if report["table"] == 2:
        keys = table2_row_keys()
        return (keys.index(row["key"]) if row["key"] in keys else len(keys), row["key"])
    return row["batch_size"] is not None, row["batch_size"] or 0, row["frac"]


def merge_earlier(report: dict, earlier: dict | None) -> dict:
    """This invocation's cells plus the cells an earlier one of the same study wrote and this one did not run.

    A study is run in pieces (some rows or one partition at a time, each with its own round
    budget, even two at once into the same folder); the table on disk stays the whole study.
    An earlier report of another study (other K, seed, limits or arithmetic) is replaced.
    """
    if not earlier or earlier.get("table") != report["table"] or _study(earlier) != _study(report):
        return report
    ran = {(c["row"], c["partition"]) for c in report["cells"]}
    before = earlier.get("executor") or {}  # cells written before cells recorded their own executor
    kept = [{"executor": before, **c} for c in earlier.get("cells", []) if (c["row"], c["partition"]) not in ran]
    rows = {r["key"]: r for r in earlier["rows"]} | {r["key"]: r for r in report["rows"]}
    partitions = [p for p in PARTITIONS if p in earlier["partitions"] or p in report["partitions"]]
    return {
        **report,
        "rows": sorted(rows.values(), key=lambda r: _row_rank(report, r)),
        "partitions": partitions,
        "cells": kept + report["cells"],
    }


def read_report(path: Path) -> dict | None:
    """The JSON a table wrote, or None where there is none or it does not parse (it is rewritten whole)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_outputs(report: dict, out_dir: Path, plot: bool = True) -> list[Path]:
    """tableN.json, tableN.md and (with plot) tableN.png under out_dir, with the earlier cells of the same study.

    Returns the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"table{report['table']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    report = merge_earlier(report, read_report(paths[0]))
    _write_text(paths[0], json.dumps(report, indent=2) + "\n")
    _write_text(paths[1], markdown(report))
    if plot and report["cells"]:
        paths.append(plot_table(report, stem.with_suffix(".png")))
    return paths
