"""`deployer train`: serverless distributed training with progress and reports (`bench train` is in train_bench)."""

from __future__ import annotations

import threading

import click

from .output import table, write_report
from .params import JOB_NAME, MAX_WORKERS, Number, OutputFile, integer, seconds, stacked
from .progress import bar

MODES = ("sync", "local")
TOPOLOGIES = ("allreduce", "scatter", "ps")
TOPOLOGY_HELP = (
    "How workers combine updates through S3. allreduce: each reads every peer's update (one round trip "
    "a step; the only one with --quorum). scatter: each reduces 1/N of the update for all (two round trips, "
    "2(N-1)/N of an update read instead of N-1: for many workers or a big model). ps: a parameter-server "
    "action owns the model and optimizer; workers put updates and read the model (one extra action)."
)


def _open(obj, data: str, deploy: bool = True):
    """`deploy=False` keeps the deployed actions: a redeploy is a new revision, whose first calls start cold."""
    from mlcore.storage import Storage

    from .. import training_driver as training

    target = obj.target
    client = target.client()
    storage = Storage(training.storage_config_for(target))
    if deploy:
        training.prepare(target, client, storage, data)
    return target, client, storage


def _watch(
    client,
    storage,
    job: str,
    activation: str | None,
    total_steps: int,
    label: str,
    driver_thread: threading.Thread | None = None,
    errors: list | None = None,
) -> None:
    """Progress bar over steps; prints each evaluation. Raises ClickException when the job stops."""
    from mlcore.training.job import TrainingError

    from .. import training_driver as training

    with bar("info") as progress:
        task = progress.add_task(label, total=total_steps, info="")
        try:
            for event in training.follow(client, storage, job, poll_s=1.0, first_activation=activation):
                kind = event.get("event")
                if kind == "eval":
                    progress.update(task, completed=event["batch"], info=f"accuracy {event['accuracy']:.4f}")
                    progress.console.print(f"epoch {event['epoch']:.2f}: test accuracy {event['accuracy']:.4f}")
                elif kind == "worker_failed":
                    progress.console.print(f"worker {event['worker']}: {event['error']}; replaced")
                elif kind == "resumed":
                    progress.console.print(f"the coordinator died ({event['why']}); resumed as {event['activation']}")
                elif kind == "checkpoint_refused":
                    progress.console.print(f"refused: {event['error']}")
                elif kind in ("failed", "superseded"):
                    progress.console.print(str(event))
                if errors:
                    raise click.ClickException(str(errors[0]))
                if driver_thread is not None and not driver_thread.is_alive() and errors:
                    raise click.ClickException(str(errors[0]))
        except TrainingError as exc:
            raise click.ClickException(str(exc)) from exc


def _show(summary: dict) -> None:
    rows = [
        (e["round"], f"{e['epoch']:.2f}", f"{e['accuracy']:.4f}", f"{e['loss']:.4f}") for e in summary["evaluations"]
    ]
    table(["round", "epoch", "test accuracy", "test loss"], rows, title=f"job {summary['job']}")
    per = summary["workers"]["per_round"]
    if per["compute_s"] is not None:
        table(
            ["per worker round", "compute", "S3 get", "S3 put", "waiting", "bytes moved"],
            [
                (
                    "mean",
                    f"{per['compute_s'] * 1000:.1f} ms",
                    f"{per['get_s'] * 1000:.1f} ms",
                    f"{per['put_s'] * 1000:.1f} ms",
                    f"{per['wait_s'] * 1000:.1f} ms",
                    f"{per['bytes'] / 1e6:.2f} MB",
                )
            ],
        )
    gb, per_step = summary["gb_s"], summary["per_step"]
    ps_part = f"parameter server {gb['ps']}, " if gb.get("ps") else ""
    fraction = summary["workers"]["communication_fraction"]
    click.echo(
        f"final accuracy {summary['final_accuracy']}; {summary['workers']['totals']['rounds']} worker rounds "
        f"in {summary['elapsed_s']} s; local steps {summary['local_steps']}; communicating "
        f"{fraction:.0%} of worker time; {gb['total']:.1f} GB-s billed (workers {gb['workers']}, "
        f"{ps_part}coordinator {gb['coordinator']}); "
        f"{per_step['requests']} requests and {per_step['bytes'] / 1e6:.2f} MB a step; "
        f"{summary['replacements']} replaced; "
        f"left out {len(summary['left_out'])} times; model at {summary['model_key']}"
    )


def run_job(
    obj,
    settings: dict,
    driver: str = "action",
    resume_job: str | None = None,
    quiet: bool = False,
    targets=(0.98, 0.99),
    deploy: bool = True,
) -> dict:
    """Starts (or resumes) a job, follows it to the end, returns its report."""
    from mlcore.mnist import TRAIN_SIZE
    from mlcore.training import data as training_data
    from mlcore.training.coordinator import load_config
    from mlcore.training.job import TrainingError

    from .. import training_driver as training

    try:
        target, client, storage = _open(obj, settings.get("data") or "s3", deploy)
        thread, errors, activation = None, [], None
        if resume_job:
            config = load_config(storage, resume_job)
            training.check_capacity(client, config, driver)
            activation = training.resume(client, storage, resume_job)
        else:
            config = training.new_config(**settings)
            training.check_capacity(client, config, driver)
        if not resume_job and driver == "cli":

            def drive() -> None:
                try:
                    training.drive(target, storage, config)
                except Exception as exc:
                    errors.append(exc)

            thread = threading.Thread(target=drive, daemon=True)
            thread.start()
        elif not resume_job:
            activation = training.start(client, config)
        total = config.total_batches(training_data.train_size(config, TRAIN_SIZE))
        label = f"{config.job} ({config.mode}, {config.topology}, {config.workers} workers)"
        if not quiet:
            click.echo(
                f"job {config.job}: {total} batches per worker; resume with `deployer train --resume {config.job}`"
            )
        _watch(client, storage, config.job, activation, total, label, thread, errors)
        if thread is not None:
            thread.join()
            if errors:
                raise click.ClickException(str(errors[0]))
        training.wait_coordinator_ended(client, storage, config.job)
        return training.report(client, storage, config.job, targets)
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from exc


