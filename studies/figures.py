"""PNG figures: labels held by each client, accuracy per round for each setting, and grids of panels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_label_counts(counts: np.ndarray, path: Path, title: str = "labels per client") -> Path:
    """One stacked bar per client, one colour per digit."""
    plt = _pyplot()
    counts = np.asarray(counts)
    clients, classes = counts.shape
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.12 * clients + 2, 24.0)), 4.0))
    bottom = np.zeros(clients)
    colours = plt.get_cmap("tab10")
    for label in range(classes):
        ax.bar(
            np.arange(clients), counts[:, label], bottom=bottom, width=0.9, color=colours(label % 10), label=str(label)
        )
        bottom += counts[:, label]
    ax.set_xlabel("client")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(title="digit", ncol=2, fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: Path,
    title: str = "test accuracy",
    target: float | None = None,
    floor: float | None = None,
) -> Path:
    """Accuracy after each round, one line per setting; `floor` cuts off the climb to show the plateau."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    for label, accs in curves.items():
        ax.plot(np.arange(1, len(accs) + 1), accs, label=label, linewidth=1.5 if floor is None else 1.0)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    if floor is not None:
        ax.set_ylim(floor, 1.0)
    ax.set_xlabel("communication round")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_panels(
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    hlines: Sequence[float] = (),
    floor: float | None = None,
    columns: int = 2,
) -> Path:
    """Line plots on a grid, one panel per key; a label keeps its colour in every panel, `baseline...` is black."""
    plt = _pyplot()
    fig, axes = _grid(plt, len(panels), columns)
    colours = _colours(plt, [label for lines in panels.values() for label in lines])
    for ax, (name, lines) in zip(axes, panels.items()):
        for label, points in lines.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, "-o", markersize=3, label=label, **colours[label])
        for y in hlines:
            ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
        if floor is not None:
            ax.set_ylim(floor, 1.0)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    return _finish(fig, plt, axes, len(panels), title, path)


def plot_points(
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, str]]]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    columns: int = 2,
) -> Path:
    """Scatter plots on a grid, one panel per key: each label a series of (x, y, note) points, the note beside each."""
    plt = _pyplot()
    fig, axes = _grid(plt, len(panels), columns)
    labels = list(dict.fromkeys(label for series in panels.values() for label in series))
    colours = _colours(plt, labels)
    markers = "osD^v<>ph"
    for ax, (name, series) in zip(axes, panels.items()):
        for label, points in series.items():
            if not points:
                continue
            xs, ys, notes = zip(*points)
            marker = "*" if label.startswith("baseline") else markers[labels.index(label) % len(markers)]
            ax.scatter(xs, ys, marker=marker, s=60 if marker == "*" else 30, label=label, color=colours[label]["color"])
            for x, y, note in points:
                ax.annotate(note, (x, y), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    return _finish(fig, plt, axes, len(panels), title, path)


def _grid(plt, count: int, columns: int):
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    return fig, list(axes.flat)


def _colours(plt, labels: Sequence[str]) -> dict[str, dict]:
    palette = plt.get_cmap("tab10")
    out: dict[str, dict] = {}
    for label in dict.fromkeys(labels):
        if label.startswith("baseline"):
            out[label] = {"color": "black", "linewidth": 2}
        else:
            out[label] = {"color": palette(sum(1 for k in out if not k.startswith("baseline")) % 10), "linewidth": 1.3}
    return out


def _finish(fig, plt, axes, used: int, title: str, path: Path) -> Path:
    for ax in axes[used:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)
