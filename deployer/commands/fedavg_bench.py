"""`deployer bench fedavg`: time per round of each executor beside serial fp32, and rounds to 99% vs the paper."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import click

from fedavg.errors import FedAvgError
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
    fail,
    precision_option,
    rounds_progress,
    set_threads,
    study_options,
    study_root,
)
from .output import table, write_report
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
    from fedavg.run import RunConfig, load_data
    from mlcore import compute
    from studies import fedavg_executors as bench

    opts = BenchOptions(**options)
    opts.check()
    set_threads(opts.threads)
    base = RunConfig(
        model="cnn",
        clients=100,
        frac=0.1,
        epochs=5,
        batch_size=10,
        lr=opts.lr,
        partition="iid",
        rounds=opts.max_rounds,
        target=opts.target,
        seed=opts.seed,
        train_limit=opts.train_limit,
        test_limit=opts.test_limit,
        precision=compute.resolve_precision(opts.precision),
        channels_last=opts.channels_last,
    )
    report: dict = {"paper_rounds_to_99": bench.PAPER_ROUNDS_TO_99, "arithmetic": compute.describe()}
    try:
        data = load_data(opts.train_limit, opts.test_limit)
        if opts.timing_rounds > 0:
            _time_executors(obj, opts, base, data, report)
        if not opts.skip_target:
            _rounds_to_target(obj, opts, base, data, report)
    except FedAvgError as exc:
        raise fail(exc) from exc
    _print_report(opts, report)
    write_report(opts.json_path, report)


def _time_executors(obj, opts: BenchOptions, base, data, report: dict) -> None:
    from studies import fedavg_executors as bench

    timing = dataclasses.replace(base, epochs=opts.timing_epochs, rounds=opts.timing_rounds, target=None)

    def make_factory(name: str, run_id: str = "run"):
        return executor_factory(name, data, run_id=run_id, **opts.executor_options(obj))

    entries = bench.timing_entries(opts.executors, timing, make_factory, report)
    with rounds_progress(opts.timing_rounds, "timing") as advance:
        report["executors"] = bench.time_executors(entries, data, on_round=advance)
    write_report(opts.json_path, report, quiet=True)


def _rounds_to_target(obj, opts: BenchOptions, base, data, report: dict) -> None:
    """Rounds to the target per partition, then FedSGD's when asked; the report is saved after each partition."""
    from studies import fedavg_executors as bench

    factory = executor_factory(opts.executor_name, data, **opts.executor_options(obj))
    kinds, root = tuple(opts.partitions), study_root(opts.checkpoint_root, opts.fresh)

    def partial(key: str) -> Callable[[dict], None]:
        return lambda result: write_report(opts.json_path, {**report, key: result}, quiet=True)

    with rounds_progress(opts.max_rounds, "to target") as advance:
        report["rounds_to_target"] = bench.rounds_to_target(
            base,
            kinds,
            factory,
            data,
            opts.max_rounds,
            on_round=advance,
            on_partition=partial("rounds_to_target"),
            checkpoint_root=root,
        )
    if opts.fedsgd_rounds:
        with rounds_progress(opts.fedsgd_rounds, "fedsgd") as advance:
            report["fedsgd"] = bench.rounds_to_target(
                bench.fedsgd_config(base, opts.fedsgd_lr),
                kinds,
                factory,
                data,
                opts.fedsgd_rounds,
                on_round=advance,
                on_partition=partial("fedsgd"),
                checkpoint_root=root,
            )
        report["fedsgd_vs_fedavg"] = bench.compare_to_fedsgd(
            report["rounds_to_target"]["partitions"], report["fedsgd"]["partitions"]
        )


def _print_report(opts: BenchOptions, report: dict) -> None:
    if "executors" in report:
        _print_timing(report["executors"], opts.timing_epochs)
    if "rounds_to_target" in report:
        table(
            ["partition", "rounds to target", "paper FedAvg", "paper FedSGD", "verdict"],
            [
                (
                    k,
                    v["rounds_to_target"] if v["rounds_to_target"] is not None else "-",
                    v["paper_fedavg_rounds"],
                    v["paper_fedsgd_rounds"],
                    v["verdict"],
                )
                for k, v in report["rounds_to_target"]["partitions"].items()
            ],
            f"rounds to {opts.target:g} (CNN, C=0.1, E=5, B=10, lr={opts.lr:g})",
        )
    if "fedsgd_vs_fedavg" in report:
        table(
            ["partition", "accuracy", "FedSGD rounds", "FedAvg rounds", "speed-up", "paper speed-up at 99%"],
            [
                (
                    k,
                    f"{v['accuracy_level']:.4f}",
                    v["fedsgd_rounds"],
                    v["fedavg_rounds"],
                    f"{v['speedup']:.1f}x",
                    f"{v['paper_speedup_at_99']:.1f}x" if v["paper_speedup_at_99"] else "-",
                )
                for k, v in report["fedsgd_vs_fedavg"].items()
            ],
            f"FedSGD (E=1, B=inf, lr={report['fedsgd']['config']['lr']:g}, {opts.fedsgd_rounds} rounds) "
            "vs FedAvg at FedSGD's best",
        )


def _print_timing(timing: dict, epochs: int) -> None:
    ratios = timing.get("ratio_to_baseline", {})
    rows = [
        (
            label,
            f"{v.get('first_round_s') or 0:.2f}",
            f"{v.get('mean_round_s') or 0:.2f}",
            f"{ratios[label]:.2f}x" if label in ratios else "-",
            v.get("error", ""),
        )
        for label, v in timing["executors"].items()
    ]
    table(
        ["executor", "first round s", "mean round s", f"time vs {timing.get('baseline', '-')}", "error"],
        rows,
        f"time per round (CNN, K=100, C=0.1, E={epochs}, B=10); same weights per arithmetic: {timing['same_weights']}",
    )
