"""A long-lived worker: many rounds per activation, exchanging its updates through storage.

Each round every worker computes its update (a gradient in sync mode, the delta of K local
SGD steps in local mode) and turns the round's updates into the next model through its
topology (mlcore.training.topology): reading its peers' updates (allreduce), reducing one
shard for all (scatter), or reading what the parameter server published (ps). Every worker
ends the round with the same model. Worker 0 (with a PS, the PS) writes a checkpoint at
each evaluation point.

Nothing here is lost with a worker: a replacement starts from the newest checkpoint and
replays the rounds since, reading the updates already in storage (and computing only the
ones that are missing), so in sync mode it rejoins with exactly the model it would have had.
At its deadline a worker saves its state and invokes its successor, which continues from it.
`LongLived` is the part the parameter server shares: the claim on a slot, progress reports,
the deadline and hand-off, checkpoints.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import torch

from ..errors import ObjectNotFoundError
from . import data
from .exchange import Exchange, Timer
from .job import JobConfig, JobLayout, TrainingError
from .state import delete_scratch, start_point, state_blob
from .topology import Cursor, Link, Topology, for_worker, round_steps
from .trainer import Trainer

STATS_EVERY_S = 1.0


class CountedStorage:
    """A storage whose calls are counted by kind (the report's requests per step); all else passes through.

    A get that finds nothing counts as a get: the endpoint served it all the same.
    """

    KINDS = {
        "put_bytes": "puts",
        "put_json": "puts",
        "get_bytes": "gets",
        "get_json": "gets",
        "exists": "heads",
        "list_keys": "lists",
        "delete": "deletes",
        "delete_keys": "deletes",
    }

    def __init__(self, storage) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(sorted(set(self.KINDS.values())), 0)

    def __getattr__(self, name: str):
        attribute = getattr(self._storage, name)
        kind = self.KINDS.get(name)
        if kind is None:
            return attribute

        def counted(*args, **kwargs):
            with self._lock:
                self.counts[kind] += 1
            return attribute(*args, **kwargs)

        return counted

    def report(self) -> dict:
        with self._lock:
            return {**self.counts, "total": sum(self.counts.values())}


class LongLived:
    """One slot of a job (a worker, or the parameter server) held by one activation at a time.

    A newer activation claims the slot in workers/<slot>.json; the older one notices at its
    next check and stops ("superseded"). Near its deadline it saves its state and invokes
    its successor. Subclasses run the rounds in `_run`.
    """

    def __init__(
        self,
        storage,
        config: JobConfig,
        slot: int | str,
        *,
        owner: str,
        deadline_s: float | None = None,
        handoff: Callable[[], str] | None = None,
    ) -> None:
        self.storage = CountedStorage(storage)
        self.config, self.slot, self.owner = config, slot, owner
        self.deadline_s, self.handoff = deadline_s, handoff
        self.layout = JobLayout(config.job)
        self.timer = Timer()
        self.exchange = Exchange(self.storage, self.timer, threads=config.workers + 3)
        self._superseded = threading.Event()
        self._round_walls: list[float] = []
        self._stats_at = 0.0
        self._owner_checked_at = time.monotonic()
        self._last_checkpoint: int | None = None
        self._refused: list[str] = []
        self._checkpoint_write = None
        self._started = time.perf_counter()
        self._cpu_started = (time.process_time(), time.thread_time())
        self.rounds_run = 0

    # -- ownership and progress -------------------------------------------------------------

    def _claim(self) -> None:
        self.storage.put_json(self.layout.worker_info(self.slot), {"owner": self.owner, "since": time.time()})

    def _check_owner(self) -> None:
        try:
            if self.storage.get_json(self.layout.worker_info(self.slot)).get("owner") != self.owner:
                self._superseded.set()
        except ObjectNotFoundError:
            pass

    def _stopping(self) -> bool:
        """Checked while waiting for peers: a worker blocked on a dead peer still notices its replacement."""
        now = time.monotonic()
        if now - self._owner_checked_at >= STATS_EVERY_S:
            self._owner_checked_at = now
            self._check_owner()
        return self._superseded.is_set()

    def _extra_stats(self) -> dict:
        return {}

    def _cpu(self) -> dict:
        """CPU seconds of its rounds, all threads and the main one (the caller): the rest is the exchange's.

        With the pid, a profile of the machine's processes during a job can tell which one is this slot.
        """
        process, main = self._cpu_started
        return {
            "pid": os.getpid(),
            "threads": torch.get_num_threads(),
            "cpu_s": round(time.process_time() - process, 4),
            "main_cpu_s": round(time.thread_time() - main, 4),
        }

    def _stats(self, state: str, position: dict, **extra) -> dict:
        return {
            "owner": self.owner,
            "state": state,
            "time": time.time(),
            "rounds": self.rounds_run,
            "active_s": round(time.perf_counter() - self._started, 3),
            **self._cpu(),
            **position,
            **self.timer.report(),
            "requests": self.storage.report(),
            **self._extra_stats(),
            **({"refused": self._refused} if self._refused else {}),
            **extra,
        }

    def _report_progress(self, position: dict) -> None:
        """Progress for the coordinator, and a check that no replacement took over; both off the critical path."""
        now = time.monotonic()
        if now - self._stats_at < STATS_EVERY_S:
            return
        self._stats_at = now
        stats = self._stats("running", position)
        self.exchange.submit(self.storage.put_json, self.layout.worker_stats(self.slot), stats)
        self.exchange.submit(self._check_owner)

    # -- checkpoints ------------------------------------------------------------------------------

    def _checkpoint(self, number: int, batch: int, k: int, vector: torch.Tensor, momentum) -> None:
        """Writes checkpoints/<round>, then the pointer to it, then drops what no replacement needs any more."""
        header = {"round": number, "batch": batch, "k": k, "time": time.time()}
        blob = state_blob(vector, momentum if self.config.mode == "sync" else None, header)
        previous, self._last_checkpoint = self._last_checkpoint, number
        before = self._checkpoint_write

        def write() -> None:
            if before is not None:
                before.result()  # pointers move forward only
            self.storage.put_bytes(self.layout.checkpoint(number), blob)
            self.storage.put_json(self.layout.checkpoint_pointer, header)
            if previous is not None:
                self._prune(previous)

        self.timer.bytes_out += len(blob)
        self._checkpoint_write = self.exchange.background(write)

    def _prune(self, keep_from: int) -> None:
        """`keep_from` is the previous checkpoint. Checkpoints are the coordinator's to delete, once evaluated."""
        delete_scratch(self.storage, self.layout, before=keep_from)

    # -- deadline and the end --------------------------------------------------------------------

    def _time_left_s(self) -> float:
        return float("inf") if self.deadline_s is None else self.deadline_s - time.time()

    def _should_hand_off(self) -> bool:
        if self.handoff is None or self.rounds_run == 0:
            return False
        limit = self.config.rounds_per_run
        recent = max(self._round_walls[-20:], default=0.0)
        return bool(limit and self.rounds_run >= limit) or self._time_left_s() < 5.0 + 3 * recent

    def run(self) -> dict:
        """Raises TrainingError when an update never arrives or storage holds damaged data.

        The job's threads are set first: torch's default (every core) makes each op on a
        flat vector a parallel region, and on a machine whose cores the other slots and the
        endpoint share, its threads spend more CPU waiting for each other than computing.
        """
        torch.set_num_threads(self.config.threads)
        self._started = time.perf_counter()
        self._cpu_started = (time.process_time(), time.thread_time())
        try:
            return self._run()
        finally:
            self.exchange.close()

    def _run(self) -> dict:
        raise NotImplementedError

    def _superseded_result(self, position: dict) -> dict:
        return {"state": "superseded", **self._stats("superseded", position)}

    def _done(self, position: dict) -> dict:
        self.exchange.finish()
        stats = self._stats("done", position)
        self.storage.put_json(self.layout.worker_stats(self.slot), stats)
        return {"state": "done", **stats}

    def _hand_off(self, position: dict, vector: torch.Tensor, momentum) -> dict:
        """Saves this slot's state at a round boundary and starts its successor, which claims the slot."""
        self.exchange.finish()
        self.storage.put_bytes(self.layout.handoff(self.slot), state_blob(vector, momentum, position))
        successor = self.handoff()
        stats = self._stats("continued", position, successor=successor)
        self.storage.put_json(self.layout.worker_stats(self.slot), stats)
        return {**stats, "state": "continued", "successor": successor}


class Worker(LongLived):
    """Runs one worker's rounds until the job ends, its deadline nears, or a newer owner takes over."""

    def __init__(
        self,
        storage,
        config: JobConfig,
        worker: int,
        *,
        owner: str,
        deadline_s: float | None = None,
        handoff: Callable[[], str] | None = None,
    ) -> None:
        if not 0 <= worker < config.workers:
            raise TrainingError(f"worker {worker} is out of range 0..{config.workers - 1}")
        super().__init__(storage, config, worker, owner=owner, deadline_s=deadline_s, handoff=handoff)
        self.worker = worker
        self.topology: Topology | None = None

    def _extra_stats(self) -> dict:
        return {"left_out": self.topology.left_out[-20:] if self.topology else []}

    def _momentum(self, trainer: Trainer) -> torch.Tensor | None:
        """What a hand-off carries: the sync optimizer's state, or this worker's own local SGD momentum."""
        return self.topology.momentum() if self.config.mode == "sync" else trainer.momentum_vector()

    def _run(self) -> dict:
        config = self.config
        self._claim()
        trainer, cursor, size = self._prepare()
        total, every = config.total_batches(size), config.checkpoint_every(size)
        while cursor.batch < total:
            if self._superseded.is_set():
                return self._superseded_result(cursor.position())
            if self._should_hand_off():
                return self._hand_off(cursor.position(), cursor.vector, self._momentum(trainer))
            round_started = time.perf_counter()
            cursor.k = round_steps(config, cursor, total, every)
            replay = cursor.replaying
            own = self._compute(trainer, cursor)
            comm_started = time.perf_counter()
            try:
                vector, next_k = self.topology.reduce(cursor, own, size, replay)
            except InterruptedError:
                continue
            cursor.vector = vector
            cursor.last_comm_s = round(time.perf_counter() - comm_started, 6)
            self._advance(cursor, next_k, total, every)
            self._round_walls.append(time.perf_counter() - round_started)
            self._report_progress(cursor.position())
        return self._done(cursor.position())

    def _prepare(self) -> tuple[Trainer, Cursor, int]:
        """Loads the data and takes over from the start point: (trainer, cursor, train size)."""
        config, w = self.config, self.worker
        images, labels = data.load(config.data, self.storage, train=True)
        size = data.train_size(config, len(labels))
        trainer = Trainer(config, w, images, labels, size)
        start = start_point(self.storage, config, w)
        self._refused = start.refused
        if start.source == "handoff":
            self.storage.delete(self.layout.handoff(w))
        link = Link(config, self.layout, w, self.storage, self.exchange, self.timer, self._stopping)
        self.topology = for_worker(link, start.momentum if config.mode == "sync" else None)
        if config.mode == "local":
            trainer.set_momentum(start.momentum)
        self.timer.add("startup_s", time.perf_counter() - self._started)
        self._cpu_started = (time.process_time(), time.thread_time())  # the rounds' CPU, without the data's loading
        return trainer, Cursor(start.round, start.batch, start.k, start.vector), size

    def _compute(self, trainer: Trainer, cursor: Cursor):
        """This worker's update of the round, put to storage and returned as the peers will read it.

        None when storage holds it already (a replay) or a quorum decision left this worker out.
        """
        config = self.config
        if (cursor.replaying or self.topology.must_check()) and self.topology.has_update(cursor.round):
            return None
        cursor.replaying = False
        compute_started, cpu_started = time.perf_counter(), time.thread_time()
        if config.mode == "sync":
            update, loss = trainer.gradient(cursor.vector, cursor.batch)
        else:
            update, loss = trainer.local_steps(cursor.vector, cursor.batch, cursor.k)
        compute_s = time.perf_counter() - compute_started
        self.timer.add("compute_s", compute_s)
        self.timer.add("compute_cpu_s", time.thread_time() - cpu_started)
        header = {
            "round": cursor.round,
            "worker": self.worker,
            "batch": cursor.batch,
            "k": cursor.k,
            "loss": round(loss, 5),
            "compute_s": round(compute_s, 6),
            "comm_s": cursor.last_comm_s,
        }
        return self.topology.put(cursor.round, update, header)

    def _advance(self, cursor: Cursor, next_k: int, total: int, every: int) -> None:
        """Moves past the round; worker 0 checkpoints at each evaluation point and at the end (unless a PS does)."""
        cursor.batch += cursor.k
        cursor.round += 1
        at_point = cursor.batch % every == 0 or cursor.batch >= total
        if self.worker == 0 and self.topology.writes_checkpoints and at_point:
            self._checkpoint(cursor.round, cursor.batch, next_k, cursor.vector, self.topology.momentum())
        cursor.k = next_k
        self.rounds_run += 1
