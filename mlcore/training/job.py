"""A training job: its settings, its keys in object storage, and the learning-rate schedule.

Workers exchange updates through storage in rounds. Every key carries its round, and an
update depends only on (round, worker) and what came before, so a retried or replaced
worker rewrites the same object and reading the same keys gives every worker the same model:

    jobs/<job>/config.json                 the JobConfig
    jobs/<job>/status.json                 the coordinator that owns the job, and its state
    jobs/<job>/updates/<round>/<worker>    a worker's update: gradient (sync) or model delta (local)
    jobs/<job>/rounds/<round>              which updates make the round (only with a quorum)
    jobs/<job>/checkpoints/<round>         model (and sync optimizer state) after round-1; worker 0 writes it
    jobs/<job>/checkpoint.json             the newest checkpoint: where a replacement starts
    jobs/<job>/workers/<worker>.json       the activation that owns the worker's slot (a newer one supersedes)
    jobs/<job>/workers/<worker>.stats.json rounds done and the time split, about every second
    jobs/<job>/workers/<worker>.handoff    the state a worker hands its successor at its deadline
    jobs/<job>/metrics.jsonl               the coordinator's events (start, eval, replaced, done, ...)
    jobs/<job>/final.pt                    the finished model as a state dict of `model` (LeNet-5 by default)
"""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, fields

from ..compute import PRECISIONS
from ..errors import MLCoreError
from ..model import MODELS

MODES = ("sync", "local")
TOPOLOGIES = ("allreduce", "scatter", "ps")
COMPRESSIONS = ("none", "fp16")
DATA_SOURCES = ("s3", "local")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ROUND_DIGITS = 9


class TrainingError(MLCoreError):
    """Distributed training failed or was given settings it cannot run."""


