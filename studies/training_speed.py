"""`deployer bench train`: serverless rows beside the single-process baseline, in one run on one machine.

The baseline is mlcore.training.baseline: one process with every core, the same recipe,
data order and precision. Each row is a real job on the target platform; its times are
those of the checkpoints that first reached each target, counted from the job's start, so
invocation and data loading are in them and evaluation is not (as for the baseline). Each
worker count is warmed up by a short job first, so containers are warm as for any job but
a cluster's first.
"""

from __future__ import annotations

import os
import platform as host_platform
import time
from collections.abc import Callable

from mlcore.compute import native_bf16 as cpu_has_bf16
from mlcore.training.baseline import run_baseline
from mlcore.training.job import JobConfig

NOTE = (
    "One machine: the workers, the coordinator, the platform and the S3 endpoint share its cores, and the "
    "baseline gets all of them. A ratio below 1 means the serverless job reached the target sooner."
)


def run(
    run_row: Callable[..., dict],
    recipe: dict,
    counts: list[int],
    modes: list[str],
    targets: list[float],
    save: Callable[[dict], None] = lambda _: None,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """The baseline first, then each (mode, workers) row; `save` gets the report after every row."""
    config = JobConfig(job="baseline", workers=1, data="local", **recipe)
    log(f"baseline: one process, {os.cpu_count()} threads")
    baseline = run_baseline(config, threads=os.cpu_count(), targets=targets)
    report = {
        "benchmark": "train",
        "baseline": baseline,
        "rows": [],
        "targets": targets,
        "recipe": recipe,
        "machine": {"cores": os.cpu_count(), "cpu_bf16": cpu_has_bf16(), "python": host_platform.python_version()},
        "started": time.time(),
        "note": NOTE,
    }
    warmed: set[int] = set()
    for mode in modes:
        for workers in counts:
            if workers not in warmed:
                # a short job first, so the measured one finds warm containers, as a second job on a cluster does
                log(f"warming {workers} worker containers and the coordinator's")
                run_row(mode, workers, warm_up=True)
                warmed.add(workers)
            log(f"{mode}, {workers} workers")
            summary = run_row(mode, workers)
            row = {
                "mode": mode,
                "workers": workers,
                "job": summary["job"],
                "final_accuracy": summary["final_accuracy"],
                "elapsed_s": summary["elapsed_s"],
                "time_to_accuracy_s": summary["time_to_accuracy_s"],
                "ratio_to_baseline": {
                    t: _ratio(summary["time_to_accuracy_s"].get(t), baseline["time_to_accuracy_s"].get(t))
                    for t in map(str, targets)
                },
                "communication_fraction": summary["workers"]["communication_fraction"],
                "per_round": summary["workers"]["per_round"],
                "totals": summary["workers"]["totals"],
                "local_steps": summary["local_steps"],
                "gb_s": summary["gb_s"],
                "replacements": summary["replacements"],
                "evaluations": summary["evaluations"],
            }
            report["rows"].append(row)
            save(report)
    report["complete"] = True
    return report


def _ratio(value, base) -> float | None:
    return round(value / base, 3) if value is not None and base else None
