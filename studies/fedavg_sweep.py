"""The client-count study: the same FedAvg settings over several K and partitions, one curve each."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from fedavg.run import Data, RunConfig, run_setting


def sweep(
    base: RunConfig,
    clients: Sequence[int],
    partitions: Sequence[str],
    make_executor: Callable,
    data: Data,
    on_round: Callable[[str, dict], None] | None = None,
    checkpoint_root: Path | None = None,
    on_setting: Callable[[dict], None] | None = None,
) -> dict:
    """Runs every (partition, K) pair with `base`'s other settings; returns a table and the curves.

    make_executor() gives a fresh executor context per setting. With checkpoint_root each
    setting continues its own checkpoint, so an interrupted sweep picks up where it stopped;
    on_setting sees the partial result after each setting.
    """
    results = []
    for kind in partitions:
        for k in clients:
            config = dataclasses.replace(base, clients=k, partition=kind)
            label = f"{kind} K={k}"
            report = run_setting(config, make_executor, data, checkpoint_root, label, on_round, stop_at_target=False)
            results.append(
                {
                    "label": label,
                    "partition": kind,
                    "clients": k,
                    "clients_per_round": max(int(round(base.frac * k)), 1),
                    "rounds_to_target": report["rounds_to_target"],
                    "final_acc": report["final_acc"],
                    "best_acc": report["best_acc"],
                    "mean_round_s": report["mean_round_s"],
                    "failed_clients": report["failed_clients"],
                    "accuracy": [r["test_acc"] for r in report["rounds"]],
                    "test_loss": [r["test_loss"] for r in report["rounds"]],
                    "resumed_after_round": report.get("resumed_after_round", 0),
                }
            )
            if on_setting is not None:
                on_setting({"config": base.as_dict(), "settings": results})
    return {"config": base.as_dict(), "settings": results}
