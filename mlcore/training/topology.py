"""How a round's updates become the next model: one strategy per topology, used by the worker loop.

Every topology gives every worker the mean of the round's updates, taken in worker order,
applied as one SGD step (sync) or added (local); they differ in who reads what:

- `AllReduce`: each worker puts its whole update and reads all its peers' (N-1 updates in per
  worker and round; one round trip). The only one with a quorum: a round may go on without
  stragglers, as worker 0 decides.
- `ScatterReduce` (LambdaML's ScatterReduce): the update is cut into N contiguous shards;
  worker i reads shard i of every peer's update, puts the mean of shard i, then reads the
  others' mean shards (2(N-1)/N of an update in per worker and round, in two round trips).
- `ParameterServerClient`: the worker's half of the `ps` topology: it puts its update and
  reads the model the parameter server (mlcore.training.ps) publishes for the next round
  (one model in per worker and round), which owns the optimizer and the checkpoints.

A strategy keeps to the Exchange's public calls (put_async, gather, flush), so how the
exchange moves bytes is not its business. Replays read what storage holds and recompute
only what is missing, so a replaced worker rejoins with the model it would have had.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ObjectNotFoundError
from .exchange import POLL_FIRST_S, POLL_MAX_S, Exchange, Timer, decode, encode_read
from .job import JobConfig, JobLayout, TrainingError
from .state import split_state
from .trainer import FlatSGD

Update = tuple[dict, torch.Tensor]  # (header, fp32 vector) as the peers read it back


@dataclass
class Cursor:
    """Where a worker (or the PS) is: replaying until it first computes what storage lacks."""

    round: int
    batch: int
    k: int
    vector: torch.Tensor
    replaying: bool = True
    last_comm_s: float | None = None

    def position(self) -> dict:
        return {"round": self.round, "batch": self.batch, "k": self.k}


@dataclass
class Link:
    """What a topology uses of its worker: the job, its index, storage and the exchange, and a stop check."""

    config: JobConfig
    layout: JobLayout
    worker: int
    storage: object
    exchange: Exchange
    timer: Timer
    stopping: Callable[[], bool]


def round_steps(config: JobConfig, cursor: Cursor, total: int, every: int) -> int:
    """K of this round: 1 in sync mode; in local mode bounded so a round never crosses a checkpoint or the end."""
    if config.mode == "sync":
        return 1
    return max(1, min(cursor.k, total - cursor.batch, every - cursor.batch % every))


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


def in_worker_order(number: int, batch: int, k: int, updates: dict[int, Update]) -> list[Update]:
    """The round's updates in worker order.

    Raises TrainingError when they disagree with the round on the batch or K: storage holds another run's updates.
    """
    ordered = [updates[j] for j in sorted(updates)]
    if any(h["batch"] != batch or h["k"] != k for h, _ in ordered):
        raise TrainingError(
            f"round {number}: the updates disagree on the batch or K "
            f"({[(h['worker'], h['batch'], h['k']) for h, _ in ordered]}); "
            "the job's storage holds updates of another run"
        )
    return ordered


def mean_of(updates: list[Update]) -> torch.Tensor:
    return torch.stack([vector for _, vector in updates]).mean(dim=0)


def shard_bounds(length: int, shards: int) -> list[tuple[int, int]]:
    """[start, end) of `shards` contiguous pieces of a vector; the first ones one longer where it does not divide."""
    size, extra = divmod(length, shards)
    bounds, start = [], 0
    for i in range(shards):
        end = start + size + (i < extra)
        bounds.append((start, end))
        start = end
    return bounds


class Topology:
    """The common half: putting this worker's update, and applying a mean update to the model."""

    name = ""
    writes_checkpoints = True  # worker 0 writes them; with a parameter server the PS does

    def __init__(self, link: Link, momentum: torch.Tensor | None) -> None:
        self.link, self.config, self.layout = link, link.config, link.layout
        self.sgd = FlatSGD(self.config, momentum if self.config.mode == "sync" else None)
        self.left_out: list[dict] = []

    def momentum(self) -> torch.Tensor | None:
        """The sync optimizer state that checkpoints and hand-offs carry."""
        return self.sgd.buffer if self.config.mode == "sync" else None

    def must_check(self) -> bool:
        """Whether each round, not only a replay, asks storage first whether this worker's update is needed."""
        return False

    def has_update(self, number: int) -> bool:
        """Whether storage holds everything this worker would put for the round (a replay skips computing it)."""
        return self.link.storage.exists(self.layout.update(number, self.link.worker))

    def put(self, number: int, update: torch.Tensor, header: dict) -> Update:
        """Puts this worker's update; returns it as the peers will read it, compression included."""
        blob, own = encode_read(update, header, self.config.compress)
        self.link.exchange.put_async(self.layout.update(number, self.link.worker), blob, scratch=True)
        return own

    def reduce(self, cursor: Cursor, own: Update | None, size: int, replay: bool) -> tuple[torch.Tensor, int]:
        """(the model after the round, the next round's K); `own` is None where storage held it (a replay).

        Raises:
            TrainingError: an update did not appear in time, or storage holds another run's.
            InterruptedError: a replacement took over this worker while it waited.
        """
        raise NotImplementedError

    def _step(self, cursor: Cursor, mean: torch.Tensor, size: int) -> torch.Tensor:
        if self.config.mode == "sync":
            return self.sgd.step(cursor.vector, mean, self.config.lr_at(cursor.batch, size))
        return cursor.vector + mean

    def _gather(self, keys: list[str]) -> dict[str, bytes]:
        return self.link.exchange.gather(keys, self.config.worker_timeout_s, self.link.stopping)


