"""PNGs of `bench scale` and of the cluster model: one log-log figure per curve, its growth in the title."""

from __future__ import annotations

from pathlib import Path

from .figures import _pyplot, _save

_X_LABELS = {
    "activations": "activation records",
    "objects": "objects in the bucket",
    "invokes": "concurrent blocking invokes",
    "actions": "actions in the namespace",
    "object_sizes": "object size (bytes)",
}


def _value(point: dict, key: str):
    v = point.get(key)
    return v["p50_ms"] if isinstance(v, dict) and "p50_ms" in v else v


def _loglog(path: Path, title: str, xlabel: str, lines: dict[str, tuple[list, list]], ylabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, (xs, ys) in lines.items():
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if isinstance(y, int | float) and y > 0]
        if pairs:
            ax.plot(*zip(*pairs, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, plt, path)


def write_figures(report: dict, folder: Path) -> list[Path]:
    """A PNG per curve of the report, named <section>-<measure>.png."""
    written = []
    for section, xlabel in _X_LABELS.items():
        if section not in report:
            continue
        points = report[section]["points"]
        for name, curve in report[section]["curves"].items():
            if "growth" not in curve:
                continue
            key = name.removesuffix("_p50_ms")
            ylabel = "p50 ms" if name.endswith("_p50_ms") else key
            xs = [p["n"] for p in points]
            title = f"{section}: {key} ({curve['growth']}, exponent {curve['exponent']})"
            written.append(
                _loglog(
                    folder / f"{section}-{key}.png",
                    title,
                    xlabel,
                    {key: (xs, [_value(p, key) for p in points])},
                    ylabel,
                )
            )
    for executor, part in report.get("fedavg", {}).get("executors", {}).items():
        points = [p for p in part.get("points", []) if "error" not in p]
        for key in ("s_per_round", "s_per_client_update", "parent_peak_rss_kb", "worker_peak_rss_kb"):
            lines = {
                f"m={m}": ([p["k"] for p in points if p["m"] == m], [p.get(key) for p in points if p["m"] == m])
                for m in sorted({p["m"] for p in points})
            }
            written.append(
                _loglog(folder / f"fedavg-{executor}-{key}.png", f"FedAvg {executor}: {key}", "clients K", lines, key)
            )
    return written


def write_model_figure(predictions: dict, path: Path) -> Path:
    """Predicted seconds per round against machines, one line per topology."""
    lines = {
        name: ([p["n"] for p in curve], [p["round_s"] for p in curve]) for name, curve in predictions["curves"].items()
    }
    return _loglog(path, "cluster model: predicted time per round", "workers = machines", lines, "s per round")
