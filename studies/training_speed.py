"""`deployer bench train`: topology x mode x workers x model size, each row beside one process doing the same.

The question is LambdaML's (Jiang et al., SIGMOD 2021): which way of reducing through storage
(all-reduce, scatter-reduce, a parameter server) trains fastest and cheapest, at which model
size and worker count. Each model's baseline is mlcore.training.baseline: one process with
every core, the same recipe, data order and precision. Each row is a real job on the target
platform; its times are those of the checkpoints that first reached each target, counted
from the job's start, so invocation and data loading are in them and evaluation is not (as
for the baseline). Each (topology, workers) is warmed up by a short job first, so containers
are warm as for any job but a cluster's first.

Cost is what OpenWhisk bills: each activation's memory limit times its duration, read from
the platform's records of every action of the training package that started during the row
(workers, parameter server, coordinator, their successors). The baseline is billed as one
action with the workers' memory limit for its training time.

A row that fails is kept with its error, and the report is saved after every row, so a
long sweep loses nothing to one topology that cannot run.
"""

from __future__ import annotations

import os
import platform as host_platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from mlcore.compute import native_bf16 as cpu_has_bf16
from mlcore.mnist import TRAIN_SIZE
from mlcore.training import data
from mlcore.training.baseline import compute_floor, run_baseline
from mlcore.training.coordinator import gb_s_of
from mlcore.training.job import JobConfig

from .errors import BenchError

NOTE = (
    "One machine: the workers, the parameter server, the coordinator, the platform and the S3 endpoint share "
    "its cores, and the baseline gets all of them. A ratio below 1 means the serverless job reached the target "
    "sooner (time) or was billed less (GB-s)."
)
# the package's actions, by the role they play in a job
ROLES = {"worker": "workers", "ps": "ps", "train": "coordinator"}


@dataclass(frozen=True)
class RowSpec:
    """One row of the study: the settings that vary, on top of its model's recipe."""

    model: str
    topology: str
    mode: str
    workers: int

    def settings(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.model}, {self.topology}, {self.mode}, {self.workers} workers"


def plan(
    models: Iterable[str], topologies: Iterable[str], modes: Iterable[str], counts: Iterable[int]
) -> list[RowSpec]:
    """Every combination, model first: a model's rows run together, right after its baseline."""
    return [
        RowSpec(model, topology, mode, workers)
        for model in models
        for topology in topologies
        for mode in modes
        for workers in counts
    ]


def billed(client, package: str, since_ms: int) -> dict:
    """GB-s per role of the package's activations that started at or after `since_ms`, from their records.

    Only ended activations have records (as in OpenWhisk), so call it once the job is done.

    Raises:
        OpenWhiskError: the platform did not list them.
    """
    out: dict = {"activations": 0}
    for action, role in ROLES.items():
        records, skip = [], 0
        while True:
            page = client.list_activations(f"{package}/{action}", limit=200, skip=skip, since=since_ms)
            records += page
            skip += len(page)
            if len(page) < 200:
                break
        out[role] = round(sum(gb_s_of(r) for r in records), 3)
        out["activations"] += len(records)
    out["total"] = round(sum(out[role] for role in ROLES.values()), 3)
    return out


