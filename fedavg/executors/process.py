"""ClientUpdates in a pool of worker processes sharing the data and the weights through shared memory.

The training set is copied into shared memory once; each round the global weights are
written once into a shared flat buffer and each worker writes its update into a slot of a
shared result buffer, so only small task descriptions travel through pipes (never a
pickled model per client). There are `window` slots, not one per client: a task is handed
out when a slot is free, and a slot is free again once its update has been read in task
order, so the parent holds `window` updates whatever the clients per round. Workers come
from a fork server that imported torch once and never computed (a child forked from a
parent that ran OpenMP can hang; spawning each imports torch again, seconds a worker), and
each sets its own torch thread count, so N workers times T threads can be matched to the cores.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np
import torch

from mlcore.compute import flatten
from procs import start_ticks, watch_owner

from ..core import ClientFailure, ClientResult, ClientTask, State, run_task
from ..errors import FedAvgError
from ..models import build_model
from . import Managed
from .serial import CLIENT_ERRORS


@dataclass(frozen=True)
class _Shared:
    """Names and shapes of the shared blocks, small enough to send with every task."""

    images: str
    labels: str
    num_examples: int
    weights: str
    results: str
    num_params: int


class _Block:
    """A shared-memory block owned by the parent, viewed as a torch tensor."""

    def __init__(self, num_bytes: int) -> None:
        self.shm = shared_memory.SharedMemory(create=True, size=max(num_bytes, 1))

    def tensor(self, dtype, shape) -> torch.Tensor:
        return torch.from_numpy(np.ndarray(shape, dtype=dtype, buffer=self.shm.buf))

    def close(self) -> None:
        self.shm.close()
        self.shm.unlink()


# Worker side: attachments and models live for the worker's lifetime.
_attached: dict[str, shared_memory.SharedMemory] = {}
_models: dict[str, torch.nn.Module] = {}
_barrier = None


def _exit_with(owner: tuple[int, int]) -> None:
    """Ends this worker when the executor's process ends, however it ends.

    An owner killed outright (SIGKILL, the OOM killer) never shuts the pool down, and its
    workers would wait on their task queue forever, holding the shared blocks alive. The
    worker's parent is the fork server, which outlives the owner as long as a worker lives,
    so the owner is watched by its pid and start time.
    """
    pid, started = owner
    if not watch_owner(pid, lambda: os._exit(1), name="owner-watch", started=started):
        os._exit(1)  # already gone


def _init_worker(num_threads: int, barrier, owner: tuple[int, int]) -> None:
    global _barrier
    _exit_with(owner)
    torch.set_num_threads(num_threads)
    torch.set_num_interop_threads(1)
    # torch.optim's first optimizer imports torch._dynamo (seconds): pay it at start-up, not in round 1
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    _barrier = barrier


def _ready(timeout_s: float) -> int:
    """Returns once every worker runs one of these, so all of them have started."""
    _barrier.wait(timeout_s)
    return os.getpid()


def _view(name: str, dtype, shape) -> torch.Tensor:
    if name not in _attached:
        _attached[name] = shared_memory.SharedMemory(name=name)
    return torch.from_numpy(np.ndarray(shape, dtype=dtype, buffer=_attached[name].buf))


def _state_of(flat: torch.Tensor, template: State, keys: list[str]) -> State:
    """Tensors shaped as the template's, viewing `flat` in order: one vector, no copy per tensor."""
    state, offset = {}, 0
    for k in keys:
        numel = template[k].numel()
        state[k] = flat[offset : offset + numel].view(template[k].shape)
        offset += numel
    return state


def _worker_run(task: ClientTask, shared: _Shared, slot: int) -> tuple[int, float, float]:
    model = _models.get(task.config.model)
    if model is None:
        model = _models[task.config.model] = build_model(task.config.model)
    keys = list(model.state_dict())
    images = _view(shared.images, np.uint8, (shared.num_examples, 28, 28))
    labels = _view(shared.labels, np.int64, (shared.num_examples,))
    # the update reads the global weights in place: the parent writes them only between rounds
    flat = _view(shared.weights, np.float32, (shared.num_params,))
    global_state = _state_of(flat, model.state_dict(), keys)
    result = run_task(task, model, global_state, images, labels)
    out = _view(shared.results, np.float32, (slot + 1, shared.num_params))
    flatten((result.state[k] for k in keys), out=out[slot])
    return result.num_examples, result.train_loss, result.duration_s


