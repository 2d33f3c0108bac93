"""Running a table: each cell probes a few learning rates, then continues the best one to the target.

Everything here returns plain dicts that go to JSON as they are; rendering is markdown.py's.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fedavg.run import Data, RunConfig, first_round_at, label_rounds, run_resumable
from mlcore import compute as precisions

from ..errors import SpecError
from .paper import PARTITIONS, paper_as_json, rounds_text
from .spec import Row, TableSpec, cell_budget, paper_cell_known


def probe_record(lr: float, report: dict, probe_rounds: int, target: float) -> dict:
    """What one learning rate showed after its probe (taken at the probe's last round, however far it ran since)."""
    rounds = report["rounds"]
    if not rounds:
        raise SpecError(f"the probe of lr={lr:g} ran no round")
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


def rank_probes(probes: Sequence[dict]) -> list[dict]:
    """Probes best first: reached the target soonest, else best accuracy, then lower loss, then lower lr.

    A diverged probe has a NaN loss; it ranks as an infinite one.
    """
    if not probes:
        raise SpecError("no learning rate was probed")

    def rank(p: dict) -> tuple:
        loss = p["test_loss"] if math.isfinite(p["test_loss"]) else math.inf
        reached = p["reached_at"] if p["reached_at"] is not None else math.inf
        return reached, -p["test_acc"], loss, p["lr"]

    return sorted(probes, key=rank)


def choose_lr(probes: Sequence[dict]) -> dict:
    """The probe to continue first (`rank_probes`' best)."""
    return rank_probes(probes)[0]


COLLAPSE_ROUNDS = 20


def collapsed(rounds: Sequence[dict], window: int = COLLAPSE_ROUNDS) -> str | None:
    """Why a run has diverged, or None: a test loss that is not finite, or accuracy that fell to
    below half its best and stayed there for `window` rounds. The paper kept a cell's best rate
    from full runs, and a rate that diverges after a good start is not it, so the table gives up
    on it instead of spending the cell's budget on a run that will not come back.
    """
    if rounds and not math.isfinite(rounds[-1]["test_loss"]):
        return f"test loss {rounds[-1]['test_loss']} at round {rounds[-1]['round']}"
    if len(rounds) <= window:
        return None
    best = max(r["test_acc"] for r in rounds[:-window])
    recent = [r["test_acc"] for r in rounds[-window:]]
    if max(recent) < best / 2:
        last = rounds[-1]["round"]
        return f"accuracy fell from {best:.4f} to at most {max(recent):.4f} for the {window} rounds to round {last}"
    return None


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
    give_up: Callable[[list[dict]], str | None] = collapsed,
) -> dict:
    """Probes each lr for probe_rounds, then continues the best one to base.target or max_rounds;
    if `give_up` says that run diverged, the next best probe is continued instead.

    Without a checkpoint_root the winner starts again from round 0, so callers that want no
    lasting checkpoints should pass a temporary folder instead.
    """
    if probe_rounds < 1 or max_rounds < probe_rounds:
        raise SpecError(f"need 1 <= probe rounds <= max rounds, got {probe_rounds} and {max_rounds}")

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
    diverged = []
    for best in rank_probes(probes):
        final = run_resumable(
            config(best["lr"], max_rounds),
            executor,
            data,
            checkpoint_root,
            on_round=label_rounds(on_round, f"{row.key} {partition} lr={best['lr']:.3g}"),
            stop_when=give_up,
        )
        new_rounds += _new_rounds(final)
        if "stopped" not in final:
            break
        diverged.append({"lr": best["lr"], "rounds_done": len(final["rounds"]), "why": final["stopped"]})
    cell = _cell(row, partition, probes, best, final, probe_rounds, max_rounds, new_rounds)
    cell["diverged"] = diverged
    return cell


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
        else f"not reached in {rounds_text(len(rounds))} (best {final['best_acc']:.4f})",
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
    max_rounds: int | None,
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
        "pixels": base.pixels,
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
    max_rounds: int | None,
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
    executor context per cell. Without max_rounds each cell runs to its own budget (spec.cell_budget).

    Raises:
        SpecError: a partition the paper does not have, or one without probe rounds.
    """
    unknown = [p for p in partitions if p not in PARTITIONS or p not in probe_rounds]
    if unknown or not partitions:
        raise SpecError(
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
                    max_rounds=max(probe_rounds[partition], max_rounds or cell_budget(spec, row, partition)),
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
