"""Updates through object storage: their blobs, puts off the critical path, gets that wait.

An update is a flat vector and a small JSON header (round, first batch, local steps, the
worker's measured compute and communication time), stored in the weights format
(mlcore.weights), whose digest refuses a damaged one by its key. Every worker reads the same headers,
so a decision taken from them (the next round's number of local steps) is the same on all
workers without any message between them.

Updates are stored as REDUCED_REDUNDANCY, S3's class for data that can be reproduced: a
lost update is recomputed by the replay that any restart does. On the embedded endpoint
that skips the fsyncs that are most of a PUT's latency.

S3 has no notification, so a reader polls for a key that is not there yet, with a backoff
that starts at a millisecond (an update usually arrives within one compute step) and is
capped so that N workers waiting never make a request storm. The embedded S3 can do
better: asked to, it answers a GET of a missing key when the key is put, so a reader's
one request is its whole wait; a reader finds out which kind its endpoint is from the
first miss (S3 answers it at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from .. import weights
from ..errors import DamagedError, ObjectNotFoundError, StorageError
from ..storage import WEIGHTS_TYPE
from .job import TrainingError

POLL_FIRST_S = 0.001
POLL_MAX_S = 0.016
LONG_POLL_S = 1.0  # short enough that a wait notices stop() about as soon as the polling did
SCRATCH_CLASS = "REDUCED_REDUNDANCY"


def encode(vector: torch.Tensor, header: dict, compress: str = "none") -> bytes:
    """An update's blob; "fp16" halves it, and its peers read back exactly what it rounded to."""
    return encode_read(vector, header, compress)[0]


def encode_read(vector: torch.Tensor, header: dict, compress: str = "none") -> tuple[bytes, tuple[dict, torch.Tensor]]:
    """(the blob, (header, vector) as a peer decodes it) without decoding it: the writer's own copy of its update.

    The vector is the stored one widened back to fp32, as `decode` gives it, so every worker
    averages the same values; the header is the one stored (JSON keeps its numbers exactly).
    """
    stored = vector.to(torch.float16 if compress == "fp16" else torch.float32)
    blob = weights.encode({"update": stored}, header)
    return blob, (header, stored.to(torch.float32) if stored.dtype != torch.float32 else stored.clone())


def decode(blob: bytes, where: str = "a stored update") -> tuple[dict, torch.Tensor]:
    """(header, fp32 vector); `where` names the blob (its key) in errors.

    Raises:
        DamagedError: the bytes are not whole, or hold no update.
    """
    tensors, header = weights.decode(blob, where)
    if not isinstance(tensors.get("update"), torch.Tensor):
        raise DamagedError(f"{where} is damaged: it holds no update")
    return header, tensors["update"].to(torch.float32)


class Timer:
    """Seconds per phase, bytes per direction and requests, summed over a worker's rounds."""

    PHASES = ("compute_s", "get_s", "put_s", "wait_s", "startup_s", "compute_cpu_s")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.bytes_in = 0
        self.bytes_out = 0
        self.misses = 0  # polls that found nothing yet: each costs the endpoint a request
        self.requests = 0  # every PUT and GET the exchange sent, the misses included
        self._lock = threading.Lock()  # the exchange's threads count at once

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    def count(self, missed: bool = False) -> None:
        """One request sent; `missed`: a GET that found nothing yet."""
        with self._lock:
            self.requests += 1
            self.misses += missed

    def report(self) -> dict:
        return {
            **{k: round(v, 4) for k, v in self.seconds.items()},
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "misses": self.misses,
            "exchange_requests": self.requests,
        }