def new_job_name() -> str:
    return time.strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _as_bool(value) -> bool:
    """A bool, or its spelling in JSON or on a command line: true/false or 1/0 (bool("false") would be True).

    Raises:
        ValueError: anything else, "yes" and 2 included.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    raise ValueError(f"{value!r} is not true, false, 1 or 0")


@dataclass(frozen=True)
class JobConfig:
    """Everything that decides a job's result; stored as config.json so a resumed job is the same job.

    `batch_size` is the global batch of one step, split evenly over the workers, so the
    same settings give the same optimisation whatever the number of workers: in sync mode
    every step averages the workers' gradients (one step of a single process on the whole
    batch); in local mode each worker takes `local_steps` SGD steps on its share, then the
    models are averaged. `local_steps=0` lets the workers choose it each round so that
    communication stays near `comm_target` of the wall time.
    """

    job: str
    workers: int = 2
    epochs: int = 3
    batch_size: int = 128
    mode: str = "local"
    local_steps: int = 0
    comm_target: float = 0.2
    max_local_steps: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    warmup_epochs: float = 0.5
    precision: str = "auto"
    channels_last: bool = True
    threads: int = 1
    compress: str = "fp16"
    quorum: int = 0
    straggler_wait_s: float = 1.0
    retries: int = 2
    worker_timeout_s: float = 120.0
    seed: int = 0
    data: str = "s3"
    train_limit: int = 0
    test_limit: int = 0
    eval_every: int = 0
    eval_live: bool = True
    rounds_per_run: int = 0
    topology: str = "allreduce"
    model: str = "lenet5"

    @classmethod
    def from_dict(cls, raw: dict) -> JobConfig:
        """Raises TrainingError for unknown keys, wrong types or values out of range."""
        if not isinstance(raw, dict):
            raise TrainingError(f"a job configuration must be an object, got {type(raw).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise TrainingError(f"unknown job settings {unknown}; known: {sorted(known)}")
        values = {}
        for name, value in raw.items():
            kind = type(getattr(cls, name, "")) if name != "job" else str
            try:
                values[name] = kind(value) if kind is not bool else _as_bool(value)
            except (TypeError, ValueError) as exc:
                spellings = " (true, false, 1 or 0)" if kind is bool else ""
                raise TrainingError(f"setting {name}={value!r} is not a {kind.__name__}{spellings}") from exc
        if "job" not in values:
            raise TrainingError("a job needs a name (`job`)")
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Raises TrainingError naming the first setting out of range."""
        problems = [
            (not _JOB_NAME.match(self.job), f"job name {self.job!r} must be 1-64 letters, digits, '.', '_' or '-'"),
            (self.workers < 1, f"workers must be >= 1, got {self.workers}"),
            (self.epochs < 1, f"epochs must be >= 1, got {self.epochs}"),
            (
                self.batch_size < self.workers,
                f"batch size {self.batch_size} must be at least the number of "
                f"workers ({self.workers}): it is split over them",
            ),
            (self.mode not in MODES, f"mode must be one of {MODES}, got {self.mode!r}"),
            (self.local_steps < 0, f"local steps must be >= 0 (0 = chosen each round), got {self.local_steps}"),
            (self.mode == "sync" and self.local_steps not in (0, 1), "local steps apply to mode local only"),
            (not 0 < self.comm_target < 1, f"comm_target must be between 0 and 1, got {self.comm_target}"),
            (self.max_local_steps < 1, f"max_local_steps must be >= 1, got {self.max_local_steps}"),
            (not self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (
                self.precision not in ("auto", *PRECISIONS),
                f"precision must be one of {('auto', *PRECISIONS)}, got {self.precision!r}",
            ),
            (self.threads < 1, f"threads must be >= 1, got {self.threads}"),
            (self.compress not in COMPRESSIONS, f"compress must be one of {COMPRESSIONS}, got {self.compress!r}"),
            (
                not 0 <= self.quorum <= self.workers,
                f"quorum must be between 1 and workers ({self.workers}), got {self.quorum}",
            ),
            (self.retries < 0, f"retries must be >= 0, got {self.retries}"),
            (self.topology not in TOPOLOGIES, f"topology must be one of {TOPOLOGIES}, got {self.topology!r}"),
            (self.model not in MODELS, f"model must be one of {tuple(MODELS)}, got {self.model!r}"),
            (self.data not in DATA_SOURCES, f"data must be one of {DATA_SOURCES}, got {self.data!r}"),
            (self.train_limit < 0 or self.test_limit < 0, "train/test limits must be >= 0 (0 = all)"),
            (self.eval_every < 0, f"eval_every must be >= 0 (0 = every epoch), got {self.eval_every}"),
            (
                self.rounds_per_run < 0,
                f"rounds_per_run must be >= 0 (0 = as the time limit allows), got {self.rounds_per_run}",
            ),
        ]
        for failed, message in problems:
            if failed:
                raise TrainingError(message)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def effective_quorum(self) -> int:
        return self.quorum or self.workers

    @property
    def worker_batch(self) -> int:
        return self.batch_size // self.workers

    @property
    def first_local_steps(self) -> int:
        """K of round 0; with auto K, a small start that the measured rounds then correct."""
        if self.mode == "sync":
            return 1
        return self.local_steps or 4

    def batches_per_epoch(self, train_size: int) -> int:
        """Batches of one worker per pass over its shard."""
        count = (train_size // self.workers) // self.worker_batch
        if count < 1:
            raise TrainingError(
                f"{train_size} training images over {self.workers} workers give no batch of {self.worker_batch}"
            )
        return count

    def total_batches(self, train_size: int) -> int:
        """Batches each worker takes in the whole job (a step in sync mode, a local step in local mode)."""
        return self.epochs * self.batches_per_epoch(train_size)

    def checkpoint_every(self, train_size: int) -> int:
        """Batches between checkpoints, which are also the evaluation points."""
        return self.eval_every or self.batches_per_epoch(train_size)

    def lr_at(self, batch_index: int, train_size: int) -> float:
        """Linear warm-up, then cosine decay to zero, indexed by a worker's batch count (the same in both modes)."""
        per_epoch = self.batches_per_epoch(train_size)
        total = self.epochs * per_epoch
        warm = max(1, min(round(self.warmup_epochs * per_epoch), total // 4))
        if batch_index < warm:
            return self.lr * (batch_index + 1) / warm
        done = min(batch_index, total) - warm
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * done / max(total - warm, 1)))


class JobLayout:
    """The keys of one job; round numbers are zero-padded so listing sorts them."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.prefix = f"jobs/{job}/"
        self.config = self.prefix + "config.json"
        self.status = self.prefix + "status.json"
        self.metrics = self.prefix + "metrics.jsonl"
        self.final = self.prefix + "final.pt"
        self.checkpoint_pointer = self.prefix + "checkpoint.json"

    @staticmethod
    def round_name(number: int) -> str:
        return f"{number:0{ROUND_DIGITS}d}"

    def update(self, number: int, worker: int) -> str:
        return f"{self.updates_of(number)}{worker}"

    def updates_of(self, number: int) -> str:
        return self._in_round("updates", number) + "/"

    def decision(self, number: int) -> str:
        return self._in_round("rounds", number)

    def checkpoint(self, number: int) -> str:
        return self._in_round("checkpoints", number)

    def worker_info(self, worker: int) -> str:
        return self._of_worker(worker, ".json")

    def worker_stats(self, worker: int) -> str:
        return self._of_worker(worker, ".stats.json")

    def handoff(self, worker: int) -> str:
        return self._of_worker(worker, ".handoff")

    def _in_round(self, folder: str, number: int) -> str:
        return f"{self.prefix}{folder}/{self.round_name(number)}"

    def _of_worker(self, worker: int, suffix: str) -> str:
        return f"{self.prefix}workers/{worker}{suffix}"

    @staticmethod
    def round_of(key: str) -> int:
        """The round number in an updates/, rounds/ or checkpoints/ key."""
        return next(int(part) for part in key.split("/") if len(part) == ROUND_DIGITS and part.isdigit())
