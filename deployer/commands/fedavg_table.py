"""`deployer fedavg table 1|2`: the FedAvg paper's tables, ours beside the paper's, continued across runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fedavg.partition import KINDS

from .fedavg_options import (
    CLIENTS,
    ROUNDS,
    TEST_LIMIT,
    TRAIN_LIMIT,
    ExecutorChoice,
    channels_last_option,
    executor_options,
    pixels_option,
    precision_option,
    rounds_progress,
    study_options,
    study_root,
)
from .output import show
from .params import SEED, CommaList, OutputFolder, choices, floats, integer, parse

if TYPE_CHECKING:
    from studies.fedavg_tables.plan import TablePlan

BATCHES = CommaList(integer(1, 60_000), "inf,10", keywords={"inf": None})


def _probe_rounds(text: str, kinds: list[str]) -> dict[str, int]:
    """'N' for every partition, or 'iid=3,shards=6'; every partition asked for needs a value."""
    out: dict[str, int] = {}
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            kind, _, n = part.rpartition("=")
            if kind and kind not in KINDS:
                raise ValueError(kind)
            for k in [kind] if kind else kinds:
                out[k] = int(n)
    except ValueError as exc:
        raise click.BadParameter(
            f"takes N or PARTITION=N pairs like iid=3,shards=6, got {text[:80]!r}", param_hint="'--probe-rounds'"
        ) from exc
    missing = [k for k in kinds if k not in out]
    if missing or any(n < 1 for n in out.values()):
        raise click.BadParameter(
            f"needs a positive count for {', '.join(kinds)}, got {text[:80]!r}", param_hint="'--probe-rounds'"
        )
    return {k: out[k] for k in kinds}


def _table_spec(tables, number: str, model: str | None, rows: str | None, batches):
    """The TableSpec the options ask for (Table 2 is the CNN's; Table 1 defaults to the 2NN)."""
    if number == "2":
        if model not in (None, "cnn") or batches is not None:
            raise click.BadParameter(
                "table 2 is the CNN's rows at C=0.1: it takes no --model 2nn and no --batches (pick rows with --rows)",
                param_hint="'--model' / '--batches'",
            )
        return tables.table2_spec(
            parse(choices(tables.table2_row_keys()), rows, "--rows") if rows else tables.TABLE2_DEFAULT_ROWS
        )
    fracs = parse(floats(0.0, 1.0, example="0.1,0.5"), rows, "--rows") if rows else tables.TABLE1_FRACS
    return tables.table1_spec(model or "2nn", fracs, batches if batches else (None, 10))


@click.command("table")
@click.argument("table", type=click.Choice(["1", "2"]))
@click.option(
    "--model",
    type=click.Choice(["2nn", "cnn"]),
    default=None,
    help="Table 1 only: 2nn (E=1, to 97%) [default], or cnn (E=5, to 99%; at C=1.0 each round trains "
    "100 clients x 5 epochs, days on 2 cores). Table 2 is the CNN's.",
)
@click.option("--partitions", default="iid,shards", show_default=True, help="iid and/or shards (non-IID).")
@click.option(
    "--rows",
    default=None,
    help="Table 2: row keys [default: fedsgd,e1-b10,e5-b10; also e5-binf, e1-b50, e20-binf, e5-b50, "
    "e20-b50, e20-b10]. Table 1: C values [default: 0.0,0.1,0.2,0.5,1.0; 0.0 = one client a round].",
)
@click.option("--batches", type=BATCHES, default=None, help="Table 1 only: the B columns [default: inf,10].")
@click.option(
    "--lrs",
    type=floats(0.0, 10.0, low_open=True, example="0.1,0.215"),
    default=None,
    help="Learning rates to probe in every row [default: 0.0215,0.0464,0.1,0.215; rows with B=inf 0.1,0.215,0.464,1].",
)
@click.option(
    "--probe-rounds",
    default="iid=3,shards=6",
    show_default=True,
    help="Rounds each lr runs before the best is kept: N, or PARTITION=N pairs.",
)
@click.option(
    "--max-rounds",
    type=ROUNDS,
    default=None,
    help="Round budget of every cell, probe included [default: each cell the paper's rounds by half again; "
    "for the paper's '—' cells half again the most any C needed].",
)
@click.option(
    "--clients",
    "num_clients",
    default=100,
    show_default=True,
    type=CLIENTS,
    help="K; the paper's is 100 (fewer only for quick checks).",
)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--train-limit", type=TRAIN_LIMIT, default=None, help="First N training images (quick checks only).")
@click.option("--test-limit", type=TEST_LIMIT, default=None, help="First N test images (quick checks only).")
@click.option(
    "--out",
    "out_dir",
    type=OutputFolder(),
    default=None,
    help="Where tableN.md, tableN.json and tableN.png go [default: out/fedavg-tableN].",
)
@precision_option()
@channels_last_option()
@pixels_option()
@executor_options
@study_options
@click.pass_obj
def table_command(obj, table, checkpoint_root, fresh, **options) -> None:
    """The FedAvg paper's Table 1 (client fraction C) or Table 2 (FedSGD vs FedAvg), ours beside the paper's.

    Each cell probes a few learning rates for a few rounds and continues the best to the
    target or to the paper's rounds by half again; every run is checkpointed, so running the
    same command again continues where it stopped. The table is rewritten after every finished cell.
    """
    from studies.fedavg_tables import markdown, plan

    choice = ExecutorChoice.take(options)
    table_plan = _plan(table, **options)
    choice.set_threads()
    report, paths = plan.run_plan(
        table_plan,
        lambda data, run_id: choice.factory(data, obj, run_id),
        study_root(checkpoint_root, False),
        fresh,
        rounds_progress,
        {"name": choice.name, "workers": choice.workers, "threads": choice.threads},
    )
    show(markdown.console_view(report))
    click.echo(f"rounds run now: {report['rounds_run_now']}", err=True)
    for path in paths:
        click.echo(f"wrote {path}", err=True)


def _plan(
    table,
    model,
    partitions,
    rows,
    batches,
    lrs,
    probe_rounds,
    max_rounds,
    num_clients,
    seed,
    train_limit,
    test_limit,
    out_dir,
    precision,
    channels_last,
    pixels,
) -> TablePlan:
    """Checks the options and turns them into a TablePlan (click.BadParameter for one out of range)."""
    from fedavg import run as runner
    from mlcore import compute
    from studies.fedavg_tables import paper
    from studies.fedavg_tables import spec as tables
    from studies.fedavg_tables.plan import TablePlan

    kinds = list(parse(choices(paper.PARTITIONS), partitions, "--partitions"))
    spec = _table_spec(tables, table, model, rows, batches)
    probes = _probe_rounds(probe_rounds, kinds)
    budget = max_rounds
    if budget is not None and budget < max(probes.values()):
        raise click.BadParameter(
            f"{max(probes.values())} probe rounds do not fit in --max-rounds ({budget})",
            param_hint="'--probe-rounds' / '--max-rounds'",
        )
    base = runner.RunConfig(
        model=spec.model,
        clients=num_clients,
        seed=seed,
        target=spec.target,
        train_limit=train_limit,
        test_limit=test_limit,
        precision=compute.resolve_precision(precision),
        channels_last=channels_last,
        pixels=pixels,
    )
    out = Path(out_dir or f"out/fedavg-table{table}")
    return TablePlan(table, spec, kinds, probes, budget, base, list(lrs) if lrs else None, out)
