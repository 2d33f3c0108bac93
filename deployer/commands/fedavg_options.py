"""What `deployer fedavg ...` and `deployer bench fedavg` share: options, configs, executors, round progress.

Torch is imported only when a command runs, so `--help` stays fast; Ray, an optional
extra, only by the ray executor; the platform only by the openwhisk executor.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from fedavg.executors import EXECUTORS
from fedavg.partition import KINDS

from ..folders import data_dir
from .params import MAX_WORKERS, SEED, THREADS, Number, OutputFolder, Pattern, integer, stacked
from .progress import bar

# fedavg.models.MODELS, spelled out so `--help` does not import torch (a test keeps them equal)
MODEL_NAMES = ("cnn", "2nn", "lenet5")

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "fedavg.yaml"

# the option types the fedavg commands and `bench fedavg` share
CLIENTS = integer(1, 10_000)
ROUNDS = integer(1, 100_000)
LR = Number(0, 10, low_open=True)
ACCURACY = Number(0, 1, low_open=True)
TRAIN_LIMIT = integer(1, 60_000)
TEST_LIMIT = integer(1, 10_000)
CONCURRENCY = integer(1, 256)
ALPHA = dict(default=0.5, show_default=True, type=Number(0, 1e6, low_open=True), help="Dirichlet concentration.")
SHARDS = dict(default=2, show_default=True, type=integer(1, 1000), help="Shards each client gets (shards partition).")
RAY_ADDRESS = Pattern(r"auto|(ray://)?[A-Za-z0-9.\[\]:_-]+:[0-9]{1,5}", "auto, HOST:PORT or ray://HOST:PORT")


def checkpoint_root() -> Path:
    """Per user, beside the MNIST data, so runs resume from any working directory."""
    return data_dir("fedavg")


def default_checkpoint_dir(run_id: str) -> Path:
    return checkpoint_root() / run_id


def study_options(f):
    """Where sweeps and benches keep one checkpoint per setting, so a stopped study continues."""
    f = click.option("--fresh", is_flag=True, help="Start every setting from round 0 and keep no checkpoints.")(f)
    return click.option(
        "--checkpoint-root",
        type=OutputFolder(),
        default=None,
        help="One checkpoint per setting here; a setting with one continues it "
        "[default: ~/.local/share/deployer/fedavg].",
    )(f)


def study_root(checkpoint_root_option: str | None, fresh: bool) -> Path | None:
    if fresh:
        return None
    return Path(checkpoint_root_option) if checkpoint_root_option else checkpoint_root()


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def precision_option():
    return click.option(
        "--precision",
        type=click.Choice(["auto", "bf16", "fp32"]),
        default="auto",
        show_default=True,
        help="Client arithmetic: bf16 autocast with fp32 master weights, or fp32; auto = bf16 "
        "where the CPU has native bf16 (AVX512-BF16/AMX).",
    )


def channels_last_option():
    return click.option(
        "--channels-last/--no-channels-last",
        default=True,
        show_default=True,
        help="Channels-last memory for the convolutions (faster with bf16 on CPU).",
    )


def pixels_option():
    return click.option(
        "--pixels",
        type=click.Choice(["standardized", "unit"]),
        default="standardized",
        show_default=True,
        help="Model input: pixels standardised over MNIST's training set, or scaled to 0..1 "
        "(the paper does not say which it used).",
    )


def config_options(f, sweep: bool = False):
    """The options that make a RunConfig; a sweep takes --clients and --partition as lists instead."""
    options = {
        "model": click.option("--model", type=click.Choice(list(MODEL_NAMES)), default="cnn", show_default=True),
        "num_clients": click.option(
            "--clients", "num_clients", default=100, show_default=True, type=CLIENTS, help="K, the number of clients."
        ),
        "frac": click.option(
            "--frac",
            default=0.1,
            show_default=True,
            type=Number(0, 1),
            help="C, the fraction of clients per round; 0 = one client a round.",
        ),
        "epochs": click.option(
            "--epochs", default=5, show_default=True, type=integer(1, 1000), help="E, local epochs per round."
        ),
        "batch": click.option(
            "--batch",
            default=10,
            show_default=True,
            type=integer(0, 60_000),
            help="B, local batch size; 0 = whole local set.",
        ),
        "lr": click.option("--lr", default=0.05, show_default=True, type=LR, help="Client SGD learning rate."),
        "mu": click.option(
            "--mu", default=0.0, show_default=True, type=Number(0, 100), help="FedProx proximal term; 0 = plain FedAvg."
        ),
        "fedsgd": click.option("--fedsgd", is_flag=True, help="The FedSGD baseline: E=1, B=whole local set."),
        "partition_kind": click.option(
            "--partition", "partition_kind", type=click.Choice(list(KINDS)), default="iid", show_default=True
        ),
        "alpha": click.option("--alpha", **ALPHA),
        "shards_per_client": click.option("--shards-per-client", **SHARDS),
        "rounds": click.option("--rounds", default=50, show_default=True, type=ROUNDS, help="Rounds to run (at most)."),
        "target": click.option("--target", type=ACCURACY, default=None, help="Test accuracy to reach, e.g. 0.99."),
        "seed": click.option("--seed", default=0, show_default=True, type=SEED),
        "train_limit": click.option(
            "--train-limit", type=TRAIN_LIMIT, default=None, help="Use only the first N training examples."
        ),
        "test_limit": click.option(
            "--test-limit", type=TEST_LIMIT, default=None, help="Evaluate on the first N test examples."
        ),
        "precision": precision_option(),
        "channels_last": channels_last_option(),
        "pixels": pixels_option(),
    }
    if sweep:
        del options["num_clients"], options["partition_kind"]
    return stacked(options.values())(f)


def sweep_config_options(f):
    return config_options(f, sweep=True)


def executor_options(f):
    return stacked(
        [
            click.option(
                "--executor",
                "executor_name",
                type=click.Choice(list(EXECUTORS)),
                default="process",
                show_default=True,
                help="Where client updates run; process keeps both cores busy, batched steps all clients at once.",
            ),
            click.option(
                "--workers",
                default=2,
                show_default=True,
                type=integer(1, MAX_WORKERS),
                help="Worker processes (process executor) or Ray actors (ray executor).",
            ),
            click.option(
                "--threads",
                default=1,
                show_default=True,
                type=THREADS,
                help="Torch threads per process (this one for serial and batched, each worker for process and ray).",
            ),
            click.option(
                "--concurrency",
                default=4,
                show_default=True,
                type=CONCURRENCY,
                help="Invocations in flight (openwhisk executor).",
            ),
            click.option(
                "--ray-address",
                type=RAY_ADDRESS,
                default=None,
                metavar="ADDRESS",
                help="Where the Ray cluster is (ray executor): auto, HEAD:6379 or ray://HEAD:10001 "
                "[default: a private local Ray].",
            ),
        ]
    )(f)


def make_config(
    model,
    num_clients,
    frac,
    epochs,
    batch,
    lr,
    mu,
    fedsgd,
    partition_kind,
    alpha,
    shards_per_client,
    rounds,
    target,
    seed,
    train_limit,
    test_limit,
    precision="fp32",
    channels_last=False,
    pixels="standardized",
):
    from fedavg.run import RunConfig
    from mlcore import compute

    if fedsgd:
        epochs, batch = 1, 0
    return RunConfig(
        model=model,
        clients=num_clients,
        frac=frac,
        epochs=epochs,
        batch_size=batch or None,
        lr=lr,
        mu=mu,
        partition=partition_kind,
        alpha=alpha,
        shards_per_client=shards_per_client,
        rounds=rounds,
        target=target,
        seed=seed,
        train_limit=train_limit,
        test_limit=test_limit,
        precision=compute.resolve_precision(precision),
        channels_last=channels_last,
        pixels=pixels,
    )


def _openwhisk_parts(obj, run_id: str):
    """(OpenWhiskClient, Storage) wired to the resolved OpenWhisk and its S3, with the action deployed."""
    from mlcore.storage import Storage

    from .. import target as targets
    from ..manifest import deploy

    target = obj.target if obj is not None and hasattr(obj, "target") else targets.resolve()
    client = target.client()
    storage = Storage(target.storage.config)
    storage.ensure_bucket()
    deploy(client, MANIFEST, env=target.storage.manifest_env())
    return client, storage


def executor_factory(
    name: str,
    data,
    *,
    workers: int,
    threads: int,
    concurrency: int,
    obj=None,
    run_id: str = "run",
    ray_address: str | None = None,
):
    """fedavg.executors.make_factory, with the platform wired in for openwhisk and a missing Ray one line."""
    from fedavg.executors import make_factory

    openwhisk = _openwhisk_parts(obj, run_id) if name == "openwhisk" else None
    try:
        return make_factory(
            name,
            data,
            workers=workers,
            threads=threads,
            concurrency=concurrency,
            run_id=run_id,
            ray_address=ray_address,
            openwhisk=openwhisk,
        )
    except ImportError as exc:
        if name != "ray":
            raise
        raise click.ClickException(f"the ray executor needs Ray: pip install '.[ray]' ({exc})") from exc


@dataclass(frozen=True)
class ExecutorChoice:
    """What executor_options asked for, kept together so that a command hands it on as one value."""

    name: str
    workers: int
    threads: int
    concurrency: int
    ray_address: str | None

    @classmethod
    def take(cls, options: dict) -> ExecutorChoice:
        """Removes executor_options' values from a command's keyword arguments."""
        keys = ("executor_name", "workers", "threads", "concurrency", "ray_address")
        return cls(*(options.pop(key) for key in keys))

    def set_threads(self) -> None:
        set_threads(self.threads)

    def factory(self, data, obj, run_id: str):
        return executor_factory(
            self.name,
            data,
            workers=self.workers,
            threads=self.threads,
            concurrency=self.concurrency,
            obj=obj,
            run_id=run_id,
            ray_address=self.ray_address,
        )


@contextmanager
def rounds_progress(total: int, description: str):
    """A progress bar per label on stderr; yields advance(label, record) for each round's record."""
    with bar("status", stderr=True) as progress:
        console = progress.console
        tasks: dict[str, int] = {}

        def advance(label: str, record: dict) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"{description} {label}".strip(), total=total, status="")
            failed = f" failed {len(record['failed'])}" if record["failed"] else ""
            status = (
                f"acc {record['test_acc']:.4f} loss {record['test_loss']:.3f} {record['round_s']:.1f}s/round{failed}"
            )
            progress.update(tasks[label], completed=record["round"], status=status)
            if not console.is_terminal:
                # logs and pipes get one line per round, since the bar is drawn only on a terminal
                console.print(f"{description} {label} round {record['round']}: {status}".replace("  ", " "))

        yield advance