class ProcessExecutor(Managed):
    name = "process"

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        workers: int = 2,
        threads_per_worker: int = 1,
        window: int | None = None,
    ) -> None:
        """window: updates in flight or waiting to be read (2 per worker by default), so a slow client holds
        up at most that many behind it."""
        if workers < 1 or threads_per_worker < 1:
            raise FedAvgError(f"need at least 1 worker and 1 thread each, got {workers} x {threads_per_worker}")
        if window is not None and window < 1:
            raise FedAvgError(f"the window must hold at least 1 update, got {window}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.window = window or 2 * workers
        n = len(labels)
        self._images = _Block(n * 28 * 28)
        self._labels = _Block(n * 8)
        self._images.tensor(np.uint8, (n, 28, 28)).copy_(images_uint8.to(torch.uint8))
        self._labels.tensor(np.int64, (n,)).copy_(labels.to(torch.int64))
        self._num_examples = n
        self._weights: _Block | None = None
        self._results: _Block | None = None
        self._num_params = 0
        self._slots = 0
        self._pool: ProcessPoolExecutor | None = None
        self.startup_s: float | None = None

    @property
    def eval_threads(self) -> int:
        """Threads the parent may use between rounds, when the workers are idle."""
        return max(1, min(os.cpu_count() or 1, self.workers * self.threads_per_worker))

    def worker_pids(self) -> list[int]:
        """The live worker processes (for diagnostics and for tests that kill one)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [pid for pid, p in dict(processes).items() if p.is_alive()]

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _healthy_pool(self) -> ProcessPoolExecutor:
        """The pool, rebuilt first when a worker died since the last round (OOM killer, a stray kill)."""
        processes = getattr(self._pool, "_processes", None)
        if self._pool is not None and not all(p.is_alive() for p in dict(processes or {}).values()):
            self._drop_pool()
        return self._ensure_pool()

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            owner = (os.getpid(), start_ticks(os.getpid()))
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.threads_per_worker, context.Barrier(self.workers), owner),
            )
        return self._pool

    def _ensure_buffers(self, num_params: int, slots: int) -> None:
        if num_params != self._num_params or self._weights is None:
            if self._weights is not None:
                self._weights.close()
            self._weights = _Block(num_params * 4)
            self._num_params = num_params
            self._slots = 0
        if slots > self._slots:
            if self._results is not None:
                self._results.close()
            self._results = _Block(slots * num_params * 4)
            self._slots = slots

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[ClientResult | ClientFailure]:
        if not tasks:
            return
        keys = list(global_state)
        if any(global_state[k].dtype != torch.float32 for k in keys):
            raise FedAvgError("the process executor shares float32 weights only")
        window = min(self.window, len(tasks))
        self._ensure_buffers(sum(global_state[k].numel() for k in keys), window)
        flatten((global_state[k] for k in keys), out=self._weights.tensor(np.float32, (self._num_params,)))
        shared = _Shared(
            self._images.shm.name,
            self._labels.shm.name,
            self._num_examples,
            self._weights.shm.name,
            self._results.shm.name,
            self._num_params,
        )
        results_view = self._results.tensor(np.float32, (self._slots, self._num_params))
        pool = self._healthy_pool()
        free, upcoming = list(range(window)), iter(tasks)
        pending: collections.deque[tuple[ClientTask, int, Future | str]] = collections.deque()
        broken: str | None = None
        try:
            while True:
                while free and (task := next(upcoming, None)) is not None:
                    slot = free.pop()
                    if broken is None:
                        try:
                            pending.append((task, slot, pool.submit(_worker_run, task, shared, slot)))
                            continue
                        except BrokenProcessPool as exc:
                            if not pending and task is tasks[0]:
                                # the pool broke between the health check and the first submit: one fresh pool, once
                                self._drop_pool()
                                pool = self._ensure_pool()
                                pending.append((task, slot, pool.submit(_worker_run, task, shared, slot)))
                                continue
                            broken = str(exc)
                    pending.append((task, slot, broken))
                if not pending:
                    return
                task, slot, job = pending.popleft()
                try:
                    if isinstance(job, str):
                        outcome = ClientFailure(task.client_id, f"worker process died: {job}")
                    else:
                        num_examples, loss, duration_s = job.result()
                        state = _state_of(results_view[slot].clone(), global_state, keys)
                        outcome = ClientResult(task.client_id, state, num_examples, loss, duration_s)
                except BrokenProcessPool as exc:
                    broken = broken or str(exc)
                    outcome = ClientFailure(task.client_id, f"worker process died: {exc}")
                except CLIENT_ERRORS as exc:
                    outcome = ClientFailure(task.client_id, f"{type(exc).__name__}: {exc}")
                free.append(slot)
                yield outcome
        finally:
            # a stream left early still has workers writing into the slots: they finish before the next round
            futures = [job for _, _, job in pending if isinstance(job, Future)]
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)
            if broken is not None:
                self._drop_pool()

    def close(self) -> None:
        self._drop_pool()
        for block in (self._images, self._labels, self._weights, self._results):
            if block is not None:
                block.close()
        self._weights = self._results = None
        self._images = self._labels = None

    def start(self, startup_timeout_s: float = 300.0) -> float:
        """Spawns the workers and waits until each has imported torch; returns the seconds it took.

        Done up front so the first round's time measures training, not interpreter start-up.
        """
        started = time.perf_counter()
        pool = self._ensure_pool()
        try:
            pids = {f.result() for f in [pool.submit(_ready, startup_timeout_s) for _ in range(self.workers)]}
        except (BrokenProcessPool, threading.BrokenBarrierError) as exc:
            raise FedAvgError(
                f"{self.workers} worker processes did not all start within {startup_timeout_s} s: {exc}"
            ) from exc
        if len(pids) != self.workers:
            raise FedAvgError(f"expected {self.workers} distinct worker processes, got {len(pids)}")
        self.startup_s = time.perf_counter() - started
        return self.startup_s
