"""Progress for long jobs: a bar when the total is known, a spinner when it is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


def bar(*fields: str, stderr: bool = False, transient: bool = False):
    """A rich Progress: description, bar, done/total, elapsed, then each named task field (`status=...`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    extra = [TextColumn(f"{{task.fields[{name}]}}") for name in fields]
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *extra,
        console=Console(stderr=True) if stderr else None,
        transient=transient,
    )


@contextmanager
def spinner(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time; yields update(text), which shows `title: text`."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task(title, total=None)
        yield lambda text: progress.update(task, description=f"{title}: {text}")
