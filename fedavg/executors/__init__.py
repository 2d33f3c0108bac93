"""Where ClientUpdates run: in this process, in a pool of worker processes, on Ray actors, or as OpenWhisk actions.

Every executor has `run_round(tasks, global_state) -> list[ClientResult | ClientFailure]`
(one entry per task, in task order) and is a context manager; a client that fails comes
back as a ClientFailure, never as an exception, so the round loop can leave it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:  # the CLI imports this package for EXECUTORS without paying for torch
    from ..core import ClientFailure, ClientResult, ClientTask, State

EXECUTORS = ("serial", "process", "ray", "openwhisk")


class Executor(Protocol):
    name: str

    def run_round(self, tasks: Sequence[ClientTask], global_state: State) -> list[ClientResult | ClientFailure]:
        ...

    def close(self) -> None:
        ...


class Managed:
    """An executor as a context manager: start() on entry, and close() on exit or when start() fails half-way."""

    def start(self):
        return None

    def close(self) -> None:
        return None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()