class Exchange:
    """One worker's traffic: puts in the background, gets in parallel, polling for what is not there yet."""

    def __init__(self, storage, timer: Timer, threads: int = 4) -> None:
        self.storage, self.timer = storage, timer
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exchange")
        self._pending: list[Future] = []
        self._background: list[Future] = []
        self._scratch_class: str | None = SCRATCH_CLASS
        self._lag = 0.0
        self._long_poll = True  # until the endpoint answers a waiting GET at once

    def put_async(self, key: str, blob: bytes, scratch: bool = False) -> Future:
        """`scratch`: data a replay can recompute, stored as REDUCED_REDUNDANCY where the endpoint has it."""
        self.timer.bytes_out += len(blob)
        future = self._pool.submit(self._put, key, blob, scratch)
        self._pending.append(future)
        return future

    def _put(self, key: str, blob: bytes, scratch: bool) -> None:
        kind = WEIGHTS_TYPE if blob[: len(weights.MAGIC)] == weights.MAGIC else "application/octet-stream"
        if scratch and self._scratch_class:
            self.timer.count()
            try:
                return self.storage.put_bytes(key, blob, kind, self._scratch_class)
            except StorageError as exc:
                if "InvalidStorageClass" not in str(exc):
                    raise
                self._scratch_class = None  # an endpoint with STANDARD only (Ceph RGW's default)
        self.timer.count()
        self.storage.put_bytes(key, blob, kind)

    def flush(self) -> None:
        """Waits for every background put; the time it blocks is the put cost on the critical path."""
        started = time.perf_counter()
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        self.timer.add("put_s", time.perf_counter() - started)

    def submit(self, fn: Callable, *args) -> Future:
        """Fire and forget (progress reports): not waited for by `flush`."""
        return self._pool.submit(fn, *args)

    def background(self, fn: Callable, *args) -> Future:
        """Work off the critical path that must be done before the worker ends (checkpoints); see `finish`."""
        future = self._pool.submit(fn, *args)
        self._background.append(future)
        return future

    def finish(self) -> None:
        """Waits for every put and background write; raises the first one's error."""
        self.flush()
        background, self._background = self._background, []
        for future in background:
            future.result()

    def _poll(
        self, key: str, deadline: float, stop: Callable[[], bool], head_start: float = 0.0
    ) -> tuple[bytes, float]:
        """(the key's bytes, when it was found): the start of the request that found it, or its end after a wait."""
        delay = POLL_FIRST_S
        if head_start > 0 and not self._long_poll:
            time.sleep(head_start)
        while True:
            started = time.perf_counter()
            wait_s = min(LONG_POLL_S, max(0.0, deadline - time.monotonic())) if self._long_poll else 0.0
            try:
                if wait_s > 0:
                    blob, found = self.storage.get_bytes(key, wait_s=wait_s), time.perf_counter()
                else:
                    blob, found = self.storage.get_bytes(key), started
                self.timer.count()
                return blob, found
            except ObjectNotFoundError:
                self.timer.count(missed=True)
                if wait_s > 0 and time.perf_counter() - started < wait_s / 2:
                    self._long_poll = False  # answered at once: the endpoint does not wait
            if time.monotonic() > deadline:
                raise TrainingError(f"{key} did not appear in time")
            if stop():
                raise InterruptedError(key)
            if not self._long_poll:
                time.sleep(delay)
                delay = min(delay * 2, POLL_MAX_S)

    def gather(self, keys: list[str], timeout_s: float, stop: Callable[[], bool] = lambda: False) -> dict[str, bytes]:
        """Every key's bytes, waiting for the missing ones.

        The time until the last key appeared is waiting (for slower workers); the rest is get.

        Raises:
            TrainingError: a key did not appear within `timeout_s`.
            InterruptedError: `stop()` turned true while waiting.
        """
        if not keys:
            return {}
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        # the peers' updates took about `_lag` to appear last round: asking much sooner only costs requests
        head_start = min(0.7 * self._lag, POLL_MAX_S)
        if len(keys) == 1:  # waited for here: a hand-off to a pool thread and back costs CPU on the critical path
            results = {keys[0]: self._poll(keys[0], deadline, stop, head_start)}
        else:
            futures = {key: self._pool.submit(self._poll, key, deadline, stop, head_start) for key in keys}
            results = {key: future.result() for key, future in futures.items()}
        ended = time.perf_counter()
        last_found = max(found for _, found in results.values())
        self._lag = 0.5 * self._lag + 0.5 * (last_found - started)
        self.timer.add("wait_s", max(0.0, last_found - started))
        self.timer.add("get_s", ended - max(started, last_found))
        blobs = {key: blob for key, (blob, _) in results.items()}
        self.timer.bytes_in += sum(len(b) for b in blobs.values())
        return blobs

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
