"""Human tables by default, JSON for machines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def write_report(path: str | Path | None, report: dict, quiet: bool = False, err: bool = True) -> None:
    """The `--json PATH` report; `wrote PATH` goes to stderr unless `err` is False (hostnet's stdout)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
        if not quiet:
            click.echo(f"wrote {path}", err=err)


def table(
    headers: list[str],
    rows: Iterable[Iterable[Any]],
    title: str | None = None,
    *,
    width: int | None = None,
    boxed: bool = False,
) -> None:
    """A rich table on stdout; `boxed` draws rich's default frame and wraps cells, as hostnet's tables do."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width) if width else Console()
    if not width and not console.is_terminal:
        console = Console(width=200)  # pipes and logs get whole ids, not wrapped cells
    t = Table(title=title) if boxed else Table(title=title, show_edge=False, header_style="bold")
    for h in headers:
        t.add_column(h, no_wrap=not boxed)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console.print(t)


def show(blocks: Iterable[Any]) -> None:
    """A study's view (studies.tabular): each Table as a rich table, each line of text as it is."""
    for block in blocks:
        if isinstance(block, str):
            click.echo(block)
        else:
            table(list(block.headers), block.rows, block.title)


def list_docs(docs: list[dict], as_json: bool, headers: list[str], row: Callable[[dict], Iterable[Any]]) -> None:
    """What every `list` verb prints: the documents as JSON with --json, else a table with a row per document."""
    if as_json:
        emit_json(docs)
        return
    table(headers, [row(d) for d in docs])


def ms_time(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
