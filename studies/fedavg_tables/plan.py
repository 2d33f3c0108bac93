"""A table study from start to files: which cells, how long, where they go; its files rewritten after each cell."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from fedavg.run import Data, RunConfig, load_data

from .cells import run_table
from .outputs import write_outputs
from .spec import TableSpec, cell_budget


@dataclass(frozen=True)
class TablePlan:
    """What a table run needs once its options are checked: which cells, how long, and where the files go."""

    table: str
    spec: TableSpec
    kinds: list[str]
    probes: dict[str, int]
    budget: int | None  # None: each cell its own (spec.cell_budget)
    base: RunConfig
    lrs: list[float] | None
    out: Path

    def total_rounds(self) -> int:
        """The most rounds the continued runs can take (probes are their first rounds; losing probes come on top)."""
        return sum(
            max(self.probes[kind], self.budget or cell_budget(self.spec, row, kind))
            for kind in self.kinds
            for row in self.spec.rows
        )


def run_plan(
    plan: TablePlan,
    make_factory: Callable[[Data, str], Callable],
    checkpoint_root: Path,
    fresh: bool,
    progress: Callable[[int, str], AbstractContextManager],
    executor_info: dict,
) -> tuple[dict, list[Path]]:
    """Runs every cell, rewriting the table's files after each one: (the report, the files written).

    make_factory(data, run_id) gives the executors; progress(total rounds, description) is a
    context that gives advance(label, round record).
    """
    data = load_data(plan.base.train_limit, plan.base.test_limit)
    factory = make_factory(data, f"table{plan.table}-{plan.base.run_id()}")
    with _checkpoints(checkpoint_root, fresh) as root, progress(plan.total_rounds(), f"table {plan.table}") as advance:
        report = run_table(
            plan.spec,
            plan.base,
            plan.kinds,
            factory,
            data,
            probe_rounds=plan.probes,
            max_rounds=plan.budget,
            lrs=plan.lrs,
            checkpoint_root=root,
            on_round=advance,
            on_cell=lambda partial: write_outputs(partial, plan.out),
            executor_info=executor_info,
        )
    return report, write_outputs(report, plan.out)


@contextmanager
def _checkpoints(root: Path, fresh: bool) -> Iterator[Path]:
    """Fresh keeps no checkpoints, but the winning lr still continues its probe: from a temporary folder."""
    if not fresh:
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="fedavg-table-") as tmp:
        yield Path(tmp)