def run(
    run_row: Callable[..., dict],
    recipe: dict,
    recipes: dict[str, dict],
    rows: list[RowSpec],
    targets: list[float],
    memory_mb: int,
    save: Callable[[dict], None] = lambda _: None,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Each model's baseline, then its rows; `save` gets the report after every one.

    `run_row(spec, recipe, warm_up=False)` runs one job and returns its summary
    (deployer.training_driver.report), with `billed` (see `billed`) where the platform
    listed its activations; it raises BenchError for a row that failed, which is recorded.
    `recipe` holds the settings every row shares (epochs, batch, train_limit, ...), `recipes`
    each model's, where a larger model trains with fewer epochs or images: the report says which differ.

    Raises:
        BenchError: every row failed (the report, saved, holds each error).
    """
    report = {
        "benchmark": "train",
        "models": {},
        "rows": [],
        "targets": targets,
        "recipe": recipe,
        "machine": {"cores": os.cpu_count(), "cpu_bf16": cpu_has_bf16(), "python": host_platform.python_version()},
        "started": time.time(),
        "note": NOTE,
    }
    warmed: set[tuple[str, int]] = set()
    for spec in rows:
        if spec.model not in report["models"]:
            model = _baseline(spec.model, recipes[spec.model], targets, memory_mb, log)
            counts = sorted({r.workers for r in rows if r.model == spec.model})
            model["compute_floor"] = _compute_floors(spec.model, recipes[spec.model], counts, model["baseline"], log)
            differs = {
                k: [report["recipe"].get(k), v] for k, v in model["recipe"].items() if report["recipe"].get(k) != v
            }
            report["models"][spec.model] = {**model, **({"recipe_differs": differs} if differs else {})}
            save(report)
        report["rows"].append(_row(run_row, spec, recipes[spec.model], report, warmed, log))
        save(report)
    report["complete"] = True
    failed = [r for r in report["rows"] if "error" in r]
    if failed and len(failed) == len(report["rows"]):
        raise BenchError(f"every row of bench train failed; the first ({_name(failed[0])}): {failed[0]['error']}")
    return report


def _baseline(model: str, recipe: dict, targets: list[float], memory_mb: int, log) -> dict:
    config = JobConfig(job="baseline", workers=1, data="local", model=model, **recipe)
    log(f"{model} baseline: one process, {os.cpu_count()} threads")
    baseline = run_baseline(config, threads=os.cpu_count(), targets=targets)
    gb_s = round(memory_mb / 1024 * baseline["train_seconds"], 3)
    return {
        "parameters": baseline["parameters"],
        "recipe": recipe,
        "baseline": {**baseline, "memory_mb": memory_mb, "gb_s": gb_s},
    }


def _compute_floors(model: str, recipe: dict, counts: list[int], baseline: dict, log) -> dict:
    """Per worker count, a sync step's compute alone with every worker computing at once (baseline.compute_floor).

    Its ratio to the baseline's step bounds a sync row's ratio from below on this machine:
    what a row takes beyond it is the exchange and its contention for the cores.
    """
    config = JobConfig(job="floor", data="local", model=model, **recipe)
    total = config.total_batches(data.train_size(config, TRAIN_SIZE))
    step = baseline["train_seconds"] / total
    floors = {}
    for workers in counts:
        log(f"{model} compute floor: {workers} workers computing at once, no exchange")
        floor = compute_floor(replace(config, workers=workers), steps=min(200, total))
        floors[str(workers)] = {
            **floor,
            "baseline_step_s": round(step, 6),
            "ratio_to_baseline": _ratio(floor["step_s"], step),
        }
    return floors


def _row(run_row, spec: RowSpec, recipe: dict, report: dict, warmed: set, log) -> dict:
    """The row's measures, or its settings and the error that stopped it."""
    try:
        if (spec.topology, spec.workers) not in warmed:
            # a short job first, so the measured one finds warm containers, as a second job on a cluster does
            log(f"warming {spec.topology} with {spec.workers} workers")
            run_row(spec, recipe, warm_up=True)
            warmed.add((spec.topology, spec.workers))
        log(str(spec))
        summary = run_row(spec, recipe)
    except BenchError as exc:
        log(f"{spec}: failed: {exc}")
        return {**spec.settings(), "error": str(exc)}
    return measures(spec, summary, recipe, report["models"][spec.model]["baseline"], report["targets"])


def measures(spec: RowSpec, summary: dict, recipe: dict, baseline: dict, targets: list[float]) -> dict:
    """A row of the report from a job's summary: times and their ratios, traffic per step, cost."""
    workers = summary["workers"]
    totals = workers["totals"]
    config = JobConfig(job="row", **{**recipe, **spec.settings()})
    steps = spec.workers * config.total_batches(data.train_size(config, TRAIN_SIZE))  # worker-steps in the job
    gb_s = _gb_s(summary)
    return {
        **spec.settings(),
        "job": summary["job"],
        "final_accuracy": summary["final_accuracy"],
        "elapsed_s": summary["elapsed_s"],
        "time_to_accuracy_s": summary["time_to_accuracy_s"],
        "ratio_to_baseline": {
            t: _ratio(summary["time_to_accuracy_s"].get(t), baseline["time_to_accuracy_s"].get(t))
            for t in map(str, targets)
        },
        "communication_fraction": workers["communication_fraction"],
        "per_round": workers["per_round"],
        "per_step": {
            "bytes": round(totals["bytes"] / steps, 1),
            "requests": round(totals.get("requests", 0) / steps, 3),
        },
        "totals": totals,
        "local_steps": summary["local_steps"],
        "gb_s": gb_s,
        "gb_s_ratio_to_baseline": _ratio(gb_s["total"], baseline["gb_s"]),
        "replacements": summary["replacements"],
        "evaluations": summary["evaluations"],
        "round_ms": round_breakdown(summary),
        **({"processes": summary["processes"]} if summary.get("processes") else {}),
    }


def round_breakdown(summary: dict) -> dict:
    """Where a round's milliseconds go (a round is a step in sync mode), for the issue's question of what bounds it.

    `worker`: one worker's mean round: its wall, the compute's wall and CPU (their gap is the
    time the compute waited for a core), the main thread's other CPU (encoding, decoding,
    averaging, the optimizer step), the exchange threads' CPU (the requests' client side), and
    the time blocked on gets, puts and peers. `cpu`: each process's CPU per round of the job,
    from the platform's processes when they were sampled (the S3 endpoint's among them).
    """
    workers = summary["workers"]
    totals, per = workers["totals"], workers["per_round"]

    def ms(value) -> float | None:
        return round(value * 1000, 3) if value is not None else None

    cpu, main, compute_cpu = (per.get(k) for k in ("cpu_s", "main_cpu_s", "compute_cpu_s"))
    worker = {
        "wall": ms(totals["active_s"] / totals["rounds"]) if totals.get("rounds") else None,
        "compute": ms(per["compute_s"]),
        "compute_cpu": ms(compute_cpu),
        "main_other_cpu": ms(main - compute_cpu) if main is not None and compute_cpu is not None else None,
        "exchange_cpu": ms(cpu - main) if cpu is not None and main is not None else None,
        "get": ms(per["get_s"]),
        "put": ms(per["put_s"]),
        "wait": ms(per["wait_s"]),
    }
    rounds = summary["per_step"]["rounds"]
    roles = (summary.get("processes") or {}).get("roles", {})
    return {
        "worker": worker,
        "cpu": {role: round(r["cpu_s"] / rounds * 1000, 3) for role, r in roles.items()} if rounds else {},
    }


def _gb_s(summary: dict) -> dict:
    """The platform's records where it listed them, else what the job's own report billed."""
    if summary.get("billed"):
        return {**summary["billed"], "source": "activation records"}
    own = summary["gb_s"]
    return {
        "workers": own["workers"],
        "ps": own.get("ps", 0.0),
        "coordinator": own["coordinator"],
        "total": own["total"],
        "source": "job report",
    }


def winners(report: dict) -> list[dict]:
    """Per model, worker count and mode: each topology's time to the highest target, and the fastest one.

    A topology that reached no target, or failed, cannot win; where none reached it, there is no winner.
    """
    target = str(report["targets"][-1]) if report["targets"] else None
    groups: dict[tuple, dict] = {}
    for r in report["rows"]:
        cell = {"error": r["error"]} if "error" in r else {"seconds": r["time_to_accuracy_s"].get(target)}
        if "error" not in r:
            cell.update(ratio=r["ratio_to_baseline"].get(target), gb_s=r["gb_s"]["total"])
        groups.setdefault((r["model"], r["workers"], r["mode"]), {})[r["topology"]] = cell
    models = list(dict.fromkeys(r["model"] for r in report["rows"]))
    modes = list(dict.fromkeys(r["mode"] for r in report["rows"]))
    out = []
    for (model, workers, mode), cells in sorted(
        groups.items(), key=lambda g: (models.index(g[0][0]), g[0][1], modes.index(g[0][2]))
    ):
        reached = {t: c["seconds"] for t, c in cells.items() if c.get("seconds") is not None}
        best = min(reached, key=reached.get) if reached else None
        out.append(
            {"model": model, "workers": workers, "mode": mode, "target": target, "by_topology": cells, "winner": best}
        )
    return out


def _name(row: dict) -> str:
    return str(RowSpec(row["model"], row["topology"], row["mode"], row["workers"]))


def _ratio(value, base) -> float | None:
    return round(value / base, 3) if value is not None and base else None
