"""Where ClientUpdates run: in this process (one by one, or all in lockstep), in worker processes, on Ray, on OpenWhisk.

Every executor has `stream_round(tasks, global_state)`, an iterator of one ClientResult or
ClientFailure per task, in task order, and `run_round`, the same as a list; it is a context
manager. A client that fails comes back as a ClientFailure, never as an exception, so the round
loop can leave it out. The stream keeps at most a window of updates ahead of the one it yields
next (the updates that finished early wait their turn), so a round's memory follows the
window, not the clients: the round loop folds each update into a running average and drops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the CLI imports this package for EXECUTORS without paying for torch
    from ..core import ClientFailure, ClientResult, ClientTask, State

    Outcome = ClientResult | ClientFailure

EXECUTORS = ("serial", "batched", "process", "ray", "openwhisk")


class Executor(Protocol):
    name: str

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[Outcome]: ...

    def run_round(self, tasks: Sequence[ClientTask], global_state: State) -> list[ClientResult | ClientFailure]: ...

    def close(self) -> None: ...


class Managed:
    """An executor as a context manager: start() on entry, and close() on exit or when start() fails half-way."""

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[Outcome]:
        raise NotImplementedError

    def run_round(self, tasks: Sequence[ClientTask], global_state: State) -> list[ClientResult | ClientFailure]:
        """Every outcome of the round at once (tests, callers that want them all); the round loop streams."""
        return list(self.stream_round(tasks, global_state))

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


def make_factory(
    name: str,
    data,
    *,
    workers: int,
    threads: int,
    concurrency: int = 4,
    run_id: str = "run",
    ray_address: str | None = None,
    openwhisk: tuple[object, object] | None = None,
) -> Callable:
    """A zero-argument callable giving a fresh executor context for `name`.

    The openwhisk executor needs `openwhisk`, an (OpenWhiskClient, Storage) pair wired to a deployed
    `fedavg/client`: the caller knows where the platform is, this package does not.

    Raises:
        ImportError: `name` is ray and Ray is not installed.
    """
    from .batched import BatchedExecutor
    from .process import ProcessExecutor
    from .serial import SerialExecutor

    if name == "serial":
        return lambda: SerialExecutor(data.train_images, data.train_labels, num_threads=threads)
    if name == "batched":
        return lambda: BatchedExecutor(data.train_images, data.train_labels, num_threads=threads)
    if name == "process":
        return lambda: ProcessExecutor(
            data.train_images, data.train_labels, workers=workers, threads_per_worker=threads
        )
    if name == "ray":
        from .ray import RayExecutor

        return lambda: RayExecutor(
            data.train_images, data.train_labels, workers=workers, threads_per_worker=threads, ray_address=ray_address
        )
    if openwhisk is None:
        raise ValueError(f"the {name} executor needs a (client, storage) pair")
    from .openwhisk import OpenWhiskExecutor

    client, storage = openwhisk
    return lambda: OpenWhiskExecutor(
        client,
        storage,
        data.train_images,
        data.train_labels,
        run_id=run_id,
        concurrency=concurrency,
        threads_per_client=threads,
    )
