"""`deployer fedavg compare`: whether runs that differ only in seed and arithmetic train alike."""

from __future__ import annotations

from pathlib import Path

import click

from fedavg.errors import FedAvgError

from .fedavg_options import checkpoint_root, fail
from .output import table, write_report
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


def _rounds(n) -> str:
    return "-" if n is None else str(n)


def _signed(n) -> str:
    return "-" if n is None else f"{n:+d}"


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

    try:
        named = [(text, load_report(_resolve(text))) for text in runs]
        report = compare(named, tuple(sorted(thresholds)), from_round)
    except FedAvgError as exc:
        raise fail(exc) from exc
    _print(report)
    if plot_path:
        from studies.figures import plot_curves

        plot_curves(
            {f"{r['arithmetic']}, seed {r['seed']}": r["accuracy"] for r in report["runs"]},
            Path(plot_path),
            title="test accuracy by arithmetic and seed",
            target=max(report["thresholds"]),
            floor=min(report["thresholds"]),
        )
        click.echo(f"wrote {plot_path}", err=True)
    write_report(json_path, report)


def _print(report: dict) -> None:
    ts = [str(t) for t in report["thresholds"]]
    heads = [f"{float(t) * 100:g}%" for t in ts]
    table(
        ["arithmetic", "seed", "rounds run", "best acc", *heads],
        [
            (r["arithmetic"], r["seed"], r["rounds_run"], f"{r['best_acc']:.4f}", *map(_rounds, r["reached"].values()))
            for r in report["runs"]
        ],
        "first round at each accuracy",
    )
    table(
        ["arithmetic", "seeds", *heads],
        [
            (g["arithmetic"], len(g["seeds"]), *(_group_cell(g["reached"][t]) for t in ts))
            for g in report["arithmetics"]
        ],
        "over seeds: mean (min-max)",
    )
    if report["pairs"]:
        table(
            ["seed", "b - a", "rounds", "acc mean", "acc sd", "acc max |d|", *heads],
            [
                (
                    p["seed"],
                    f"{p['b']} - {p['a']}",
                    "-" if p["rounds_compared"] is None else "{}-{}".format(*p["rounds_compared"]),
                    *_acc_cells(p["acc_b_minus_a"]),
                    *(_signed(p["rounds_b_minus_a"][t]) for t in ts),
                )
                for p in report["pairs"]
            ],
            "same seed, two arithmetics: accuracy difference per round (points of %) and in rounds",
        )
    for s in report["summary"]:
        if not s["seeds"]:
            click.echo(f"{s['b']} - {s['a']}: no seed ran both")
            continue
        by_t = ", ".join(
            f"{float(t) * 100:g}% {c['mean']:+.1f} ({c['pairs']})"
            for t, c in s["rounds_b_minus_a"].items()
            if c["mean"] is not None
        )
        click.echo(
            f"{s['b']} - {s['a']} over {len(s['seeds'])} seed(s): accuracy {s['acc_b_minus_a'] * 100:+.3f} points "
            f"a round; rounds to {by_t or 'no threshold reached by both'}"
        )


def _group_cell(cell: dict) -> str:
    if cell["mean"] is None:
        return f"{cell['reached']} of {cell['runs']}"
    if cell["runs"] == 1:
        return f"{cell['mean']:g}"
    return f"{cell['mean']:.1f} ({cell['min']}-{cell['max']})"


def _acc_cells(spread: dict | None) -> tuple:
    if spread is None:
        return ("-", "-", "-")
    return (f"{spread['mean'] * 100:+.3f}", f"{spread['sd'] * 100:.3f}", f"{spread['max_abs'] * 100:.3f}")
