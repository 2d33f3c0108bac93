"""What a study's rendering returns: tables and lines of text, which the CLI prints and docs/results.md writes.

One view of a report serves both, so the console and the generated results page cannot tell
different stories about the same JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    """A titled grid; cells are kept as text (None as empty), as both renderings show them."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, title: str, headers: Sequence[str], rows: Iterable[Iterable[Any]]) -> Table:
        return cls(title, tuple(headers), tuple(tuple("" if v is None else str(v) for v in row) for row in rows))

    def markdown(self, titled: bool = True) -> list[str]:
        """A GitHub table under its title in bold; pipes and line breaks inside a cell keep it one cell."""

        def line(cells) -> str:
            return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

        title = [f"**{self.title}**", ""] if titled and self.title else []
        return [*title, line(self.headers), "|" + "---|" * len(self.headers), *map(line, self.rows)]


# what a view returns: tables, and lines printed between them
Block = Table | str
