"""Option types the commands share, such as comma-separated lists (`--clients 10,20,50`), and option stacking.

One type instead of a hand-written parser per command, so every list option refuses bad
input the same way: exit 2 and one line naming the option and what it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click


class CommaList(click.ParamType):
    """A comma-separated list whose items `item` converts and checks; a tuple, in the order given.

    `keywords` maps words to values outside `item`'s range (`inf` -> None for a batch size);
    `example` goes into the error message, so it shows what a right value looks like.
    """

    name = "text"  # the metavar these options have always shown in --help

    def __init__(self, item: click.ParamType, example: str, keywords: Mapping[str, Any] | None = None) -> None:
        self.item, self.example, self.keywords = item, example, dict(keywords or {})

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):  # a default or a caller's value, already converted
            return tuple(value)
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail(f"give at least one value, like {self.example}", param, ctx)
        if isinstance(self.item, click.Choice):
            unknown = [v for v in items if v not in self.item.choices]
            if unknown:
                self.fail(f"unknown {', '.join(unknown)}; choose from {', '.join(self.item.choices)}", param, ctx)
            return tuple(items)
        try:
            return tuple(self.keywords[v] if v in self.keywords else self.item.convert(v, param, ctx) for v in items)
        except click.BadParameter as exc:
            self.fail(f"must be comma-separated {self._describe()} like {self.example}; got {value!r}", param, ctx)
            raise AssertionError("unreachable") from exc

    def _describe(self) -> str:
        item = self.item
        noun = "integers" if isinstance(item, click.IntRange) else "numbers"
        if not isinstance(item, (click.IntRange, click.FloatRange)):
            return noun
        bounds = [
            f"{'>' if item.min_open else '>='} {item.min:g}" if item.min is not None else "",
            f"{'<' if item.max_open else '<='} {item.max:g}" if item.max is not None else "",
        ]
        if any(bounds):
            noun += f" ({', '.join(b for b in bounds if b)})"
        words = " or ".join(repr(k) for k in self.keywords)
        return f"{noun} or {words}" if words else noun


def ints(low: int = 1, high: int | None = None, example: str = "1,2,4") -> CommaList:
    return CommaList(click.IntRange(low, high), example)


def floats(low: float, high: float | None = None, low_open: bool = False, example: str = "0.1,0.2") -> CommaList:
    return CommaList(click.FloatRange(low, high, min_open=low_open), example)


def choices(allowed, example: str | None = None) -> CommaList:
    allowed = list(allowed)
    return CommaList(click.Choice(allowed), example or ",".join(allowed[:2]))


def parse(kind: CommaList, text: str, option: str) -> tuple:
    """The same checks for a list whose kind depends on another option (`--rows` of table 1 or table 2).

    Raises:
        click.BadParameter: naming `option`.
    """
    try:
        return kind.convert(text, None, None)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint=f"'{option}'") from exc


def stacked(options):
    """One decorator for a list of click options, in the order --help lists them (as if written above the function)."""

    def apply(command):
        for option in reversed(list(options)):
            command = option(command)
        return command

    return apply