class AllReduce(Topology):
    """Every worker reads every update and averages them itself; with a quorum worker 0 decides who is in."""

    name = "allreduce"

    def must_check(self) -> bool:
        return self.config.effective_quorum < self.config.workers

    def has_update(self, number: int) -> bool:
        """Also true when a quorum decision left this worker out already: a straggler skips to catch up."""
        if super().has_update(number):
            return True
        if self.must_check():
            try:
                return self.link.worker not in self.link.storage.get_json(self.layout.decision(number))["workers"]
            except ObjectNotFoundError:
                return False
        return False

    def reduce(self, cursor: Cursor, own: Update | None, size: int, replay: bool) -> tuple[torch.Tensor, int]:
        me = self.link.worker
        included = self._included(cursor.round)
        keys = [self.layout.update(cursor.round, j) for j in included if not (j == me and own is not None)]
        blobs = self._gather(keys)
        updates = {int(key.rsplit("/", 1)[1]): decode(blob, key) for key, blob in blobs.items()}
        if own is not None and me in included:
            updates[me] = own
        self.link.exchange.flush()
        ordered = in_worker_order(cursor.round, cursor.batch, cursor.k, updates)
        headers = [header for header, _ in ordered]
        return self._step(cursor, mean_of(ordered), size), next_local_steps(self.config, headers, cursor.k)

    def _included(self, number: int) -> list[int]:
        """The workers whose updates make this round: all, or with a quorum what worker 0 decided."""
        config, storage, layout = self.config, self.link.storage, self.layout
        n, quorum = config.workers, config.effective_quorum
        if quorum >= n:
            return list(range(n))
        key = layout.decision(number)
        if self.link.worker != 0:
            return json.loads(self._gather([key])[key])["workers"]
        try:
            return storage.get_json(key)["workers"]
        except ObjectNotFoundError:
            pass
        started = time.perf_counter()
        present: set[int] = set()
        quorum_at = None
        delay = POLL_FIRST_S
        while len(present) < n:
            present |= {j for j in range(n) if j not in present and storage.exists(layout.update(number, j))}
            now = time.perf_counter()
            if quorum_at is None and len(present) >= quorum:
                quorum_at = now
            if quorum_at is not None and now - quorum_at >= config.straggler_wait_s:
                break
            if now - started > config.worker_timeout_s:
                waited = f"{config.worker_timeout_s:.0f} s"
                raise TrainingError(f"round {number}: fewer than {quorum} updates after {waited}")
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
        self.link.timer.add("wait_s", time.perf_counter() - started)
        workers = sorted(present)
        if len(workers) < n:
            self.left_out.append({"round": number, "workers": sorted(set(range(n)) - present)})
        storage.put_json(key, {"workers": workers, "time": time.time()})
        return workers


