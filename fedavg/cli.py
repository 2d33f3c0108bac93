"""`deployer fedavg run|sweep|table|partition` and `deployer bench fedavg` (click objects the deployer mounts lazily).

Only the openwhisk executor touches the deployer, imported inside the command, so the
algorithm and the other executors run without the platform; Ray, an optional extra, is
imported only by the ray executor; torch is imported only when a command runs, so
`--help` stays fast.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import click

from .errors import FedAvgError
from .executors import EXECUTORS
from .partition import KINDS

# fedavg.models.MODELS, spelled out so `--help` does not import torch (a test keeps them equal)
MODEL_NAMES = ("cnn", "2nn", "lenet5")

MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "fedavg.yaml"


def checkpoint_root() -> Path:
    """Per user, beside the MNIST data, so runs resume from any working directory."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "deployer" / "fedavg"


def default_checkpoint_dir(run_id: str) -> Path:
    return checkpoint_root() / run_id


def _study_options(f):
    """Where sweeps and benches keep one checkpoint per setting, so a stopped study continues."""
    f = click.option("--fresh", is_flag=True,
                     help="Start every setting from round 0 and keep no checkpoints.")(f)
    return click.option("--checkpoint-root", type=click.Path(file_okay=False), default=None,
                        help="One checkpoint per setting here; a setting with one continues it "
                             "[default: ~/.local/share/deployer/fedavg].")(f)


def _study_root(checkpoint_root_option: str | None, fresh: bool) -> Path | None:
    if fresh:
        return None
    return Path(checkpoint_root_option) if checkpoint_root_option else checkpoint_root()


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{name} must be comma-separated integers like 10,20,50: {text!r}") from exc
    if not values or min(values) < 1:
        raise click.BadParameter(f"{name} needs positive integers, got {text!r}")
    return values


def _write_json(path: str | None, report: dict, quiet: bool = False) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
        if not quiet:
            click.echo(f"wrote {path}", err=True)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _precision_option():
    return click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto",
                        show_default=True,
                        help="Client arithmetic: bf16 autocast with fp32 master weights, or fp32; auto = bf16 "
                             "where the CPU has native bf16 (AVX512-BF16/AMX).")


def _channels_last_option():
    return click.option("--channels-last/--no-channels-last", default=True, show_default=True,
                        help="Channels-last memory for the convolutions (faster with bf16 on CPU).")


def _config_options(f, sweep: bool = False):
    """The options that make a RunConfig; a sweep takes --clients and --partition as lists instead."""
    options = {
        "model": click.option("--model", type=click.Choice(list(MODEL_NAMES)), default="cnn", show_default=True),
        "num_clients": click.option("--clients", "num_clients", default=100, show_default=True,
                                    help="K, the number of clients."),
        "frac": click.option("--frac", default=0.1, show_default=True, help="C, the fraction of clients per round."),
        "epochs": click.option("--epochs", default=5, show_default=True, help="E, local epochs per round."),
        "batch": click.option("--batch", default=10, show_default=True,
                              help="B, local batch size; 0 = whole local set."),
        "lr": click.option("--lr", default=0.05, show_default=True, help="Client SGD learning rate."),
        "mu": click.option("--mu", default=0.0, show_default=True, help="FedProx proximal term; 0 = plain FedAvg."),
        "fedsgd": click.option("--fedsgd", is_flag=True, help="The FedSGD baseline: E=1, B=whole local set."),
        "partition_kind": click.option("--partition", "partition_kind", type=click.Choice(list(KINDS)),
                                       default="iid", show_default=True),
        "alpha": click.option("--alpha", default=0.5, show_default=True, help="Dirichlet concentration."),
        "shards_per_client": click.option("--shards-per-client", default=2, show_default=True),
        "rounds": click.option("--rounds", default=50, show_default=True, help="Rounds to run (at most)."),
        "target": click.option("--target", type=float, default=None, help="Test accuracy to reach, e.g. 0.99."),
        "seed": click.option("--seed", default=0, show_default=True),
        "train_limit": click.option("--train-limit", type=int, default=None,
                                    help="Use only the first N training examples."),
        "test_limit": click.option("--test-limit", type=int, default=None,
                                   help="Evaluate on the first N test examples."),
        "precision": _precision_option(),
        "channels_last": _channels_last_option(),
    }
    if sweep:
        del options["num_clients"], options["partition_kind"]
    for option in reversed(list(options.values())):
        f = option(f)
    return f


