"""`deployer bench train`: the training study (studies.training_speed), its options; each row a `deployer train` job."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import click

from .output import show, write_report
from .params import MAX_WORKERS, OutputFile, choices, floats, integer, ints
from .train import MODES, job_options, run_job

FIRST_MODEL = "lenet5"


def _names(kind: str):
    """The names a job takes for `kind`, from mlcore.training.job, so the CLI cannot offer one it refuses."""
    from mlcore.model import MODELS
    from mlcore.training.job import TOPOLOGIES

    return {"topology": TOPOLOGIES, "model": tuple(MODELS)}[kind]


@click.command("train")
@click.option(
    "--topologies",
    type=choices(_names("topology"), "allreduce,ps"),
    default=",".join(_names("topology")),
    show_default=True,
    help="How workers reduce: all-reduce through S3, scatter-reduce (a shard each), or a parameter server.",
)
@click.option("--modes", type=choices(MODES, "sync,local"), default="sync,local", show_default=True)
@click.option("--workers", "workers_list", type=ints(1, MAX_WORKERS, example="2,4"), default="2,4", show_default=True)
@click.option(
    "--models",
    type=choices(_names("model"), "lenet5,lenet5x4"),
    default=",".join(_names("model")),
    show_default=True,
    help="Model sizes: lenet5 (61,706 parameters), lenet5x4 (every layer 4x as wide: 972,554).",
)
@job_options
@click.option(
    "--wide-epochs",
    type=integer(1, 1000),
    default=2,
    show_default=True,
    help="--epochs for the models of --models other than lenet5 (a lenet5x4 step computes about 5x longer).",
)
@click.option(
    "--wide-train-limit",
    type=integer(0, 60_000),
    default=0,
    help="--train-limit for the models other than lenet5 [default: --train-limit].",
)
@click.option(
    "--targets", type=floats(0.0, 1.0, low_open=True, example="0.98,0.99"), default="0.98,0.99", show_default=True
)
@click.option(
    "--plot",
    "plot_path",
    type=OutputFile(),
    default=None,
    help="PNG of accuracy against wall time per topology; the cost figure goes beside it as <name>-cost.png "
    "[default: beside --json]",
)
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here; it is rewritten after every row.")
@click.pass_obj
def bench_train_command(
    obj, topologies, modes, workers_list, models, wide_epochs, wide_train_limit, targets, plot_path, json_path, **job
) -> None:
    """Topology x mode x workers x model size: time to 98%/99%, traffic and GB-s, beside one process per model."""
    from studies import training_speed
    from studies.bench_views import plot_train, train_view

    counts = list(dict.fromkeys(workers_list))
    if job["batch_size"] < max(counts):
        raise click.BadParameter(
            f"{job['batch_size']} is less than the largest --workers ({max(counts)}): the batch is split over them",
            param_hint="'--batch-size'",
        )
    chosen = list(dict.fromkeys(models))
    recipes = {
        model: _bench_recipe(
            **(
                job
                if model == FIRST_MODEL
                else {**job, "epochs": wide_epochs, "train_limit": wide_train_limit or job["train_limit"]}
            )
        )
        for model in chosen
    }
    rows = training_speed.plan(chosen, dict.fromkeys(topologies), dict.fromkeys(modes), counts)
    if plot_path is None and json_path:
        plot_path = str(Path(json_path).with_suffix(".png"))
    result = training_speed.run(
        _row_runner(obj, list(targets)),
        _bench_recipe(**job),
        recipes,
        rows,
        list(targets),
        memory_mb=_worker_memory_mb(),
        save=lambda report: write_report(json_path, report, quiet=True),
        log=lambda line: click.echo(line, err=True),
    )
    if plot_path:
        result["plots"] = [str(p) for p in plot_train(result, Path(plot_path))]
    show(train_view(result))
    write_report(json_path, result)


def _bench_recipe(epochs, batch_size, lr, precision, compress, train_limit, eval_every, seed) -> dict:
    """The settings a model's rows share; by default a checkpoint every half epoch, where times to accuracy are read."""
    if not eval_every:
        from mlcore.mnist import TRAIN_SIZE

        eval_every = max(1, (train_limit or TRAIN_SIZE) // batch_size // 2)
    return dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        precision=precision,
        compress=compress,
        train_limit=train_limit,
        eval_every=eval_every,
        seed=seed,
    )


def _worker_memory_mb() -> int:
    """The workers' memory limit in train.yaml: what the baseline is billed at, as one such action."""
    from ..manifest import check
    from ..training_driver import MANIFEST

    limits = [a.limits.get("memory") for p in check(MANIFEST) for a in p.actions if a.name == "worker"]
    return next((m for m in limits if m), 256)


def _process_sampler(obj):
    """A sampler of the local platform's processes (studies.process_cpu), or None for a remote target."""
    from localwhisk import supervisor
    from studies.process_cpu import ProcessCPU

    from ..folders import platform_state_dir

    if not obj.target.local:
        return None
    info = supervisor.read_info(platform_state_dir())
    return ProcessCPU(info.pid) if info is not None else None


def _row_runner(obj, goal: list[float]):
    """run_row(spec, recipe, warm_up) for training_speed.run: the first row deploys the actions, the rest reuse them.

    A row's failure, whatever failed, becomes the BenchError the study records; its bill is
    read from the platform's records of the package's activations that started in the row.
    """
    from mlcore.errors import MLCoreError
    from studies.errors import BenchError
    from studies.training_speed import billed

    from ..errors import DeployerError
    from ..training_driver import PACKAGE

    deployed: list[bool] = []

    def run_row(spec, recipe: dict, warm_up: bool = False) -> dict:
        settings = dict(recipe, **spec.settings(), eval_live=False)
        if warm_up:
            settings.update(epochs=1, train_limit=spec.workers * settings["batch_size"] * 4, eval_every=0)
        since_ms = int(time.time() * 1000)
        sampler = None if warm_up else _process_sampler(obj)
        try:
            with sampler or contextlib.nullcontext():
                summary = run_job(obj, settings, quiet=True, targets=goal, deploy=not deployed)
        except (click.ClickException, MLCoreError, DeployerError) as exc:
            message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
            raise BenchError(message or type(exc).__name__) from exc
        deployed.append(True)
        if warm_up:
            return summary
        trained = [e["seconds"] for e in summary.get("evaluations", []) if e.get("seconds") is not None]
        if sampler is not None and summary.get("started_at") and trained:
            # from the job's start to its last checkpoint: the training, without the evaluations after it
            start = summary["started_at"]
            summary["processes"] = sampler.report(summary["pids"], start, start + max(trained))
        try:
            with obj.target.client() as client:
                summary["billed"] = billed(client, PACKAGE, since_ms)
        except MLCoreError as exc:
            summary["billed_error"] = str(exc)
        return summary

    return run_row
