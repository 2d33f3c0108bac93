"""`deployer fedavg compare`: whether runs that differ only in seed and arithmetic train alike."""

from __future__ import annotations

from pathlib import Path

import click

from .fedavg_options import checkpoint_root
from .output import show, write_report
from .params import OutputFile, floats, integer


def _resolve(text: str) -> Path:
    """A report or checkpoint path as given, else a run id under the checkpoint root."""
    path = Path(text)
    try:
        if path.exists() or path.is_absolute() or len(path.parts) > 1:
            return path
        by_id = checkpoint_root() / text
        return by_id if by_id.exists() else path
    except OSError:  # a name the file system cannot hold; load_report says so
        return path


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "--thresholds",
    type=floats(0.0, 1.0, low_open=True, example="0.98,0.99"),
    default="0.95,0.97,0.98,0.985,0.988,0.99",
    show_default=True,
    help="Test accuracies whose first round each run reports.",
)
@click.option(
    "--from-round",
    type=integer(1, 100_000),
    default=1,
    show_default=True,
    help="Per-round differences start here (e.g. past the climb, to look at the plateau only).",
)
@click.option("--json", "json_path", type=OutputFile(), help="Write the comparison here.")
@click.option("--plot", "plot_path", type=OutputFile(), help="Accuracy per round PNG, a line per run.")
def compare_command(runs, thresholds, from_round, json_path, plot_path) -> None:
    """Runs of one configuration by arithmetic and seed: rounds to each threshold, and per-round differences.

    RUNS are `fedavg run --json` reports, checkpoint directories or run ids under
    ~/.local/share/deployer/fedavg. Runs with the same seed draw the same clients every round,
    so they are paired: the mean per-round accuracy difference of a pair is what the arithmetic
    changed, while rounds-to-threshold also carries the seed-to-seed spread shown per arithmetic.
    """
    from studies.fedavg_compare import compare, load_report
    from studies.fedavg_views import compare_view, plot_compare

    named = [(text, load_report(_resolve(text))) for text in runs]
    report = compare(named, tuple(sorted(thresholds)), from_round)
    show(compare_view(report))
    if plot_path:
        plot_compare(report, Path(plot_path))
        click.echo(f"wrote {plot_path}", err=True)
    write_report(json_path, report)