def _sweep_config_options(f):
    return _config_options(f, sweep=True)


def _executor_options(f):
    options = [
        click.option("--executor", "executor_name", type=click.Choice(list(EXECUTORS)), default="process",
                     show_default=True, help="Where client updates run; process keeps both cores busy."),
        click.option("--workers", default=2, show_default=True,
                     help="Worker processes (process executor) or Ray actors (ray executor)."),
        click.option("--threads", default=1, show_default=True,
                     help="Torch threads per process (this one for serial, each worker for process and ray)."),
        click.option("--concurrency", default=4, show_default=True,
                     help="Invocations in flight (openwhisk executor)."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="Where the Ray cluster is (ray executor): auto, HEAD:6379 or ray://HEAD:10001 "
                          "[default: a private local Ray]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _make_config(model, num_clients, frac, epochs, batch, lr, mu, fedsgd, partition_kind, alpha,
                 shards_per_client, rounds, target, seed, train_limit, test_limit, precision="fp32",
                 channels_last=False):
    from . import precision as precisions
    from .run import RunConfig

    if fedsgd:
        epochs, batch = 1, 0
    if num_clients < 1 or not 0 < frac <= 1 or epochs < 1 or batch < 0 or lr <= 0 or mu < 0 or rounds < 0:
        raise click.BadParameter("need --clients >= 1, 0 < --frac <= 1, --epochs >= 1, --batch >= 0, --lr > 0, "
                                 "--mu >= 0, --rounds >= 0")
    if target is not None and not 0 < target <= 1:
        raise click.BadParameter(f"--target is an accuracy in (0, 1], got {target}")
    return RunConfig(model=model, clients=num_clients, frac=frac, epochs=epochs, batch_size=batch or None, lr=lr,
                     mu=mu, partition=partition_kind, alpha=alpha, shards_per_client=shards_per_client,
                     rounds=rounds, target=target, seed=seed, train_limit=train_limit, test_limit=test_limit,
                     precision=precisions.resolve(precision), channels_last=channels_last)


def _openwhisk_parts(obj, run_id: str):
    """(OpenWhiskClient, Storage) wired to the resolved OpenWhisk and its S3, with the action deployed."""
    from deployer import target as targets
    from deployer.manifest import deploy
    from mlcore.storage import Storage, StorageConfig

    target = obj.target if obj is not None and hasattr(obj, "target") else targets.resolve()
    client = target.client()
    env = {**os.environ, **targets.storage_env_for(target)}
    storage = Storage(StorageConfig.from_env(env))
    storage.ensure_bucket()
    deploy(client, MANIFEST, env=env)
    return client, storage


def executor_factory(name: str, data, *, workers: int, threads: int, concurrency: int, obj=None,
                     run_id: str = "run", ray_address: str | None = None):
    """A zero-argument callable giving a fresh executor context for `name`."""
    from .executors.process import ProcessExecutor
    from .executors.serial import SerialExecutor

    if name == "serial":
        return lambda: SerialExecutor(data.train_images, data.train_labels, num_threads=threads)
    if name == "process":
        return lambda: ProcessExecutor(data.train_images, data.train_labels, workers=workers,
                                       threads_per_worker=threads)
    if name == "ray":
        try:
            from .executors.ray import RayExecutor
        except ImportError as exc:
            raise click.ClickException(f"the ray executor needs Ray: pip install '.[ray]' ({exc})") from exc
        return lambda: RayExecutor(data.train_images, data.train_labels, workers=workers, threads_per_worker=threads,
                                   ray_address=ray_address)
    from .executors.openwhisk import OpenWhiskExecutor

    client, storage = _openwhisk_parts(obj, run_id)
    return lambda: OpenWhiskExecutor(client, storage, data.train_images, data.train_labels, run_id=run_id,
                                     concurrency=concurrency, threads_per_client=threads)


@contextmanager
def _progress(total: int, description: str):
    """A rich progress bar on stderr; yields advance(label, record)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        tasks: dict[str, int] = {}

        def advance(label: str, record: dict) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"{description} {label}".strip(), total=total, status="")
            failed = f" failed {len(record['failed'])}" if record["failed"] else ""
            status = (f"acc {record['test_acc']:.4f} loss {record['test_loss']:.3f} "
                      f"{record['round_s']:.1f}s/round{failed}")
            progress.update(tasks[label], completed=record["round"], status=status)
            if not console.is_terminal:
                # logs and pipes get one line per round, since the bar is drawn only on a terminal
                console.print(f"{description} {label} round {record['round']}: {status}".replace("  ", " "))

        yield advance


@click.group("fedavg")
def fedavg_group() -> None:
    """Federated averaging on MNIST: runs, client-count sweeps, the paper's tables, partitions."""


@fedavg_group.command("run")
@_config_options
@_executor_options
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Where each round is checkpointed [default: ~/.local/share/deployer/fedavg/<run id>].")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint of the same configuration.")
@click.option("--keep-going", is_flag=True, help="Do not stop when --target is reached.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
@click.pass_obj
def run_command(obj, executor_name, workers, threads, concurrency, ray_address, checkpoint_dir, resume, keep_going,
                json_path, **options) -> None:
    """Run FedAvg round by round, evaluating on the MNIST test set after each round."""
    from . import run as runner

    config = _make_config(**options)
    _set_threads(threads)
    checkpoint = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(config.run_id())
    try:
        data = runner.load_data(config.train_limit, config.test_limit)
        factory = executor_factory(executor_name, data, workers=workers, threads=threads, concurrency=concurrency,
                                   obj=obj, run_id=config.run_id(), ray_address=ray_address)
        with factory() as executor, _progress(config.rounds, f"fedavg {executor_name}") as advance:
            report, _ = runner.run(config, executor, data, checkpoint_dir=checkpoint, resume=resume,
                                   stop_at_target=not keep_going, on_round=lambda r: advance("", r))
    except FedAvgError as exc:
        raise _fail(exc) from exc
    report["checkpoint_dir"] = str(checkpoint)
    reached = report["rounds_to_target"]
    click.echo(f"rounds {report['rounds_done']}  final acc {report['final_acc']:.4f}  best {report['best_acc']:.4f}"
               f"  {report['mean_round_s']:.2f} s/round  failed clients {report['failed_clients']}")
    if config.target is not None:
        click.echo(f"target {config.target:g}: " + (f"reached in {reached} rounds" if reached is not None
                                                    else f"not reached within {report['rounds_done']} rounds"))
    _write_json(json_path, report)


@fedavg_group.command("sweep")
@_sweep_config_options
@_executor_options
@click.option("--clients", "clients_list", default="10,20,50,100", show_default=True,
              help="Comma-separated K values.")
@click.option("--partition", "partition_list", default="iid,shards", show_default=True,
              help="Comma-separated partitions.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Accuracy vs round PNG.")
@_study_options
@click.pass_obj
def sweep_command(obj, executor_name, workers, threads, concurrency, ray_address, clients_list, partition_list,
                  json_path, plot_path, checkpoint_root, fresh, **options) -> None:
    """The effect of the number of clients (and of non-IID data) on accuracy per round."""
    from . import run as runner
    from .plot import plot_curves
    from .sweep import sweep

    ks = _ints(clients_list, "--clients")
    kinds = _choices(partition_list, "--partition", KINDS)
    base = _make_config(num_clients=ks[0], partition_kind=kinds[0], **options)
    _set_threads(threads)
    try:
        data = runner.load_data(base.train_limit, base.test_limit)
        factory = executor_factory(executor_name, data, workers=workers, threads=threads, concurrency=concurrency,
                                   obj=obj, run_id=f"sweep-{base.run_id()}", ray_address=ray_address)
        with _progress(base.rounds, "sweep") as advance:
            report = sweep(base, ks, kinds, factory, data, on_round=advance,
                           checkpoint_root=_study_root(checkpoint_root, fresh),
                           on_setting=lambda partial: _write_json(json_path, partial, quiet=True))
    except FedAvgError as exc:
        raise _fail(exc) from exc
    _print_table(["setting", "m/round", "final acc", "best acc", "rounds to target", "s/round"],
                 [(s["label"], s["clients_per_round"], f"{s['final_acc']:.4f}", f"{s['best_acc']:.4f}",
                   s["rounds_to_target"] if s["rounds_to_target"] is not None else "-",
                   f"{s['mean_round_s']:.2f}") for s in report["settings"]], "fedavg sweep")
    if plot_path:
        plot_curves({s["label"]: s["accuracy"] for s in report["settings"]}, Path(plot_path),
                    title=f"FedAvg {base.model}, C={base.frac}, E={base.epochs}, B={base.batch_size or 'inf'}",
                    target=base.target)
        click.echo(f"wrote {plot_path}", err=True)
    _write_json(json_path, report)


def _choices(text: str, name: str, allowed) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise click.BadParameter(f"{name} takes a comma-separated list of {', '.join(allowed)}; got {text!r}")
    return values


def _floats(text: str, name: str, low: float, high: float = float("inf"), low_open: bool = False) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{name} must be comma-separated numbers like 0.1,0.2: {text!r}") from exc
    bad = [v for v in values if not (low < v if low_open else low <= v) or not v <= high]
    if not values or bad:
        side = "(" if low_open else "["
        raise click.BadParameter(f"{name} needs numbers in {side}{low:g}, {high:g}]; got {text!r}")
    return values


def _batches(text: str) -> list[int | None]:
    try:
        values = [None if x.strip() == "inf" else int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"--batches takes 'inf' or positive integers, like inf,10: {text!r}") from exc
    if not values or any(v is not None and v < 1 for v in values):
        raise click.BadParameter(f"--batches takes 'inf' or positive integers, like inf,10: {text!r}")
    return values


def _probe_rounds(text: str, kinds: list[str]) -> dict[str, int]:
    """'N' for every partition, or 'iid=3,shards=6'; every partition asked for needs a value."""
    out: dict[str, int] = {}
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            kind, _, n = part.rpartition("=")
            if kind and kind not in KINDS:
                raise ValueError(kind)
            for k in ([kind] if kind else kinds):
                out[k] = int(n)
    except ValueError as exc:
        raise click.BadParameter(f"--probe-rounds takes N or PARTITION=N pairs like iid=3,shards=6: {text!r}") from exc
    missing = [k for k in kinds if k not in out]
    if missing or any(n < 1 for n in out.values()):
        raise click.BadParameter(f"--probe-rounds needs a positive count for {', '.join(kinds)}; got {text!r}")
    return {k: out[k] for k in kinds}


def _table_spec(tables, number: str, model: str | None, rows: str | None, batches: str | None):
    """The TableSpec the options ask for (Table 2 is the CNN's; Table 1 defaults to the 2NN)."""
    if number == "2":
        if model not in (None, "cnn") or batches is not None:
            raise click.BadParameter("table 2 is the CNN's rows at C=0.1: it takes no --model 2nn and no --batches "
                                     "(pick rows with --rows)")
        return tables.table2_spec(_choices(rows, "--rows", tables.table2_row_keys()) if rows
                                  else tables.TABLE2_DEFAULT_ROWS)
    fracs = _floats(rows, "--rows", 0.0, 1.0) if rows else tables.TABLE1_FRACS
    return tables.table1_spec(model or "2nn", fracs, _batches(batches) if batches else (None, 10))


@contextmanager
def _table_checkpoints(checkpoint_root_option: str | None, fresh: bool):
    """--fresh keeps no checkpoints, but the winning lr still continues its probe: from a temporary folder."""
    import tempfile

    if not fresh:
        yield _study_root(checkpoint_root_option, fresh)
        return
    with tempfile.TemporaryDirectory(prefix="fedavg-table-") as tmp:
        yield Path(tmp)


@fedavg_group.command("table")
@click.argument("table", type=click.Choice(["1", "2"]))
@click.option("--model", type=click.Choice(["2nn", "cnn"]), default=None,
              help="Table 1 only: 2nn (E=1, to 97%) [default], or cnn (E=5, to 99%; at C=1.0 each round trains "
                   "100 clients x 5 epochs, days on 2 cores). Table 2 is the CNN's.")
@click.option("--partitions", default="iid,shards", show_default=True, help="iid and/or shards (non-IID).")
@click.option("--rows", default=None,
              help="Table 2: row keys [default: fedsgd,e1-b10,e5-b10; also e5-binf, e1-b50, e20-binf, e5-b50, "
                   "e20-b50, e20-b10]. Table 1: C values [default: 0.0,0.1,0.2,0.5,1.0; 0.0 = one client a round].")
@click.option("--batches", default=None, help="Table 1 only: the B columns [default: inf,10].")
@click.option("--lrs", default=None,
              help="Learning rates to probe in every row [default: 0.0215,0.0464,0.1,0.215; rows with B=inf "
                   "0.1,0.215,0.464,1].")
@click.option("--probe-rounds", default="iid=3,shards=6", show_default=True,
              help="Rounds each lr runs before the best is kept: N, or PARTITION=N pairs.")
@click.option("--max-rounds", type=int, default=None,
              help="Round budget per cell, probe included [default: 1000; 3000 for table 1 with the 2nn].")
@click.option("--clients", "num_clients", default=100, show_default=True,
              help="K; the paper's is 100 (fewer only for quick checks).")
@click.option("--seed", default=0, show_default=True)
@click.option("--train-limit", type=int, default=None, help="First N training images (quick checks only).")
@click.option("--test-limit", type=int, default=None, help="First N test images (quick checks only).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where tableN.md, tableN.json and tableN.png go [default: out/fedavg-tableN].")
@_precision_option()
@_channels_last_option()
@_executor_options
@_study_options
@click.pass_obj
def table_command(obj, table, model, partitions, rows, batches, lrs, probe_rounds, max_rounds, num_clients, seed,
                  train_limit, test_limit, out_dir, precision, channels_last, executor_name, workers, threads,
                  concurrency, ray_address, checkpoint_root, fresh) -> None:
    """The FedAvg paper's Table 1 (client fraction C) or Table 2 (FedSGD vs FedAvg), ours beside the paper's.

    Each cell probes a few learning rates for a few rounds and continues the best to the
    target; every run is checkpointed, so running the same command again continues where it
    stopped. The table is rewritten after every finished cell.
    """
    from . import precision as precisions
    from . import run as runner
    from . import table as tables

    kinds = _choices(partitions, "--partitions", tables.PARTITIONS)
    spec = _table_spec(tables, table, model, rows, batches)
    probes = _probe_rounds(probe_rounds, kinds)
    budget = max_rounds if max_rounds is not None else tables.DEFAULT_MAX_ROUNDS[(spec.number, spec.model)]
    grid = _floats(lrs, "--lrs", 0.0, low_open=True) if lrs else None
    if budget < max(probes.values()) or num_clients < 1:
        raise click.BadParameter(f"--max-rounds ({budget}) must be at least the probe rounds ({max(probes.values())}),"
                                 f" and --clients at least 1")
    base = runner.RunConfig(model=spec.model, clients=num_clients, seed=seed, target=spec.target,
                            train_limit=train_limit, test_limit=test_limit,
                            precision=precisions.resolve(precision), channels_last=channels_last)
    out = Path(out_dir or f"out/fedavg-table{table}")
    _set_threads(threads)
    try:
        data = runner.load_data(train_limit, test_limit)
        factory = executor_factory(executor_name, data, workers=workers, threads=threads, concurrency=concurrency,
                                   obj=obj, run_id=f"table{table}-{base.run_id()}", ray_address=ray_address)
        with _table_checkpoints(checkpoint_root, fresh) as root, _progress(budget, f"table {table}") as advance:
            report = tables.run_table(spec, base, kinds, factory, data, probe_rounds=probes, max_rounds=budget,
                                      lrs=grid, checkpoint_root=root, on_round=advance,
                                      on_cell=lambda partial: tables.write_outputs(partial, out),
                                      executor_info={"name": executor_name, "workers": workers, "threads": threads})
    except FedAvgError as exc:
        raise _fail(exc) from exc
    paths = tables.write_outputs(report, out)
    _print_table(["row", "partition", "ours", "lr", "paper", "s/round"],
                 [(c["label"], c["partition"], c["verdict"], f"{c['chosen_lr']:.3g}",
                   c["paper_rounds"] if c["paper_rounds"] is not None else "-", f"{c['mean_round_s']:.2f}")
                  for c in report["cells"]], f"{spec.title} (paper: McMahan et al. 2017)")
    click.echo(f"rounds run now: {report['rounds_run_now']}", err=True)
    for path in paths:
        click.echo(f"wrote {path}", err=True)


@fedavg_group.command("partition")
@click.option("--clients", "num_clients", default=100, show_default=True)
@click.option("--partition", "partition_kind", type=click.Choice(list(KINDS)), default="shards",
              show_default=True)
@click.option("--alpha", default=0.5, show_default=True)
@click.option("--shards-per-client", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--train-limit", type=int, default=None)
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Labels per client PNG.")
def partition_command(num_clients, partition_kind, alpha, shards_per_client, seed, train_limit, json_path,
                      plot_path) -> None:
    """Show how the training set is split: examples and labels per client."""
    from . import partition as partitions
    from .plot import plot_label_counts
    from .run import load_data

    try:
        labels = load_data(train_limit, 0).train_labels.numpy()
        parts = partitions.make_partition(partition_kind, labels, num_clients, seed, alpha=alpha,
                                          shards_per_client=shards_per_client)
    except FedAvgError as exc:
        raise _fail(exc) from exc
    summary = partitions.summary(parts, labels)
    e, lab = summary["examples_per_client"], summary["labels_per_client"]
    click.echo(f"{partition_kind}: {summary['clients']} clients, {summary['examples']} examples; per client "
               f"examples {e['min']}..{e['max']} (mean {e['mean']:.1f}), labels {lab['min']}..{lab['max']} "
               f"(mean {lab['mean']:.2f})")
    if plot_path:
        title = f"{partition_kind} K={num_clients}" + (f" alpha={alpha:g}" if partition_kind == "dirichlet" else "")
        plot_label_counts(summary["label_counts"], Path(plot_path), title=title)
        click.echo(f"wrote {plot_path}", err=True)
    _write_json(json_path, {"partition": partition_kind, "seed": seed, "alpha": alpha, **summary})


def _timing_entries(names, timing, data, report: dict, **executor_options) -> dict:
    """(factory, config) per label: the serial fp32 baseline first, then each executor at the bench's arithmetic."""
    import dataclasses

    from .bench import BASELINE, timing_label

    baseline = dataclasses.replace(timing, precision="fp32", channels_last=False)
    entries = {BASELINE: (executor_factory("serial", data, **executor_options), baseline)}
    for name in names:
        label = timing_label(name, timing)
        if label in entries:
            continue
        try:
            factory = executor_factory(name, data, run_id=f"bench-{timing.run_id()}", **executor_options)
        except Exception as exc:  # noqa: BLE001 - a missing platform skips that executor, not the bench
            report.setdefault("skipped", {})[label] = f"{type(exc).__name__}: {exc}"
            continue
        entries[label] = (factory, timing)
    return entries


def _print_timing(timing: dict, epochs: int) -> None:
    ratios = timing.get("ratio_to_baseline", {})
    rows = [(label, f"{v.get('first_round_s') or 0:.2f}", f"{v.get('mean_round_s') or 0:.2f}",
             f"{ratios[label]:.2f}x" if label in ratios else "-", v.get("error", ""))
            for label, v in timing["executors"].items()]
    _print_table(["executor", "first round s", "mean round s", f"time vs {timing.get('baseline', '-')}", "error"],
                 rows, f"time per round (CNN, K=100, C=0.1, E={epochs}, B=10); same weights per arithmetic: "
                       f"{timing['same_weights']}")


def _print_table(headers, rows, title) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    table = Table(title=title, show_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h, no_wrap=True)
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


@click.command("fedavg")
@click.option("--executors", default="serial,process,openwhisk,ray", show_default=True,
              help="Executors to time side by side.")
@click.option("--timing-rounds", default=3, show_default=True,
              help="Rounds per executor for timing; 0 skips the timing.")
@click.option("--timing-epochs", default=5, show_default=True, help="E for the timing runs.")
@click.option("--max-rounds", default=50, show_default=True, help="Round budget for each rounds-to-target run.")
@click.option("--partitions", default="iid,shards", show_default=True)
@click.option("--target", default=0.99, show_default=True)
@click.option("--lr", default=0.05, show_default=True)
@click.option("--executor", "executor_name", type=click.Choice(["serial", "process"]), default="process",
              show_default=True, help="Executor for the rounds-to-target runs.")
@click.option("--workers", default=2, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--concurrency", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--skip-target", is_flag=True, help="Only time the executors.")
@click.option("--fedsgd-rounds", default=0, show_default=True,
              help="Round budget for the FedSGD baseline (E=1, B=inf) on each partition; 0 shows the paper's.")
@click.option("--fedsgd-lr", type=float, default=None, help="FedSGD learning rate [default: --lr].")
@click.option("--train-limit", type=int, default=None, help="First N training images (quick checks only).")
@click.option("--test-limit", type=int, default=None, help="First N test images (quick checks only).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
@_precision_option()
@_channels_last_option()
@_study_options
@click.pass_obj
def bench_command(obj, executors, timing_rounds, timing_epochs, max_rounds, partitions, target, lr, executor_name,
                  workers, threads, concurrency, seed, skip_target, fedsgd_rounds, fedsgd_lr, train_limit, test_limit,
                  json_path, checkpoint_root, fresh, precision, channels_last) -> None:
    """Time per round of each executor beside serial fp32, and rounds to 99% (CNN, C=0.1, E=5, B=10)."""
    import dataclasses

    from . import bench
    from . import precision as precisions
    from .run import RunConfig, load_data

    names = _choices(executors, "--executors", EXECUTORS)
    kinds = tuple(_choices(partitions, "--partitions", KINDS))
    if fedsgd_rounds < 0 or (fedsgd_lr is not None and fedsgd_lr <= 0) or (fedsgd_rounds and skip_target):
        raise click.BadParameter("--fedsgd-rounds needs a value >= 0, --fedsgd-lr > 0, and no --skip-target "
                                 "(FedSGD is compared with the rounds-to-target curves)")
    _set_threads(threads)
    base = RunConfig(model="cnn", clients=100, frac=0.1, epochs=5, batch_size=10, lr=lr, partition="iid",
                     rounds=max_rounds, target=target, seed=seed, train_limit=train_limit, test_limit=test_limit,
                     precision=precisions.resolve(precision), channels_last=channels_last)
    timing = dataclasses.replace(base, epochs=timing_epochs, rounds=timing_rounds, target=None)
    report: dict = {"paper_rounds_to_99": bench.PAPER_ROUNDS_TO_99, "arithmetic": precisions.describe()}
    try:
        data = load_data(train_limit, test_limit)
        if timing_rounds > 0:
            entries = _timing_entries(names, timing, data, report, workers=workers, threads=threads,
                                      concurrency=concurrency, obj=obj)
            with _progress(timing_rounds, "timing") as advance:
                report["executors"] = bench.time_executors(entries, data, on_round=advance)
            _write_json(json_path, report, quiet=True)
        if not skip_target:
            factory = executor_factory(executor_name, data, workers=workers, threads=threads,
                                       concurrency=concurrency, obj=obj)

            def partial(key: str) -> Callable[[dict], None]:
                return lambda result: _write_json(json_path, {**report, key: result}, quiet=True)

            root = _study_root(checkpoint_root, fresh)
            with _progress(max_rounds, "to target") as advance:
                report["rounds_to_target"] = bench.rounds_to_target(base, kinds, factory, data, max_rounds,
                                                                    on_round=advance,
                                                                    on_partition=partial("rounds_to_target"),
                                                                    checkpoint_root=root)
            if fedsgd_rounds:
                with _progress(fedsgd_rounds, "fedsgd") as advance:
                    report["fedsgd"] = bench.rounds_to_target(bench.fedsgd_config(base, fedsgd_lr), kinds, factory,
                                                              data, fedsgd_rounds, on_round=advance,
                                                              on_partition=partial("fedsgd"), checkpoint_root=root)
                report["fedsgd_vs_fedavg"] = bench.compare_to_fedsgd(report["rounds_to_target"]["partitions"],
                                                                     report["fedsgd"]["partitions"])
    except FedAvgError as exc:
        raise _fail(exc) from exc
    if "executors" in report:
        _print_timing(report["executors"], timing_epochs)
    if "rounds_to_target" in report:
        _print_table(["partition", "rounds to target", "paper FedAvg", "paper FedSGD", "verdict"],
                     [(k, v["rounds_to_target"] if v["rounds_to_target"] is not None else "-",
                       v["paper_fedavg_rounds"], v["paper_fedsgd_rounds"], v["verdict"])
                      for k, v in report["rounds_to_target"]["partitions"].items()],
                     f"rounds to {target:g} (CNN, C=0.1, E=5, B=10, lr={lr:g})")
    if "fedsgd_vs_fedavg" in report:
        _print_table(["partition", "accuracy", "FedSGD rounds", "FedAvg rounds", "speed-up", "paper speed-up at 99%"],
                     [(k, f"{v['accuracy_level']:.4f}", v["fedsgd_rounds"], v["fedavg_rounds"], f"{v['speedup']:.1f}x",
                       f"{v['paper_speedup_at_99']:.1f}x" if v["paper_speedup_at_99"] else "-")
                      for k, v in report["fedsgd_vs_fedavg"].items()],
                     f"FedSGD (E=1, B=inf, lr={report['fedsgd']['config']['lr']:g}, {fedsgd_rounds} rounds) "
                     "vs FedAvg at FedSGD's best")
    _write_json(json_path, report)
