"""`deployer fedavg run|sweep|table|compare|partition`: FedAvg on MNIST from the command line.

The algorithm, partitions and executors are the `fedavg` library; these commands parse
options, show progress and tables, and write the reports.
"""

from __future__ import annotations

from pathlib import Path

import click

from fedavg.partition import KINDS

from .fedavg_compare import compare_command
from .fedavg_options import (
    ALPHA,
    CLIENTS,
    SHARDS,
    TRAIN_LIMIT,
    ExecutorChoice,
    config_options,
    default_checkpoint_dir,
    executor_options,
    make_config,
    rounds_progress,
    study_options,
    study_root,
    sweep_config_options,
)
from .fedavg_table import table_command
from .output import show, write_report
from .params import SEED, OutputFile, OutputFolder, choices, ints


@click.group("fedavg")
def fedavg_group() -> None:
    """Federated averaging on MNIST: runs, client-count sweeps, the paper's tables, comparisons, partitions."""


fedavg_group.add_command(table_command)
fedavg_group.add_command(compare_command)


@fedavg_group.command("run")
@config_options
@executor_options
@click.option(
    "--checkpoint-dir",
    type=OutputFolder(),
    default=None,
    help="Where each round is checkpointed [default: ~/.local/share/deployer/fedavg/<run id>].",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint of the same configuration.")
@click.option("--keep-going", is_flag=True, help="Do not stop when --target is reached.")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.pass_obj
def run_command(obj, checkpoint_dir, resume, keep_going, json_path, **options) -> None:
    """Run FedAvg round by round, evaluating on the MNIST test set after each round."""
    from fedavg import run as runner

    choice = ExecutorChoice.take(options)
    config = make_config(**options)
    choice.set_threads()
    checkpoint = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(config.run_id())
    data = runner.load_data(config.train_limit, config.test_limit)
    factory = choice.factory(data, obj, config.run_id())
    with factory() as executor, rounds_progress(config.rounds, f"fedavg {choice.name}") as advance:
        report, _ = runner.run(
            config,
            executor,
            data,
            checkpoint_dir=checkpoint,
            resume=resume,
            stop_at_target=not keep_going,
            on_round=lambda r: advance("", r),
            log=lambda line: click.echo(f"warning: {line}", err=True),
        )
    report["checkpoint_dir"] = str(checkpoint)
    reached = report["rounds_to_target"]
    click.echo(
        f"rounds {report['rounds_done']}  final acc {report['final_acc']:.4f}  best {report['best_acc']:.4f}"
        f"  {report['mean_round_s']:.2f} s/round  failed clients {report['failed_clients']}"
    )
    if config.target is not None:
        click.echo(
            f"target {config.target:g}: "
            + (
                f"reached in {reached} rounds"
                if reached is not None
                else f"not reached within {report['rounds_done']} rounds"
            )
        )
    write_report(json_path, report)


@fedavg_group.command("sweep")
@sweep_config_options
@executor_options
@click.option(
    "--clients",
    "clients_list",
    type=ints(1, 10_000, example="10,20,50"),
    default="10,20,50,100",
    show_default=True,
    help="Comma-separated K values.",
)
@click.option(
    "--partition",
    "partition_list",
    type=choices(KINDS),
    default="iid,shards",
    show_default=True,
    help="Comma-separated partitions.",
)
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.option("--plot", "plot_path", type=OutputFile(), help="Accuracy vs round PNG.")
@study_options
@click.pass_obj
def sweep_command(obj, clients_list, partition_list, json_path, plot_path, checkpoint_root, fresh, **options) -> None:
    """The effect of the number of clients (and of non-IID data) on accuracy per round."""
    from fedavg import run as runner
    from studies.fedavg_sweep import sweep
    from studies.fedavg_views import plot_sweep, sweep_view

    choice = ExecutorChoice.take(options)
    ks, kinds = list(clients_list), list(partition_list)
    base = make_config(num_clients=ks[0], partition_kind=kinds[0], **options)
    choice.set_threads()
    data = runner.load_data(base.train_limit, base.test_limit)
    factory = choice.factory(data, obj, f"sweep-{base.run_id()}")
    with rounds_progress(base.rounds, "sweep") as advance:
        report = sweep(
            base,
            ks,
            kinds,
            factory,
            data,
            on_round=advance,
            checkpoint_root=study_root(checkpoint_root, fresh),
            on_setting=lambda partial: write_report(json_path, partial, quiet=True),
        )
    show(sweep_view(report))
    if plot_path:
        plot_sweep(report, Path(plot_path))
        click.echo(f"wrote {plot_path}", err=True)
    write_report(json_path, report)


@fedavg_group.command("partition")
@click.option("--clients", "num_clients", default=100, show_default=True, type=CLIENTS)
@click.option("--partition", "partition_kind", type=click.Choice(list(KINDS)), default="shards", show_default=True)
@click.option("--alpha", **ALPHA)
@click.option("--shards-per-client", **SHARDS)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--train-limit", type=TRAIN_LIMIT, default=None)
@click.option("--json", "json_path", type=OutputFile())
@click.option("--plot", "plot_path", type=OutputFile(), help="Labels per client PNG.")
def partition_command(
    num_clients, partition_kind, alpha, shards_per_client, seed, train_limit, json_path, plot_path
) -> None:
    """Show how the training set is split: examples and labels per client."""
    from fedavg import partition as partitions
    from fedavg.run import load_data
    from studies.figures import plot_label_counts

    labels = load_data(train_limit, 0).train_labels.numpy()
    parts = partitions.make_partition(
        partition_kind, labels, num_clients, seed, alpha=alpha, shards_per_client=shards_per_client
    )
    summary = partitions.summary(parts, labels)
    e, lab = summary["examples_per_client"], summary["labels_per_client"]
    click.echo(
        f"{partition_kind}: {summary['clients']} clients, {summary['examples']} examples; per client "
        f"examples {e['min']}..{e['max']} (mean {e['mean']:.1f}), labels {lab['min']}..{lab['max']} "
        f"(mean {lab['mean']:.2f})"
    )
    if plot_path:
        title = f"{partition_kind} K={num_clients}" + (f" alpha={alpha:g}" if partition_kind == "dirichlet" else "")
        plot_label_counts(summary["label_counts"], Path(plot_path), title=title)
        click.echo(f"wrote {plot_path}", err=True)
    write_report(json_path, {"partition": partition_kind, "seed": seed, "alpha": alpha, **summary})
