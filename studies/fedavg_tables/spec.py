"""Which cells a table has: its rows (E, B, C and the paper's rounds), learning-rate grids and round budgets."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import SpecError
from .paper import PAPER_TABLE1, PAPER_TABLE2_CNN, PARTITIONS, TABLE1_FRACS, TABLE1_MODELS, batch_text, frac_text

TABLE2_DEFAULT_ROWS = ("fedsgd", "e1-b10", "e5-b10")
DEFAULT_MAX_ROUNDS = {(2, "cnn"): 1000, (1, "2nn"): 3000, (1, "cnn"): 1000}
BUDGET_FACTOR = 1.5
DEFAULT_PROBE_ROUNDS = {"iid": 3, "shards": 6}

# 10^(k/3): the paper's coarser grid resolution, four steps each.
MINIBATCH_LRS = tuple(round(10 ** (k / 3), 4) for k in (-5, -4, -3, -2))  # 0.0215 .. 0.215
FULL_BATCH_LRS = tuple(round(10 ** (k / 3), 4) for k in (-3, -2, -1, 0))  # 0.1 .. 1.0


@dataclass(frozen=True)
class Row:
    """One line of a table: the local work (E, B) and client fraction C, with the paper's rounds."""

    key: str
    label: str
    epochs: int
    batch_size: int | None
    frac: float
    paper: Mapping[str, int | None]

    def lrs(self) -> tuple[float, ...]:
        """The grid to probe: one step of B=inf is a whole local set, which takes larger rates."""
        return FULL_BATCH_LRS if self.batch_size is None else MINIBATCH_LRS


@dataclass(frozen=True)
class TableSpec:
    number: int
    model: str
    target: float
    rows: tuple[Row, ...]
    title: str


def table2_row_keys() -> list[str]:
    return ["fedsgd" if eb == (1, None) else f"e{eb[0]}-b{batch_text(eb[1])}" for eb in PAPER_TABLE2_CNN]


def table2_spec(keys: Sequence[str] = TABLE2_DEFAULT_ROWS) -> TableSpec:
    """Table 2's rows by key ('fedsgd', 'e5-b10', ...); the paper's headline rows by default.

    Raises:
        SpecError: a key that is not a row of the paper's Table 2.
    """
    by_key = dict(zip(table2_row_keys(), PAPER_TABLE2_CNN.items()))
    unknown = [k for k in keys if k not in by_key]
    if unknown or not keys:
        raise SpecError(f"table 2 has rows {', '.join(by_key)}; got {', '.join(unknown) or 'none'}")
    rows = []
    for key in keys:
        (epochs, batch), paper = by_key[key]
        label = "FedSGD (E=1, B=inf)" if key == "fedsgd" else f"FedAvg E={epochs}, B={batch_text(batch)}"
        rows.append(Row(key, label, epochs, batch, 0.1, dict(paper)))
    return TableSpec(2, "cnn", 0.99, tuple(rows), "Table 2: MNIST CNN, rounds to 99% test accuracy, C=0.1")


def table1_spec(
    model: str = "2nn", fracs: Sequence[float] = TABLE1_FRACS, batches: Sequence[int | None] = (None, 10)
) -> TableSpec:
    """Table 1's rows: every (C, B) pair; C=0.0 is one client per round.

    Raises:
        SpecError: a model the paper's Table 1 does not have, or C outside [0, 1].
    """
    if model not in TABLE1_MODELS:
        raise SpecError(f"table 1 is for {' and '.join(TABLE1_MODELS)}, got {model!r}")
    if not fracs or not batches or any(not 0 <= c <= 1 for c in fracs):
        raise SpecError(f"table 1 needs C values in [0, 1] and at least one B, got {fracs} and {batches}")
    epochs, target = TABLE1_MODELS[model]["epochs"], TABLE1_MODELS[model]["target"]
    rows = []
    for batch in batches:
        for c in fracs:
            paper = {kind: PAPER_TABLE1[model].get(batch, {}).get(kind, {}).get(c) for kind in PARTITIONS}
            rows.append(
                Row(
                    f"c{frac_text(c)}-b{batch_text(batch)}",
                    f"C={frac_text(c)}, B={batch_text(batch)}",
                    epochs,
                    batch,
                    c,
                    paper,
                )
            )
    title = f"Table 1: MNIST {model.upper()}, E={epochs}, rounds to {target:.0%} test accuracy by client fraction C"
    return TableSpec(1, model, target, tuple(rows), title)


def paper_cell_known(spec: TableSpec, row: Row) -> bool:
    """Whether the paper has this (C, B) at all; a None inside it is the paper's 'not reached'."""
    if spec.number == 2:
        return True
    return row.frac in TABLE1_FRACS and row.batch_size in PAPER_TABLE1[spec.model]


def cell_budget(spec: TableSpec, row: Row, partition: str) -> int:
    """Rounds a cell may run: the paper's by half again, so "not reached" means clearly slower than the paper.

    A cell the paper marks "—" gets half again the most rounds any C of its (model, B,
    partition) needed; a setting the paper does not have gets the table's default budget.
    """
    paper = row.paper.get(partition)
    if paper is None and spec.number == 1 and paper_cell_known(spec, row):
        reached = [n for n in PAPER_TABLE1[spec.model][row.batch_size][partition].values() if n is not None]
        paper = max(reached, default=None)
    if paper is None:
        return DEFAULT_MAX_ROUNDS[(spec.number, spec.model)]
    return math.ceil(BUDGET_FACTOR * paper)
