"""The option types every command uses, so each kind of value is checked once, the same way everywhere.

A value a command cannot use is refused while click parses the command line: exit 2 and
one line naming the option and what it takes, before anything starts. Every number has
both bounds (a thread count of 100000 crashes torch; a port of 70000 crashes `bind`), floats
are finite (click's FloatRange lets NaN through, since NaN fails no comparison), and files
are read or checked here rather than deep inside a job.

    integer(low, high)        click.IntRange with both ends
    Number(low, high, ...)    a finite float in a range
    PORT, SEED, THREADS       the integers that recur
    seconds(high)             a finite, non-negative duration
    JsonObjectFile            a file holding one JSON object (`invoke -P`)
    OutputFile, OutputFolder  where a report or checkpoints will be written: checked writable first
    Pattern                   text matching a regular expression (job names, buckets, CPU models)
    HttpUrl                   an http(s)://host[:port] URL
    ApiHost, AuthKey          --apihost and --auth, by the OpenWhisk client's own rules
    CommaList                 comma-separated values of one of the above (`--clients 10,20,50`)
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ..folders import user_path

MAX_THREADS = 256
MAX_WORKERS = 64


def integer(low: int, high: int) -> click.IntRange:
    """An int in [low, high]; both ends are required, so no count is unbounded."""
    return click.IntRange(low, high)


class Number(click.ParamType):
    """A finite float in a range; `low_open`/`high_open` exclude an end (a learning rate > 0)."""

    name = "float"

    def __init__(self, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def bounds(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def describe(self) -> str:
        return f"a number in {self.bounds()}"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"must be {self.describe()}, got {value!r}", param, ctx)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"must be {self.describe()}, got {value!r}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number ({self.describe()}), got {value!r}", param, ctx)
        below = number < self.low or (self.low_open and number == self.low)
        above = number > self.high or (self.high_open and number == self.high)
        if below or above:
            self.fail(f"must be {self.describe()}, got {value!r}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"Number({self.describe()})"


PORT = integer(0, 65535)
SEED = integer(0, 2**32 - 1)  # numpy's and torch's generators take seeds in this range
THREADS = integer(1, MAX_THREADS)


def seconds(high: float, low_open: bool = False) -> Number:
    return Number(0.0, high, low_open=low_open)


class JsonObjectFile(click.ParamType):
    """A file (or '-' for stdin) holding one JSON object; converts to the dict."""

    name = "file"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        with click.File("r", encoding="utf-8").convert(value, param, ctx) as stream:
            try:
                loaded = json.load(stream)
            except (ValueError, UnicodeDecodeError) as exc:
                self.fail(f"{value} is not JSON ({_first_line(exc)}); give a file holding one JSON object", param, ctx)
        if not isinstance(loaded, dict):
            self.fail(f"{value} holds a JSON {type(loaded).__name__}; give a file holding one JSON object", param, ctx)
        return loaded


class OutputFile(click.ParamType):
    """A path a report or plot will be written to, checked before any work: not a folder, in a writable folder.

    Missing folders are made when the file is written; here the nearest existing one must
    be a folder this user can write to, so a long run never ends unable to save its result.
    """

    name = "path"
    folder = False

    def convert(self, value, param, ctx):
        if isinstance(value, Path):
            value = str(value)
        if value == "-" and not self.folder:
            return value
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            self.fail(f"{value!r} is not a {'folder' if self.folder else 'file'} path", param, ctx)
        path = user_path(value)
        try:
            if self.folder and path.exists() and not path.is_dir():
                self.fail(f"{value} is a file; give a folder", param, ctx)
            if not self.folder and path.is_dir():
                self.fail(f"{value} is a folder; give a file path", param, ctx)
            nearest = path if self.folder else path.parent
            while not nearest.exists():
                nearest = nearest.parent
        except OSError as exc:  # e.g. a name too long for the file system
            self.fail(f"{value} is not a usable path ({exc.strerror})", param, ctx)
        if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
            self.fail(f"cannot write under {value}: {nearest} is not a folder this user can write to", param, ctx)
        return str(path)


class OutputFolder(OutputFile):
    """A folder things will be written into (made when missing): it must not be a file, and must be writable."""

    folder = True


class Pattern(click.ParamType):
    """Text matching `regex` whole; `what` says in the error what such text looks like."""

    name = "text"

    def __init__(self, regex: str, what: str) -> None:
        self.regex, self.what = re.compile(regex), what

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not self.regex.fullmatch(value):
            shown = value[:80] if isinstance(value, str) else value
            self.fail(f"{shown!r} is not {self.what}", param, ctx)
        return value


# the rule mlcore.training.job checks; a type here refuses a bad name before any storage is reached
JOB_NAME = Pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "a job name (1-64 letters, digits, '.', '_' or '-')")
# S3's bucket naming rules, short of the IP-address form
BUCKET = Pattern(
    r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
    "an S3 bucket name (3-63 lowercase letters, digits, '.', '-')",
)


class HttpUrl(click.ParamType):
    """An http(s)://host[:port][/path] URL; returned as given."""

    name = "url"

    def convert(self, value, param, ctx):
        parts = urlsplit(value) if isinstance(value, str) else None
        try:
            port_ok = parts is not None and (parts.port is None or parts.port > 0)
        except ValueError:
            port_ok = False
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            self.fail(f"{str(value)[:80]!r} is not an http(s)://host[:port] URL", param, ctx)
        return value


class ApiHost(click.ParamType):
    """An OpenWhisk API host as wsk takes it (host[:port] means https); checked by the client's own rule."""

    name = "url"

    def convert(self, value, param, ctx):
        from mlcore.errors import OpenWhiskError
        from mlcore.openwhisk import normalize_apihost

        try:
            normalize_apihost(value)
        except OpenWhiskError as exc:
            self.fail(str(exc), param, ctx)
        return value


class AuthKey(click.ParamType):
    """An OpenWhisk key, 'uuid:key'; checked by the client's own rule."""

    name = "text"

    def convert(self, value, param, ctx):
        from mlcore.errors import OpenWhiskError
        from mlcore.openwhisk import check_auth

        try:
            return check_auth(value)
        except OpenWhiskError as exc:
            self.fail(str(exc), param, ctx)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
                self.fail(f"unknown {', '.join(unknown)[:200]}; choose from {', '.join(self.item.choices)}", param, ctx)
            return tuple(items)
        try:
            return tuple(self.keywords[v] if v in self.keywords else self.item.convert(v, param, ctx) for v in items)
        except click.BadParameter as exc:
            shown = value if len(str(value)) <= 80 else str(value)[:80] + "..."
            self.fail(f"must be comma-separated {self._describe()} like {self.example}; got {shown!r}", param, ctx)
            raise AssertionError("unreachable") from exc

    def _describe(self) -> str:
        item = self.item
        words = " or ".join(repr(k) for k in self.keywords)
        if isinstance(item, Number):
            noun = f"numbers in {item.bounds()}"
        elif isinstance(item, click.IntRange):
            bounds = [
                f">= {item.min}" if item.min is not None else "",
                f"<= {item.max}" if item.max is not None else "",
            ]
            noun = "integers" + (f" ({', '.join(b for b in bounds if b)})" if any(bounds) else "")
        else:
            noun = "values"
        return f"{noun} or {words}" if words else noun


def ints(low: int = 1, high: int = 10_000, example: str = "1,2,4") -> CommaList:
    return CommaList(integer(low, high), example)


def floats(low: float, high: float, low_open: bool = False, example: str = "0.1,0.2") -> CommaList:
    return CommaList(Number(low, high, low_open=low_open), example)


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
