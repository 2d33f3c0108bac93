"""A table's files on disk: JSON, markdown and PNG, with the cells earlier pieces of the same study wrote."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from fedavg.run import RunConfig

from .markdown import markdown, plot_table
from .paper import PARTITIONS
from .spec import table2_row_keys


def _write_text(path: Path, text: str) -> None:
    """Write-then-rename, so a study stopped mid-write keeps the previous complete file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# RunConfig fields a table sets per cell; the rest say which study a cell belongs to.
CELL_FIELDS = ("epochs", "batch_size", "frac", "partition", "lr", "rounds")


def _study(report: dict) -> tuple:
    """A field added to RunConfig since an earlier report was written takes its default there, so
    the study it belongs to is still the same one."""
    defaults = dataclasses.asdict(RunConfig())
    config = {k: v for k, v in {**defaults, **report["config"]}.items() if k not in CELL_FIELDS}
    return report["table"], report["model"], report["target"], json.dumps(config, sort_keys=True)


def _row_rank(report: dict, row: dict) -> tuple:
    if report["table"] == 2:
        keys = table2_row_keys()
        return (keys.index(row["key"]) if row["key"] in keys else len(keys), row["key"])
    return row["batch_size"] is not None, row["batch_size"] or 0, row["frac"]


def merge_earlier(report: dict, earlier: dict | None) -> dict:
    """This invocation's cells plus the cells an earlier one of the same study wrote and this one did not run.

    A study is run in pieces (some rows or one partition at a time, each with its own round
    budget, even two at once into the same folder); the table on disk stays the whole study.
    An earlier report of another study (other K, seed, limits or arithmetic) is replaced.
    """
    if not earlier or earlier.get("table") != report["table"] or _study(earlier) != _study(report):
        return report
    ran = {(c["row"], c["partition"]) for c in report["cells"]}
    before = earlier.get("executor") or {}  # cells written before cells recorded their own executor
    kept = [{"executor": before, **c} for c in earlier.get("cells", []) if (c["row"], c["partition"]) not in ran]
    rows = {r["key"]: r for r in earlier["rows"]} | {r["key"]: r for r in report["rows"]}
    partitions = [p for p in PARTITIONS if p in earlier["partitions"] or p in report["partitions"]]
    return {
        **report,
        "rows": sorted(rows.values(), key=lambda r: _row_rank(report, r)),
        "partitions": partitions,
        "cells": kept + report["cells"],
    }


def read_report(path: Path) -> dict | None:
    """The JSON a table wrote, or None where there is none or it does not parse (it is rewritten whole)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_outputs(report: dict, out_dir: Path, plot: bool = True) -> list[Path]:
    """tableN.json, tableN.md and (with plot) tableN.png under out_dir, with the earlier cells of the same study.

    Returns the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"table{report['table']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    report = merge_earlier(report, read_report(paths[0]))
    _write_text(paths[0], json.dumps(report, indent=2) + "\n")
    _write_text(paths[1], markdown(report))
    if plot and report["cells"]:
        paths.append(plot_table(report, stem.with_suffix(".png")))
    return paths
