"""`deployer bench fedavg`: executors side by side, and rounds to 99% next to the paper's numbers.

Time per round is measured for every executor on the same configuration in the same
run (the first round, which includes worker start-up, is reported apart), and the
final weights of all executors are compared. Rounds-to-target runs under a round
budget: a run that does not reach the target says so and keeps its accuracy curve.
FedSGD, whose rounds to 99% outlast a 2-core session, is compared the way the paper
compares it: rounds to the same accuracy, at the best accuracy FedSGD reached in its budget.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from fedavg.run import Data, RunConfig, first_round_at, load_data, run, run_setting
from mlcore import compute

from .fedavg_tables.paper import PAPER_TABLE2_CNN, PARTITIONS

# McMahan et al. 2017, Table 2: CNN on MNIST, rounds to 99% test accuracy.
PAPER_ROUNDS_TO_99 = {
    kind: {"fedavg_e5_b10": PAPER_TABLE2_CNN[(5, 10)][kind], "fedsgd": PAPER_TABLE2_CNN[(1, None)][kind]}
    for kind in PARTITIONS
}


BASELINE = "serial fp32"
# the paper's Table 2 headline configuration, which every run of the bench shares
PAPER_CONFIG = {"model": "cnn", "clients": 100, "frac": 0.1, "epochs": 5, "batch_size": 10, "partition": "iid"}


def run_bench(
    base: RunConfig,
    make_factory: Callable[..., Callable],
    progress: Callable[[int, str], AbstractContextManager],
    save: Callable[[dict], None],
    *,
    executors: Sequence[str],
    timing_rounds: int,
    timing_epochs: int,
    target_executor: str | None,
    partitions: Sequence[str],
    checkpoint_root: Path | None,
    fedsgd_rounds: int = 0,
    fedsgd_lr: float | None = None,
) -> dict:
    """The executors timed side by side (unless timing_rounds is 0), then rounds to base.target on
    target_executor per partition (unless it is None), then FedSGD's (with fedsgd_rounds).

    make_factory(name, data, run_id="run") gives an executor factory; progress(total rounds,
    description) is a context giving advance(label, round record); save sees the report after
    each part and partition, so a stopped bench leaves what it measured.
    """
    data = load_data(base.train_limit, base.test_limit)
    report: dict = {"benchmark": "fedavg", "paper_rounds_to_99": PAPER_ROUNDS_TO_99, "arithmetic": compute.describe()}
    if timing_rounds > 0:
        timing = dataclasses.replace(base, epochs=timing_epochs, rounds=timing_rounds, target=None)
        entries = timing_entries(
            executors, timing, lambda name, run_id="run": make_factory(name, data, run_id=run_id), report
        )
        with progress(timing_rounds, "timing") as advance:
            report["executors"] = time_executors(entries, data, on_round=advance)
        save(report)
    if target_executor is None:
        return report
    factory = make_factory(target_executor, data)

    def part(key: str, config: RunConfig, rounds: int, description: str) -> None:
        with progress(rounds, description) as advance:
            report[key] = rounds_to_target(
                config,
                tuple(partitions),
                factory,
                data,
                rounds,
                on_round=advance,
                on_partition=lambda result: save({**report, key: result}),
                checkpoint_root=checkpoint_root,
            )

    part("rounds_to_target", base, base.rounds, "to target")
    if fedsgd_rounds:
        part("fedsgd", fedsgd_config(base, fedsgd_lr), fedsgd_rounds, "fedsgd")
        report["fedsgd_vs_fedavg"] = compare_to_fedsgd(
            report["rounds_to_target"]["partitions"], report["fedsgd"]["partitions"]
        )
    return report


def arithmetic_label(precision: str, channels_last: bool) -> str:
    return precision + (" channels-last" if channels_last else "")


def timing_label(executor: str, config: RunConfig) -> str:
    return f"{executor} {arithmetic_label(config.precision, config.channels_last)}"


def timing_entries(names, timing: RunConfig, make_factory: Callable[..., Callable], report: dict) -> dict:
    """(factory, config) per label: the serial fp32 BASELINE first, then each executor at the bench's arithmetic.

    make_factory(name, run_id=None) gives an executor factory; one that raises (no platform,
    no Ray) skips that executor, with the reason under report["skipped"], not the bench.
    """
    baseline = dataclasses.replace(timing, precision="fp32", channels_last=False)
    entries = {BASELINE: (make_factory("serial"), baseline)}
    for name in names:
        label = timing_label(name, timing)
        if label in entries:
            continue
        try:
            factory = make_factory(name, run_id=f"bench-{timing.run_id()}")
        except Exception as exc:
            report.setdefault("skipped", {})[label] = f"{type(exc).__name__}: {exc}"
            continue
        entries[label] = (factory, timing)
    return entries


def time_executors(
    entries: Mapping[str, tuple[Callable, RunConfig]], data: Data, on_round: Callable[[str, dict], None] | None = None
) -> dict:
    """Runs each (executor factory, config) under its label; per-round times, ratios and weight agreement.

    Ratios are to the BASELINE label when it ran (plain fp32 in one process, the figure the
    issue's Flower comparison is quoted against), measured in the same run on the same
    machine, since absolute times on a shared 2-core host drift by tens of percent.
    """
    out: dict = {"executors": {}}
    for label, (factory, config) in entries.items():
        out["executors"][label] = _time_one(
            factory, config, data, (lambda r, label=label: on_round(label, r)) if on_round else None
        )
    groups: dict[tuple, set] = {}
    for label, (_, config) in entries.items():
        digest = out["executors"][label].get("final_state_sha256")
        if digest:
            groups.setdefault((config.precision, config.channels_last), set()).add(digest)
    out["same_weights"] = bool(groups) and all(len(d) == 1 for d in groups.values())
    out["same_weights_by_arithmetic"] = {arithmetic_label(*key): len(d) == 1 for key, d in groups.items()}
    base = out["executors"].get(BASELINE, {}).get("mean_round_s")
    if base:
        out["baseline"] = BASELINE
        out["ratio_to_baseline"] = {
            label: v["mean_round_s"] / base for label, v in out["executors"].items() if v.get("mean_round_s")
        }
    return out


def _time_one(factory: Callable, config: RunConfig, data: Data, on_round) -> dict:
    started = time.perf_counter()
    try:
        with factory() as executor:
            report, _ = run(config, executor, data, stop_at_target=False, on_round=on_round)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "config": config.as_dict()}
    times = [r["round_s"] for r in report["rounds"]]
    steady = times[1:] or times
    return {
        "config": config.as_dict(),
        "first_round_s": times[0] if times else None,
        "mean_round_s": statistics.fmean(steady) if steady else None,
        "min_round_s": min(steady) if steady else None,
        "rounds": len(times),
        "round_s": times,
        "eval_s": statistics.fmean(r["eval_s"] for r in report["rounds"]) if times else None,
        "failed_clients": report["failed_clients"],
        "final_acc": report["final_acc"],
        "final_state_sha256": report["final_state_sha256"],
        "wall_s": time.perf_counter() - started,
    }


def rounds_to_target(
    base: RunConfig,
    partitions: tuple[str, ...],
    factory: Callable,
    data: Data,
    max_rounds: int,
    on_round: Callable[[str, dict], None] | None = None,
    checkpoint_root: Path | None = None,
    on_partition: Callable[[dict], None] | None = None,
) -> dict:
    """For each partition: rounds until `base.target`, or 'not reached within N rounds' and the curve.

    With checkpoint_root each partition continues its checkpoint (a non-IID run to 99% takes
    hours on 2 cores); on_partition sees the partial result after each partition.
    """
    out: dict = {}
    for kind in partitions:
        config = dataclasses.replace(base, partition=kind, rounds=max_rounds)
        report = run_setting(config, factory, data, checkpoint_root, kind, on_round)
        reached = report["rounds_to_target"]
        paper = PAPER_ROUNDS_TO_99.get(kind, {})
        out[kind] = {
            "rounds_to_target": reached,
            "verdict": (
                f"reached {base.target:g} in {reached} rounds"
                if reached is not None
                else f"not reached within {len(report['rounds'])} rounds (best {report['best_acc']:.4f})"
            ),
            "paper_fedavg_rounds": paper.get("fedavg_e5_b10"),
            "paper_fedsgd_rounds": paper.get("fedsgd"),
            "accuracy": [r["test_acc"] for r in report["rounds"]],
            "mean_round_s": report["mean_round_s"],
            "round_s": [r["round_s"] for r in report["rounds"]],
            "failed_clients": report["failed_clients"],
            "resumed_after_round": report.get("resumed_after_round", 0),
            "checkpoint_dir": report.get("checkpoint_dir"),
        }
        if on_partition is not None:
            on_partition({"config": dataclasses.replace(base, rounds=max_rounds).as_dict(), "partitions": out})
    return {"config": dataclasses.replace(base, rounds=max_rounds).as_dict(), "partitions": out}


def fedsgd_config(base: RunConfig, lr: float | None = None) -> RunConfig:
    """The paper's FedSGD baseline for `base`: E=1 and B=inf (one gradient over each client's whole set)."""
    return dataclasses.replace(base, epochs=1, batch_size=None, lr=base.lr if lr is None else lr)


def compare_to_fedsgd(fedavg: Mapping[str, dict], fedsgd: Mapping[str, dict]) -> dict:
    """Per partition: rounds each algorithm needed to reach one common accuracy, and the ratio.

    The level is the lower of the two best accuracies, so both curves reach it; the paper's
    speed-ups (Table 2) are the same ratio taken at 99%.
    """
    out: dict = {}
    for kind, sgd in fedsgd.items():
        avg = fedavg.get(kind)
        if not avg or not avg["accuracy"] or not sgd["accuracy"]:
            continue
        level = min(max(avg["accuracy"]), max(sgd["accuracy"]))
        sgd_rounds, avg_rounds = first_round_at(sgd["accuracy"], level), first_round_at(avg["accuracy"], level)
        paper = PAPER_ROUNDS_TO_99.get(kind, {})
        out[kind] = {
            "accuracy_level": level,
            "fedsgd_rounds": sgd_rounds,
            "fedavg_rounds": avg_rounds,
            "speedup": sgd_rounds / avg_rounds,
            "fedsgd_rounds_run": len(sgd["accuracy"]),
            "paper_speedup_at_99": (paper["fedsgd"] / paper["fedavg_e5_b10"]) if paper else None,
        }
    return out
