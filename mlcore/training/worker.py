"""A long-lived worker: many rounds per activation, reducing with its peers through storage.

Each round every worker puts its update (a gradient in sync mode, the delta of K local SGD
steps in local mode) and reads its peers' updates of the same round; all of them average the
same updates in the same order, so they all hold the same model without a parameter server
on the path. Worker 0 also writes a checkpoint at each evaluation point.

Nothing here is lost with a worker: a replacement starts from the newest checkpoint and
replays the rounds since, reading the updates already in storage (and computing only the
ones that are missing), so in sync mode it rejoins with exactly the model it would have had.
At its deadline a worker saves its state and invokes its successor, which continues from it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import weights
from ..errors import DamagedError, ObjectNotFoundError
from . import data
from .exchange import POLL_FIRST_S, POLL_MAX_S, Exchange, Timer, decode, encode
from .job import JobConfig, JobLayout, TrainingError
from .trainer import FlatSGD, Trainer

STATS_EVERY_S = 1.0


@dataclass
class StartPoint:
    round: int
    batch: int
    k: int
    vector: torch.Tensor
    momentum: torch.Tensor | None
    source: str
    refused: list[str] = field(default_factory=list)  # damaged checkpoints or hand-offs passed over


@dataclass
class _Cursor:
    """Where a worker is: replaying until it first computes an update that storage lacks."""

    round: int
    batch: int
    k: int
    vector: torch.Tensor
    replaying: bool = True
    last_comm_s: float | None = None

    def position(self) -> dict:
        return {"round": self.round, "batch": self.batch, "k": self.k}


def state_blob(vector: torch.Tensor, momentum: torch.Tensor | None, header: dict) -> bytes:
    """A checkpoint or hand-off: the model (and momentum) and where it stands, in the weights format."""
    tensors = {"params": vector} if momentum is None else {"params": vector, "momentum": momentum}
    return weights.encode(tensors, header)


def split_state(blob: bytes, where: str = "a stored state") -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """(header, vector, momentum or None). Raises DamagedError naming `where` (the key) for bytes that are not whole."""
    tensors, header = weights.decode(blob, where)
    vector, momentum = tensors.get("params"), tensors.get("momentum")
    if not isinstance(vector, torch.Tensor) or not (momentum is None or _same_shape(momentum, vector)):
        raise DamagedError(f"{where} is damaged: it holds no model state")
    return header, vector, momentum


def _same_shape(momentum, vector: torch.Tensor) -> bool:
    return isinstance(momentum, torch.Tensor) and momentum.shape == vector.shape


def read_state(storage, key: str) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """split_state of a stored checkpoint or hand-off. Raises ObjectNotFoundError, or DamagedError naming the key."""
    return split_state(storage.get_bytes(key), key)


def newest_checkpoint(storage, layout: JobLayout) -> tuple[tuple[dict, torch.Tensor, torch.Tensor | None], list[str]]:
    """(the newest whole checkpoint, one line per damaged newer one passed over).

    Every stored checkpoint is a candidate, newest first: the pointer only says which one was
    written last, and a damaged one must not end the job while an older one can be replayed from.

    Raises:
        TrainingError: no checkpoint is whole (naming each), or there is none.
    """
    refused = []
    rounds = sorted({layout.round_of(key) for key in storage.list_keys(layout.prefix + "checkpoints/")}, reverse=True)
    for number in rounds:
        try:
            return read_state(storage, layout.checkpoint(number)), refused
        except ObjectNotFoundError:
            continue  # pruned since the listing
        except DamagedError as exc:
            refused.append(str(exc))
    if refused:
        raise TrainingError(f"job {layout.job} has no whole checkpoint to start from: {'; '.join(refused)}")
    raise TrainingError(f"job {layout.job} has no checkpoint to start from; create it first")


def start_point(storage, config: JobConfig, worker: int) -> StartPoint:
    """Where this worker begins: its predecessor's hand-off, else the newest whole checkpoint (round 0 at first)."""
    layout = JobLayout(config.job)
    (header, vector, momentum), refused = newest_checkpoint(storage, layout)
    # the sync optimizer state is shared; a local worker's own momentum is not in a checkpoint
    candidates = [
        StartPoint(
            header["round"],
            header["batch"],
            header["k"],
            vector,
            momentum if config.mode == "sync" else None,
            "checkpoint",
            refused,
        )
    ]
    try:
        header, vector, momentum = read_state(storage, layout.handoff(worker))
        candidates.append(
            StartPoint(header["round"], header["batch"], header["k"], vector, momentum, "handoff", refused)
        )
    except ObjectNotFoundError:
        pass
    except DamagedError as exc:
        refused.append(str(exc))
    return max(candidates, key=lambda c: (c.round, c.source == "handoff"))


