"""The parameter server of the `ps` topology: it owns the model and the optimizer, and publishes each round's model.

Each round it reads the workers' updates of the round as they arrive (updates/<round>/<w>),
averages them in worker order, applies the mean (sync: one SGD step with momentum; local:
adds the mean delta) and puts the model the next round starts from as weights/<round+1>,
with the next round's K in its header; the workers read it instead of each other's updates.
It writes the checkpoints. It is long-lived like a worker (mlcore.training.worker.LongLived):
it claims the slot `ps`, reports progress, hands off to a successor before its deadline,
and a replacement starts from the newest checkpoint and replays the rounds since from the
updates in storage, to the same model (and momentum), rewriting nothing already published.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..mnist import TRAIN_SIZE
from . import data
from .exchange import decode
from .job import PS, JobConfig, TrainingError
from .state import start_point, state_blob
from .topology import Cursor, in_worker_order, mean_of, next_local_steps, round_steps
from .trainer import FlatSGD
from .worker import LongLived


class ParameterServer(LongLived):
    """Runs the PS's rounds until the job ends, its deadline nears, or a newer owner takes over."""

    def __init__(
        self,
        storage,
        config: JobConfig,
        *,
        owner: str,
        deadline_s: float | None = None,
        handoff: Callable[[], str] | None = None,
        train_size: int = TRAIN_SIZE,
    ) -> None:
        if config.topology != "ps":
            raise TrainingError(f"job {config.job} has topology {config.topology!r}: it has no parameter server")
        super().__init__(storage, config, PS, owner=owner, deadline_s=deadline_s, handoff=handoff)
        self.size = data.train_size(config, train_size)

    def _run(self) -> dict:
        config = self.config
        self._claim()
        start = start_point(self.storage, config, PS)
        self._refused = start.refused
        if start.source == "handoff":
            self.storage.delete(self.layout.handoff(PS))
        sgd = FlatSGD(config, start.momentum if config.mode == "sync" else None)
        cursor = Cursor(start.round, start.batch, start.k, start.vector)
        total, every = config.total_batches(self.size), config.checkpoint_every(self.size)
        self.timer.add("startup_s", time.perf_counter() - self._started)
        while cursor.batch < total:
            if self._superseded.is_set():
                return self._superseded_result(cursor.position())
            if self._should_hand_off():
                return self._hand_off(cursor.position(), cursor.vector, sgd.buffer)
            round_started = time.perf_counter()
            cursor.k = round_steps(config, cursor, total, every)
            try:
                updates = self._gather_updates(cursor)
            except InterruptedError:
                continue
            compute_started = time.perf_counter()
            if config.mode == "sync":
                cursor.vector = sgd.step(cursor.vector, mean_of(updates), config.lr_at(cursor.batch, self.size))
            else:
                cursor.vector = cursor.vector + mean_of(updates)
            next_k = next_local_steps(config, [header for header, _ in updates], cursor.k)
            cursor.batch += cursor.k
            cursor.round += 1
            self._publish(cursor, next_k)
            self.timer.add("compute_s", time.perf_counter() - compute_started)
            if cursor.batch % every == 0 or cursor.batch >= total:
                self._checkpoint(cursor.round, cursor.batch, next_k, cursor.vector, sgd.buffer)
            cursor.k = next_k
            self.rounds_run += 1
            self._round_walls.append(time.perf_counter() - round_started)
            self._report_progress(cursor.position())
        return self._done(cursor.position())

    def _gather_updates(self, cursor: Cursor) -> list[tuple[dict, torch.Tensor]]:
        """The round's updates in worker order, waiting for the ones not there yet.

        Raises:
            TrainingError: an update did not appear in time, or storage holds another run's.
            InterruptedError: a replacement took over this PS while it waited.
        """
        keys = [self.layout.update(cursor.round, w) for w in range(self.config.workers)]
        blobs = self.exchange.gather(keys, self.config.worker_timeout_s, self._stopping)
        self.exchange.flush()  # the previous round's model: its put time is on the path
        updates = {int(key.rsplit("/", 1)[1]): decode(blob, key) for key, blob in blobs.items()}
        return in_worker_order(cursor.round, cursor.batch, cursor.k, updates)

    def _publish(self, cursor: Cursor, next_k: int) -> None:
        """Puts weights/<round>, the model the round starts from; a replay keeps what was published already."""
        key = self.layout.weights(cursor.round)
        if cursor.replaying:
            if self.storage.exists(key):
                return
            cursor.replaying = False
        header = {"round": cursor.round, "batch": cursor.batch, "k": next_k}
        self.exchange.put_async(key, state_blob(cursor.vector, None, header), scratch=True)
