"""PNG figures: labels held by each client, and test accuracy per round for each setting."""

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