class ScatterReduce(Topology):
    """Worker i reduces shard i of the round's updates for everyone; everyone reads the N reduced shards.

    A reduced shard carries every worker's header, so each worker reads the same headers
    (and chooses the same next K) as with all-reduce. It is stored after this worker's own
    shards are, so a stored reduced shard says this worker's part of the round is in storage.
    Rounding: with compress=fp16 the reduced shard is rounded to fp16 again; with none it is
    the all-reduce's mean, bit for bit.
    """

    name = "scatter"

    def has_update(self, number: int) -> bool:
        """True when every shard of this worker's update is either stored or no longer needed (its mean is stored)."""
        exists, me = self.link.storage.exists, self.link.worker
        for j in range(self.config.workers):
            if exists(self.layout.reduced(number, j)):
                continue
            if j != me and exists(self.layout.shard(number, me, j)):
                continue
            return False
        return True

    def put(self, number: int, update: torch.Tensor, header: dict) -> Update:
        """Puts the shards the peers reduce; returns this worker's own shard, which only it reads."""
        me, own = self.link.worker, None
        for j, (start, end) in enumerate(shard_bounds(update.numel(), self.config.workers)):
            blob, read = encode_read(update[start:end], header, self.config.compress)
            if j == me:
                own = read
            else:
                self.link.exchange.put_async(self.layout.shard(number, me, j), blob, scratch=True)
        return own

    def reduce(self, cursor: Cursor, own: Update | None, size: int, replay: bool) -> tuple[torch.Tensor, int]:
        number, me, n = cursor.round, self.link.worker, self.config.workers
        mine_key = self.layout.reduced(number, me)
        reduced: dict[int, Update] = {}
        if own is None or (replay and self.link.storage.exists(mine_key)):
            keys = [self.layout.reduced(number, j) for j in range(n)]
        else:
            reduced[me] = self._reduce_shard(cursor, own)
            keys = [self.layout.reduced(number, j) for j in range(n) if j != me]
        for key, blob in self._gather(keys).items():
            reduced[int(key.rsplit("/", 1)[1])] = decode(blob, key)
        mean = torch.cat([reduced[j][1] for j in range(n)])
        headers = reduced[0][0].get("updates") or []
        in_worker_order(number, cursor.batch, cursor.k, {j: (h, mean) for j, h in enumerate(headers)})
        if mean.numel() != cursor.vector.numel() or len(headers) != n:
            raise TrainingError(
                f"round {number}: the reduced shards hold {mean.numel()} values of {len(headers)} workers, "
                f"not {cursor.vector.numel()} of {n}; the job's storage holds shards of another run"
            )
        return self._step(cursor, mean, size), next_local_steps(self.config, headers, cursor.k)

    def _reduce_shard(self, cursor: Cursor, own: Update) -> Update:
        """The mean of shard i over the workers, put for the peers; returned as they will read it."""
        number, me = cursor.round, self.link.worker
        keys = [self.layout.shard(number, j, me) for j in range(self.config.workers) if j != me]
        blobs = self._gather(keys)
        parts = {int(key.rsplit("/", 1)[1].split(".")[0]): decode(blob, key) for key, blob in blobs.items()}
        parts[me] = own
        self.link.exchange.flush()  # this worker's shards are stored before its reduced shard
        ordered = in_worker_order(number, cursor.batch, cursor.k, parts)
        header = {"round": number, "shard": me, "updates": [h for h, _ in ordered]}
        blob, own = encode_read(mean_of(ordered), header, self.config.compress)
        self.link.exchange.put_async(self.layout.reduced(number, me), blob, scratch=True)
        return own


class ParameterServerClient(Topology):
    """A worker of the `ps` topology: puts its update, reads the model the parameter server publishes."""

    name = "ps"
    writes_checkpoints = False

    def momentum(self) -> torch.Tensor | None:
        return None  # the PS's

    def has_update(self, number: int) -> bool:
        """Also true once the PS published the round's model: the update is not needed any more."""
        return self.link.storage.exists(self.layout.weights(number + 1)) or super().has_update(number)

    def reduce(self, cursor: Cursor, own: Update | None, size: int, replay: bool) -> tuple[torch.Tensor, int]:
        key = self.layout.weights(cursor.round + 1)
        blob = self._gather([key])[key]
        self.link.exchange.flush()
        header, vector, _ = split_state(blob, key)
        if header.get("batch") != cursor.batch + cursor.k or vector.numel() != cursor.vector.numel():
            raise TrainingError(
                f"{key} is the model after batch {header.get('batch')}, not {cursor.batch + cursor.k}; "
                "the job's storage holds weights of another run"
            )
        return vector, header["k"]


TOPOLOGY_CLASSES = {cls.name: cls for cls in (AllReduce, ScatterReduce, ParameterServerClient)}


def for_worker(link: Link, momentum: torch.Tensor | None) -> Topology:
    return TOPOLOGY_CLASSES[link.config.topology](link, momentum)