def choice_option(name: str, values: tuple[str, ...], default: str, help: str):
    return click.option(name, type=click.Choice(values), default=default, show_default=True, help=help)


def job_options(command):
    """The settings `train` and `bench train` share."""
    options = [
        click.option("--epochs", default=3, show_default=True, type=integer(1, 1000)),
        click.option(
            "--batch-size",
            default=128,
            show_default=True,
            type=integer(1, 60_000),
            help="Global batch per step, split over workers.",
        ),
        click.option(
            "--lr",
            type=Number(0, 10, low_open=True),
            default=0.05,
            show_default=True,
            help="Peak learning rate (warm-up, then cosine).",
        ),
        choice_option(
            "--precision",
            ("auto", "fp32", "bf16"),
            "auto",
            "bf16 autocast with fp32 master weights; auto = bf16 where the CPU has it.",
        ),
        choice_option("--compress", ("none", "fp16"), "fp16", "Encoding of the updates in S3."),
        click.option(
            "--train-limit", type=integer(0, 60_000), default=0, help="Use the first N training images (0 = all)."
        ),
        click.option(
            "--eval-every",
            type=integer(0, 1_000_000),
            default=0,
            help="Checkpoint and evaluate every N batches of a worker (0 = every epoch).",
        ),
        click.option(
            "--seed",
            type=integer(0, 2**31 - 1),
            default=0,
            show_default=True,
            help="Decides the initial model and each worker's images: the same seed and settings train the same model.",
        ),
    ]
    return stacked(options)(command)


@click.command("train")
@click.option("--workers", default=2, show_default=True, type=integer(1, MAX_WORKERS), help="Parallel worker actions.")
@choice_option(
    "--mode", MODES, "local", "sync: average gradients every step; local: K local steps, then average the models."
)
@click.option(
    "--local-steps",
    type=integer(0, 10_000),
    default=0,
    show_default=True,
    help="K for --mode local; 0 = chosen each round to keep communication near --comm-target.",
)
@click.option(
    "--comm-target",
    type=Number(0, 1, low_open=True, high_open=True),
    default=0.2,
    show_default=True,
    help="With --local-steps 0: the share of a round spent communicating that K is chosen to keep.",
)
@choice_option("--topology", TOPOLOGIES, "allreduce", TOPOLOGY_HELP)
@job_options
@click.option(
    "--quorum",
    type=integer(1, MAX_WORKERS),
    default=None,
    help="Complete a round once this many workers delivered, at most --workers [default: all]; allreduce only.",
)
@click.option(
    "--straggler-wait-s",
    type=seconds(3600),
    default=1.0,
    show_default=True,
    help="With --quorum: how long to wait for the rest.",
)
@choice_option("--data", ("s3", "local"), "s3", "Where workers read MNIST (local works on the local platform only).")
@choice_option(
    "--driver", ("action", "cli"), "action", "Run the coordinator as the mnist-train/train action or in this process."
)
@click.option("--job", "job_name", type=JOB_NAME, default=None, help="Job name (default: generated).")
@click.option(
    "--resume", "resume_job", type=JOB_NAME, default=None, metavar="JOB", help="Continue JOB from where it stopped."
)
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.pass_obj
def train_command(
    obj,
    workers,
    mode,
    local_steps,
    comm_target,
    topology,
    epochs,
    batch_size,
    lr,
    precision,
    compress,
    train_limit,
    eval_every,
    seed,
    quorum,
    straggler_wait_s,
    data,
    driver,
    job_name,
    resume_job,
    json_path,
) -> None:
    """Train LeNet-5 on MNIST with long-lived serverless workers that combine their updates through S3."""
    if mode == "sync" and local_steps not in (0, 1):
        raise click.BadParameter("applies to --mode local only", param_hint="'--local-steps'")
    if quorum is not None and quorum > workers:
        raise click.BadParameter(f"{quorum} is more than --workers ({workers})", param_hint="'--quorum'")
    if quorum is not None and quorum < workers and topology != "allreduce":
        raise click.BadParameter(
            f"applies to --topology allreduce only ({topology} waits for every worker)", param_hint="'--quorum'"
        )
    if batch_size < workers:
        raise click.BadParameter(
            f"{batch_size} is less than --workers ({workers}): the batch is split over them",
            param_hint="'--batch-size'",
        )
    settings = dict(
        job=job_name,
        workers=workers,
        epochs=epochs,
        batch_size=batch_size,
        mode=mode,
        topology=topology,
        local_steps=local_steps,
        comm_target=comm_target,
        lr=lr,
        precision=precision,
        compress=compress,
        quorum=quorum or 0,
        straggler_wait_s=straggler_wait_s,
        data=data,
        train_limit=train_limit,
        eval_every=eval_every,
        seed=seed,
    )
    summary = run_job(obj, settings, driver, resume_job)
    _show(summary)
    write_report(json_path, summary)