def next_local_steps(config: JobConfig, headers: list[dict], k: int) -> int:
    """K for the next round, from the round's headers (identical on every worker).

    With measured communication c per round and compute s per local step, a round costs
    c + K*s and communicates c / (c + K*s); K is moved halfway towards the value that makes
    that `comm_target`, so one noisy round cannot swing it.
    """
    if config.mode == "sync":
        return 1
    if config.local_steps:
        return config.local_steps
    comm = [h["comm_s"] for h in headers if h.get("comm_s") is not None]
    step = [h["compute_s"] / h["k"] for h in headers if h.get("k")]
    if not comm or not step or max(step) <= 0:
        return k
    needed = max(comm) * (1 - config.comm_target) / config.comm_target / (sum(step) / len(step))
    return max(1, min(config.max_local_steps, math.ceil((k + needed) / 2)))


class Worker:
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
        self.storage, self.config, self.worker, self.owner = storage, config, worker, owner
        self.deadline_s, self.handoff = deadline_s, handoff
        self.layout = JobLayout(config.job)
        self.timer = Timer()
        self.exchange = Exchange(storage, self.timer, threads=config.workers + 3)
        self._superseded = threading.Event()
        self._round_walls: list[float] = []
        self._stats_at = 0.0
        self._owner_checked_at = time.monotonic()
        self._left_out: list[dict] = []
        self._last_checkpoint: int | None = None
        self._refused: list[str] = []
        self._checkpoint_write = None
        self.rounds_run = 0

    # -- ownership and progress -------------------------------------------------------------

    def _claim(self) -> None:
        self.storage.put_json(self.layout.worker_info(self.worker), {"owner": self.owner, "since": time.time()})

    def _check_owner(self) -> None:
        try:
            if self.storage.get_json(self.layout.worker_info(self.worker)).get("owner") != self.owner:
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

    def _stats(self, state: str, position: dict, **extra) -> dict:
        return {
            "owner": self.owner,
            "state": state,
            "time": time.time(),
            "rounds": self.rounds_run,
            "active_s": round(time.perf_counter() - self._started, 3),
            **position,
            **self.timer.report(),
            "left_out": self._left_out[-20:],
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
        self.exchange.submit(self.storage.put_json, self.layout.worker_stats(self.worker), stats)
        self.exchange.submit(self._check_owner)

    # -- one round ----------------------------------------------------------------------------

    def _included(self, number: int) -> list[int]:
        """The workers whose updates make this round: all, or with a quorum what worker 0 decided."""
        n, quorum = self.config.workers, self.config.effective_quorum
        if quorum >= n:
            return list(range(n))
        key = self.layout.decision(number)
        if self.worker != 0:
            blob = self.exchange.gather([key], self.config.worker_timeout_s, self._stopping)[key]
            return json.loads(blob)["workers"]
        try:
            return self.storage.get_json(key)["workers"]
        except ObjectNotFoundError:
            pass
        started = time.perf_counter()
        present: set[int] = set()
        quorum_at = None
        delay = POLL_FIRST_S
        while len(present) < n:
            present |= {j for j in range(n) if j not in present and self.storage.exists(self.layout.update(number, j))}
            now = time.perf_counter()
            if quorum_at is None and len(present) >= quorum:
                quorum_at = now
            if quorum_at is not None and now - quorum_at >= self.config.straggler_wait_s:
                break
            if now - started > self.config.worker_timeout_s:
                raise TrainingError(
                    f"round {number}: fewer than {quorum} updates after {self.config.worker_timeout_s:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
        self.timer.add("wait_s", time.perf_counter() - started)
        workers = sorted(present)
        if len(workers) < n:
            self._left_out.append({"round": number, "workers": sorted(set(range(n)) - present)})
        self.storage.put_json(key, {"workers": workers, "time": time.time()})
        return workers

    def _done_already(self, number: int) -> bool:
        """True for an update already in storage (a replay), or one a quorum decision left out already.

        The second lets a straggler skip rounds its peers finished without it and catch up.
        """
        if self.storage.exists(self.layout.update(number, self.worker)):
            return True
        if self.config.effective_quorum < self.config.workers:
            try:
                return self.worker not in self.storage.get_json(self.layout.decision(number))["workers"]
            except ObjectNotFoundError:
                return False
        return False

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
        """Deletes updates and decisions of rounds before `keep_from` (the previous checkpoint).

        Checkpoints are the coordinator's to delete, once it has evaluated them.
        """
        stale = [
            key
            for prefix in ("updates/", "rounds/")
            for key in self.storage.list_keys(self.layout.prefix + prefix)
            if self.layout.round_of(key) < keep_from
        ]
        self.storage.delete_keys(stale)

    # -- the loop -------------------------------------------------------------------------------

    def _time_left_s(self) -> float:
        return float("inf") if self.deadline_s is None else self.deadline_s - time.time()

    def _should_hand_off(self) -> bool:
        if self.handoff is None or self.rounds_run == 0:
            return False
        limit = self.config.rounds_per_run
        recent = max(self._round_walls[-20:], default=0.0)
        return bool(limit and self.rounds_run >= limit) or self._time_left_s() < 5.0 + 3 * recent

    def run(self) -> dict:
        """Raises TrainingError when a peer's update never arrives or storage holds damaged data."""
        self._started = time.perf_counter()
        try:
            return self._run()
        finally:
            self.exchange.close()

    def _run(self) -> dict:
        config = self.config
        self._claim()
        trainer, sgd, cursor, size = self._prepare()
        total, every = config.total_batches(size), config.checkpoint_every(size)
        while cursor.batch < total:
            if self._superseded.is_set():
                return {"state": "superseded", **self._stats("superseded", cursor.position())}
            if self._should_hand_off():
                return self._hand_off(
                    cursor.position(), cursor.vector, sgd.buffer if config.mode == "sync" else trainer.momentum_vector()
                )
            round_started = time.perf_counter()
            if config.mode == "sync":
                cursor.k = 1
            else:
                cursor.k = max(1, min(cursor.k, total - cursor.batch, every - cursor.batch % every))
            own = self._compute(trainer, cursor)
            comm_started = time.perf_counter()
            try:
                included = self._included(cursor.round)
                keys = [
                    self.layout.update(cursor.round, j) for j in included if not (j == self.worker and own is not None)
                ]
                blobs = self.exchange.gather(keys, config.worker_timeout_s, self._stopping)
            except InterruptedError:
                continue
            headers = self._apply(cursor, sgd, size, self._round_updates(cursor, included, blobs, own))
            cursor.last_comm_s = round(time.perf_counter() - comm_started, 6)
            self._advance(cursor, next_local_steps(config, headers, cursor.k), sgd, total, every)
            self._round_walls.append(time.perf_counter() - round_started)
            self._report_progress(cursor.position())
        self.exchange.finish()
        stats = self._stats("done", cursor.position())
        self.storage.put_json(self.layout.worker_stats(self.worker), stats)
        return {"state": "done", **stats}

    def _prepare(self) -> tuple[Trainer, FlatSGD, _Cursor, int]:
        """Loads the data and takes over from the start point: (trainer, optimizer, cursor, train size)."""
        config, w = self.config, self.worker
        images, labels = data.load(config.data, self.storage, train=True)
        size = data.train_size(config, len(labels))
        torch.set_num_threads(config.threads)
        trainer = Trainer(config, w, images, labels, size)
        start = start_point(self.storage, config, w)
        self._refused = start.refused
        if start.source == "handoff":
            self.storage.delete(self.layout.handoff(w))
        sgd = FlatSGD(config, start.momentum if config.mode == "sync" else None)
        if config.mode == "local":
            trainer.set_momentum(start.momentum)
        self.timer.add("startup_s", time.perf_counter() - self._started)
        return trainer, sgd, _Cursor(start.round, start.batch, start.k, start.vector), size

    def _compute(self, trainer: Trainer, cursor: _Cursor) -> tuple[dict, torch.Tensor] | None:
        """This worker's update of the round, put to storage and returned as the peers will read it.

        None when storage holds it already (a replay) or a quorum decision left this worker out.
        """
        config = self.config
        check = cursor.replaying or config.effective_quorum < config.workers
        if check and self._done_already(cursor.round):
            return None
        cursor.replaying = False
        compute_started = time.perf_counter()
        if config.mode == "sync":
            update, loss = trainer.gradient(cursor.vector, cursor.batch)
        else:
            update, loss = trainer.local_steps(cursor.vector, cursor.batch, cursor.k)
        compute_s = time.perf_counter() - compute_started
        self.timer.add("compute_s", compute_s)
        header = {
            "round": cursor.round,
            "worker": self.worker,
            "batch": cursor.batch,
            "k": cursor.k,
            "loss": round(loss, 5),
            "compute_s": round(compute_s, 6),
            "comm_s": cursor.last_comm_s,
        }
        blob = encode(update, header, config.compress)
        own = decode(blob)  # what the peers will read, compression included
        self.exchange.put_async(self.layout.update(cursor.round, self.worker), blob, scratch=True)
        return own

    def _round_updates(
        self, cursor: _Cursor, included: list[int], blobs: dict[str, bytes], own: tuple[dict, torch.Tensor] | None
    ) -> list[tuple[dict, torch.Tensor]]:
        """The round's updates in worker order, this worker's own included.

        Raises TrainingError when they disagree on the batch or K: storage holds another run's updates.
        """
        updates = {int(key.rsplit("/", 1)[1]): decode(blob, key) for key, blob in blobs.items()}
        if own is not None and self.worker in included:
            updates[self.worker] = own
        self.exchange.flush()
        ordered = [updates[j] for j in sorted(updates)]
        if any(h["batch"] != cursor.batch or h["k"] != cursor.k for h, _ in ordered):
            raise TrainingError(
                f"round {cursor.round}: the updates disagree on the batch or K "
                f"({[(h['worker'], h['batch'], h['k']) for h, _ in ordered]}); "
                "the job's storage holds updates of another run"
            )
        return ordered

    def _apply(self, cursor: _Cursor, sgd: FlatSGD, size: int, updates: list[tuple[dict, torch.Tensor]]) -> list[dict]:
        """Averages the round's updates into the model (an SGD step in sync mode); returns their headers."""
        mean = torch.stack([vector for _, vector in updates]).mean(dim=0)
        if self.config.mode == "sync":
            cursor.vector = sgd.step(cursor.vector, mean, self.config.lr_at(cursor.batch, size))
        else:
            cursor.vector = cursor.vector + mean
        return [header for header, _ in updates]

    def _advance(self, cursor: _Cursor, next_k: int, sgd: FlatSGD, total: int, every: int) -> None:
        """Moves past the round; worker 0 checkpoints at each evaluation point and at the end."""
        cursor.batch += cursor.k
        cursor.round += 1
        if self.worker == 0 and (cursor.batch % every == 0 or cursor.batch >= total):
            self._checkpoint(cursor.round, cursor.batch, next_k, cursor.vector, sgd.buffer)
        cursor.k = next_k
        self.rounds_run += 1

    def _hand_off(self, position: dict, vector: torch.Tensor, momentum) -> dict:
        """Saves this worker's state at a round boundary and starts its successor, which claims the worker."""
        self.exchange.finish()
        self.storage.put_bytes(self.layout.handoff(self.worker), state_blob(vector, momentum, position))
        successor = self.handoff()
        stats = self._stats("continued", position, successor=successor)
        self.storage.put_json(self.layout.worker_stats(self.worker), stats)
        return {**stats, "state": "continued", "successor": successor}
