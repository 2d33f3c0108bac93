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
from pathlib import Path

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


def rows(report: dict) -> tuple[list[str], list[tuple]]:
    targets = [str(t) for t in report["targets"]]
    base = report["baseline"]
    headers = [
        "run",
        "workers",
        *[f"s to {float(t):.0%} (× baseline)" for t in targets],
        "communicating",
        "per round: compute / get / put / wait ms",
        "K",
        "GB-s",
        "final acc",
    ]

    def cell(value, ratio) -> str:
        return "not reached" if value is None else f"{value:.1f}" + (f" ({ratio:.2f}×)" if ratio else "")

    out = [
        (
            f"baseline ({base['threads']} threads, {base['precision']})",
            1,
            *[cell(base["time_to_accuracy_s"][t], None) for t in targets],
            "-",
            "-",
            "-",
            "-",
            f"{base['final_accuracy']:.4f}",
        )
    ]
    for r in report["rows"]:
        per = r["per_round"]
        split = " / ".join(f"{(per[k] or 0) * 1000:.1f}" for k in ("compute_s", "get_s", "put_s", "wait_s"))
        out.append(
            (
                r["mode"],
                r["workers"],
                *[cell(r["time_to_accuracy_s"][t], r["ratio_to_baseline"][t]) for t in targets],
                f"{r['communication_fraction']:.0%}" if r["communication_fraction"] is not None else "-",
                split,
                ",".join(map(str, r["local_steps"])) or "-",
                f"{r['gb_s']['total']:.1f}",
                f"{r['final_accuracy']:.4f}" if r["final_accuracy"] is not None else "-",
            )
        )
    return headers, out


def plot(report: dict, path: Path) -> Path:
    """Test accuracy against wall time: the baseline and one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    base = report["baseline"]["history"]
    ax.plot(
        [h["seconds"] for h in base], [h["accuracy"] for h in base], "k-o", label="baseline (1 process)", linewidth=2
    )
    for r in report["rows"]:
        points = [(e["seconds"], e["accuracy"]) for e in r["evaluations"] if e.get("seconds") is not None]
        if points:
            ax.plot(*zip(*points), "-o", label=f"{r['mode']}, {r['workers']} workers", linewidth=1.3)
    for t in report["targets"]:
        ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(max(0.9, min([h["accuracy"] for h in base] + [0.97]) - 0.01), 1.0)
    ax.set_xlabel("wall time since the start (s), evaluation excluded")
    ax.set_ylabel("test accuracy")
    ax.set_title("bench train: accuracy against wall time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
