"""The console's and the results page's view of FedAvg's studies: `bench fedavg`, `fedavg sweep`, `fedavg compare`.

Each view reads the JSON report alone (the titles too), so a report on disk renders as it did
when it was written.
"""

from __future__ import annotations

from pathlib import Path

from .tabular import Block, Table


def executors_view(report: dict) -> list[Block]:
    """`bench fedavg`: time per round beside serial fp32, rounds to target beside the paper, FedSGD's speed-up."""
    out: list[Block] = []
    if "executors" in report:
        out.append(_timing_table(report["executors"]))
    if "rounds_to_target" in report:
        config = report["rounds_to_target"]["config"]
        out.append(
            Table.of(
                f"rounds to {config['target']:g} (CNN, C=0.1, E=5, B=10, lr={config['lr']:g})",
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
            )
        )
    if "fedsgd_vs_fedavg" in report:
        fedsgd = report["fedsgd"]["config"]
        out.append(
            Table.of(
                f"FedSGD (E=1, B=inf, lr={fedsgd['lr']:g}, {fedsgd['rounds']} rounds) vs FedAvg at FedSGD's best",
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
            )
        )
    return out


def _timing_table(timing: dict) -> Table:
    ratios = timing.get("ratio_to_baseline", {})
    epochs = next((v["config"]["epochs"] for v in timing["executors"].values() if "config" in v), "?")
    return Table.of(
        f"time per round (CNN, K=100, C=0.1, E={epochs}, B=10); same weights per arithmetic: {timing['same_weights']}",
        ["executor", "first round s", "mean round s", f"time vs {timing.get('baseline', '-')}", "error"],
        [
            (
                label,
                f"{v.get('first_round_s') or 0:.2f}",
                f"{v.get('mean_round_s') or 0:.2f}",
                f"{ratios[label]:.2f}x" if label in ratios else "-",
                v.get("error", ""),
            )
            for label, v in timing["executors"].items()
        ],
    )


def sweep_view(report: dict) -> list[Block]:
    """`fedavg sweep`: one row per (partition, K) setting."""
    return [
        Table.of(
            "fedavg sweep",
            ["setting", "m/round", "final acc", "best acc", "rounds to target", "s/round"],
            [
                (
                    s["label"],
                    s["clients_per_round"],
                    f"{s['final_acc']:.4f}",
                    f"{s['best_acc']:.4f}",
                    s["rounds_to_target"] if s["rounds_to_target"] is not None else "-",
                    f"{s['mean_round_s']:.2f}",
                )
                for s in report["settings"]
            ],
        )
    ]


def plot_sweep(report: dict, path: Path) -> Path:
    """Accuracy per round, a line per setting, titled with the settings they share."""
    from .figures import plot_curves

    c = report["config"]
    return plot_curves(
        {s["label"]: s["accuracy"] for s in report["settings"]},
        path,
        title=f"FedAvg {c['model']}, C={c['frac']}, E={c['epochs']}, B={c['batch_size'] or 'inf'}",
        target=c["target"],
    )


def compare_view(report: dict) -> list[Block]:
    """`fedavg compare`: first rounds per run and per arithmetic, same-seed pairs, a line per two arithmetics."""
    ts = [str(t) for t in report["thresholds"]]
    heads = [f"{float(t) * 100:g}%" for t in ts]
    out: list[Block] = [
        Table.of(
            "first round at each accuracy",
            ["arithmetic", "seed", "rounds run", "best acc", *heads],
            [
                (
                    r["arithmetic"],
                    r["seed"],
                    r["rounds_run"],
                    f"{r['best_acc']:.4f}",
                    *map(_rounds, r["reached"].values()),
                )
                for r in report["runs"]
            ],
        ),
        Table.of(
            "over seeds: mean (min-max)",
            ["arithmetic", "seeds", *heads],
            [
                (g["arithmetic"], len(g["seeds"]), *(_group_cell(g["reached"][t]) for t in ts))
                for g in report["arithmetics"]
            ],
        ),
    ]
    if report["pairs"]:
        out.append(
            Table.of(
                "same seed, two arithmetics: accuracy difference per round (points of %) and in rounds",
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
            )
        )
    return out + [_summary_line(s) for s in report["summary"]]


def plot_compare(report: dict, path: Path) -> Path:
    """Accuracy per round, a line per run, cut to the band between the lowest and highest threshold."""
    from .figures import plot_curves

    return plot_curves(
        {f"{r['arithmetic']}, seed {r['seed']}": r["accuracy"] for r in report["runs"]},
        path,
        title="test accuracy by arithmetic and seed",
        target=max(report["thresholds"]),
        floor=min(report["thresholds"]),
    )


def _summary_line(s: dict) -> str:
    if not s["seeds"]:
        return f"{s['b']} - {s['a']}: no seed ran both"
    by_t = ", ".join(
        f"{float(t) * 100:g}% {c['mean']:+.1f} ({c['pairs']})"
        for t, c in s["rounds_b_minus_a"].items()
        if c["mean"] is not None
    )
    return (
        f"{s['b']} - {s['a']} over {len(s['seeds'])} seed(s): accuracy {s['acc_b_minus_a'] * 100:+.3f} points "
        f"a round; rounds to {by_t or 'no threshold reached by both'}"
    )


def _rounds(n) -> str:
    return "-" if n is None else str(n)


def _signed(n) -> str:
    return "-" if n is None else f"{n:+d}"


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
