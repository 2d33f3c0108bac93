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
from pathlib import Path
from typing import Callable, Mapping

from .run import Data, RunConfig, first_round_at, run, run_resumable

# McMahan et al. 2017, Table 2: CNN on MNIST, rounds to 99% test accuracy.
PAPER_ROUNDS_TO_99 = {
    "iid": {"fedavg_e5_b10": 20, "fedsgd": 626},
    "shards": {"fedavg_e5_b10": 229, "fedsgd": 483},
}


def time_executors(factories: Mapping[str, Callable], config: RunConfig, data: Data,
                   on_round: Callable[[str, dict], None] | None = None) -> dict:
    """Runs `config` on each executor; per-round times and whether their weights agree."""
    out: dict = {"config": config.as_dict(), "executors": {}}
    for name, factory in factories.items():
        started = time.perf_counter()
        try:
            with factory() as executor:
                report, _ = run(config, executor, data, stop_at_target=False,
                                on_round=(lambda r, name=name: on_round(name, r)) if on_round else None)
        except Exception as exc:  # noqa: BLE001 - one executor failing must not hide the others' numbers
            out["executors"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        times = [r["round_s"] for r in report["rounds"]]
        steady = times[1:] or times
        out["executors"][name] = {
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
    digests = {v.get("final_state_sha256") for v in out["executors"].values() if "error" not in v}
    out["same_weights"] = len(digests) == 1
    serial = out["executors"].get("serial", {}).get("mean_round_s")
    if serial:
        out["speedup_vs_serial"] = {name: serial / v["mean_round_s"] for name, v in out["executors"].items()
                                    if v.get("mean_round_s")}
    return out


def rounds_to_target(base: RunConfig, partitions: tuple[str, ...], factory: Callable, data: Data,
                     max_rounds: int, on_round: Callable[[str, dict], None] | None = None,
                     checkpoint_root: Path | None = None, on_partition: Callable[[dict], None] | None = None) -> dict:
    """For each partition: rounds until `base.target`, or 'not reached within N rounds' and the curve.

    With checkpoint_root each partition continues its checkpoint (a non-IID run to 99% takes
    hours on 2 cores); on_partition sees the partial result after each partition.
    """
    out: dict = {}
    for kind in partitions:
        config = dataclasses.replace(base, partition=kind, rounds=max_rounds)
        with factory() as executor:
            report = run_resumable(config, executor, data, checkpoint_root,
                                   on_round=(lambda r, kind=kind: on_round(kind, r)) if on_round else None)
        reached = report["rounds_to_target"]
        paper = PAPER_ROUNDS_TO_99.get(kind, {})
        out[kind] = {
            "rounds_to_target": reached,
            "verdict": (f"reached {base.target:g} in {reached} rounds" if reached is not None
                        else f"not reached within {len(report['rounds'])} rounds "
                             f"(best {report['best_acc']:.4f})"),
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
