"""`deployer bench fedavg`: time per round of each executor beside serial fp32, and rounds to 99% vs the paper."""

from __future__ import annotations

from dataclasses import dataclass

import click

from fedavg.executors import EXECUTORS
from fedavg.partition import KINDS

from .fedavg_options import (
    ACCURACY,
    CONCURRENCY,
    LR,
    ROUNDS,
    TEST_LIMIT,
    TRAIN_LIMIT,
    channels_last_option,
    executor_factory,
    precision_option,
    rounds_progress,
    set_threads,
    study_options,
    study_root,
)
from .output import show, write_report
from .params import MAX_WORKERS, SEED, THREADS, OutputFile, choices, integer, stacked


@dataclass(frozen=True)
class BenchOptions:
    """The options of `bench fedavg`, as click passes them."""

    executors: tuple[str, ...]
    timing_rounds: int
    timing_epochs: int
    max_rounds: int
    partitions: tuple[str, ...]
    target: float
    lr: float
    executor_name: str
    workers: int
    threads: int
    concurrency: int
    seed: int
    skip_target: bool
    fedsgd_rounds: int
    fedsgd_lr: float | None
    train_limit: int | None
    test_limit: int | None
    json_path: str | None
    checkpoint_root: str | None
    fresh: bool
    precision: str
    channels_last: bool

    def check(self) -> None:
        if self.fedsgd_rounds and self.skip_target:
            raise click.BadParameter(
                "cannot go with --skip-target: FedSGD is compared with the rounds-to-target curves",
                param_hint="'--fedsgd-rounds'",
            )

    def executor_options(self, obj) -> dict:
        return {"workers": self.workers, "threads": self.threads, "concurrency": self.concurrency, "obj": obj}


def bench_options(f):
    return stacked(
        [
            click.option(
                "--executors",
                type=choices(EXECUTORS),
                default="serial,process,openwhisk,ray",
                show_default=True,
                help="Executors to time side by side.",
            ),
            click.option(
                "--timing-rounds",
                default=3,
                show_default=True,
                type=integer(0, 1000),
                help="Rounds per executor for timing; 0 skips the timing.",
            ),
            click.option(
                "--timing-epochs", default=5, show_default=True, type=integer(1, 1000), help="E for the timing runs."
            ),
            click.option(
                "--max-rounds",
                default=50,
                show_default=True,
                type=ROUNDS,
                help="Round budget for each rounds-to-target run.",
            ),
            click.option("--partitions", type=choices(KINDS), default="iid,shards", show_default=True),
            click.option("--target", default=0.99, show_default=True, type=ACCURACY),
            click.option("--lr", default=0.05, show_default=True, type=LR),
            click.option(
                "--executor",
                "executor_name",
                type=click.Choice(["serial", "process"]),
                default="process",
                show_default=True,
                help="Executor for the rounds-to-target runs.",
            ),
            click.option("--workers", default=2, show_default=True, type=integer(1, MAX_WORKERS)),
            click.option("--threads", default=1, show_default=True, type=THREADS),
            click.option("--concurrency", default=2, show_default=True, type=CONCURRENCY),
            click.option("--seed", default=0, show_default=True, type=SEED),
            click.option("--skip-target", is_flag=True, help="Only time the executors."),
            click.option(
                "--fedsgd-rounds",
                default=0,
                show_default=True,
                type=integer(0, 100_000),
                help="Round budget for the FedSGD baseline (E=1, B=inf) on each partition; 0 shows the paper's.",
            ),
            click.option("--fedsgd-lr", type=LR, default=None, help="FedSGD learning rate [default: --lr]."),
            click.option(
                "--train-limit", type=TRAIN_LIMIT, default=None, help="First N training images (quick checks only)."
            ),
            click.option(
                "--test-limit", type=TEST_LIMIT, default=None, help="First N test images (quick checks only)."
            ),
            click.option("--json", "json_path", type=OutputFile(), help="Write the report here."),
            precision_option(),
            channels_last_option(),
            study_options,
        ]
    )(f)


@click.command("fedavg")
@bench_options
@click.pass_obj
def bench_command(obj, **options) -> None:
    """Time per round of each executor beside serial fp32, and rounds to 99% (CNN, C=0.1, E=5, B=10)."""
    from fedavg.run import RunConfig
    from mlcore import compute
    from studies import fedavg_executors
    from studies.fedavg_views import executors_view

    opts = BenchOptions(**options)
    opts.check()
    set_threads(opts.threads)
    base = RunConfig(
        **fedavg_executors.PAPER_CONFIG,
        lr=opts.lr,
        rounds=opts.max_rounds,
        target=opts.target,
        seed=opts.seed,
        train_limit=opts.train_limit,
        test_limit=opts.test_limit,
        precision=compute.resolve_precision(opts.precision),
        channels_last=opts.channels_last,
    )
    report = fedavg_executors.run_bench(
        base,
        lambda name, data, run_id="run": executor_factory(name, data, run_id=run_id, **opts.executor_options(obj)),
        rounds_progress,
        lambda partial: write_report(opts.json_path, partial, quiet=True),
        executors=opts.executors,
        timing_rounds=opts.timing_rounds,
        timing_epochs=opts.timing_epochs,
        target_executor=None if opts.skip_target else opts.executor_name,
        partitions=opts.partitions,
        checkpoint_root=study_root(opts.checkpoint_root, opts.fresh),
        fedsgd_rounds=opts.fedsgd_rounds,
        fedsgd_lr=opts.fedsgd_lr,
    )
    show(executors_view(report))
    write_report(opts.json_path, report)
