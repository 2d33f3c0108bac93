"""The coordinator: starts the workers (and the PS), watches them, replaces the dead, evaluates checkpoints, hands off.

It is not on any round's path: the workers reduce through storage, among themselves or
through the parameter server, which it watches as one more slot (`ps`). It runs inside
the `mnist-train/train` action (invoking the workers through the OpenWhisk API) or inside
`deployer train` itself; the code is the same. It is the one place that decides to invoke
a worker or the PS again (the client never re-sends an invoke): a replacement is safe
because every key a worker writes is versioned. Its state is only in storage (status.json
names the coordinator that owns the job, workers/<w>.json the activation that owns each
slot), so a coordinator that dies loses nothing: a resumed one adopts the workers and the
PS still running and replaces the others.
"""

from __future__ import annotations

import ctypes
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import weights
from ..compute import evaluate
from ..errors import DamagedError, ObjectNotFoundError, OpenWhiskError
from ..mnist import TRAIN_SIZE
from ..model import MODELS
from ..openwhisk import OpenWhiskClient, record_memory_mb, sibling_action
from . import data
from .job import PS, JobConfig, JobLayout, TrainingError
from .state import delete_scratch, read_state, state_blob
from .trainer import initial_vector, model_from_vector

DEFAULT_MEMORY_MB = 256
POLL_S = 0.5
# LeNet-5's test images per forward pass; a wider model's activations grow with its width, so it
# takes proportionally fewer, and an evaluation's transient stays LeNet-5's (about 60 MB) at any width
EVAL_BATCH = 1000


def eval_batch_size(model: str) -> int:
    """Test images per forward pass for `model`: what keeps a coordinator's evaluation inside its memory limit."""
    return max(1, EVAL_BATCH // MODELS[model])


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def return_free_memory() -> None:
    """Gives the heap's free pages back to the system.

    glibc keeps what an evaluation freed in the process, so a warm container would carry the
    largest transient of every job it ran as resident memory into the next, which its limit counts.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class MetricsLog:
    """metrics.jsonl, rewritten whole (S3 has no append) at most every `flush_every_s`."""

    def __init__(self, storage, layout: JobLayout, flush_every_s: float = 2.0) -> None:
        self.storage, self.key, self.flush_every_s = storage, layout.metrics, flush_every_s
        try:
            self._text = storage.get_bytes(self.key).decode()
        except ObjectNotFoundError:
            self._text = ""
        self._pending: list[str] = []
        self._flushed_at = time.monotonic()

    def append(self, event: dict, flush: bool = False) -> None:
        self._pending.append(json.dumps({"time": round(time.time(), 3), **event}))
        if flush or time.monotonic() - self._flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._text += "".join(line + "\n" for line in self._pending)
            self.storage.put_bytes(self.key, self._text.encode(), "application/x-ndjson")
            self._pending = []
        self._flushed_at = time.monotonic()


def read_json(storage, key: str) -> dict | None:
    """The JSON object at `key`, or None where there is none (yet)."""
    try:
        return storage.get_json(key)
    except ObjectNotFoundError:
        return None


def read_metrics(storage, job: str) -> list[dict]:
    try:
        text = storage.get_bytes(JobLayout(job).metrics).decode()
    except ObjectNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def gb_s_of(record: dict | None) -> float:
    """What OpenWhisk bills for an activation: its memory limit times its duration."""
    if not record:
        return 0.0
    memory_mb = record_memory_mb(record) or DEFAULT_MEMORY_MB
    return memory_mb / 1024.0 * record.get("duration", 0) / 1000.0


def create_job(storage, config: JobConfig) -> bool:
    """Writes config.json and the initial model as checkpoint 0 unless the job exists; True when created.

    Every worker starts from that stored model rather than from the seed: two torch builds
    (the deployer's and a runtime image's) need not initialise a model alike.

    Raises:
        TrainingError: a job of that name exists with different settings.
    """
    layout = JobLayout(config.job)
    if storage.exists(layout.config):
        if storage.get_json(layout.config) != config.as_dict():
            raise TrainingError(
                f"job {config.job!r} already exists with other settings; resume it or pick another name"
            )
        return False
    storage.put_json(layout.config, config.as_dict())
    header = {"round": 0, "batch": 0, "k": config.first_local_steps, "time": time.time()}
    storage.put_bytes(layout.checkpoint(0), state_blob(initial_vector(config.seed, config.model), None, header))
    storage.put_json(layout.checkpoint_pointer, header)
    return True


def load_config(storage, job: str) -> JobConfig:
    """Raises TrainingError when the job does not exist."""
    try:
        return JobConfig.from_dict(storage.get_json(JobLayout(job).config))
    except ObjectNotFoundError as exc:
        raise TrainingError(f"job {job!r} does not exist in s3://{storage.bucket}/jobs/; start it first") from exc


def final_state_bytes(storage, config: JobConfig, number: int) -> bytes:
    """checkpoints/<round> as an ordinary state dict of the job's model (LeNet-5's loads into inference)."""
    _, vector, _ = read_state(storage, JobLayout(config.job).checkpoint(number))
    return weights.encode(model_from_vector(vector, config.model).state_dict())


@dataclass
class Slot:
    """One worker index (or the PS) and the activation that currently runs it."""

    worker: int | str
    activation: str | None = None
    replacements: int = 0
    done: bool = False
    launched_at: float = 0.0

    @property
    def name(self) -> str:
        return "the parameter server" if self.worker == PS else f"worker {self.worker}"


class Coordinator:
    """Runs a job to its end (or to this activation's deadline); `run()` returns why it stopped."""

    def __init__(
        self,
        storage,
        client: OpenWhiskClient,
        config: JobConfig,
        *,
        worker_action: str,
        owner: str,
        ps_action: str | None = None,
        deadline_ms: int | None = None,
        handoff: Callable[[], str] | None = None,
        log: Callable[[str], None] = print,
        predecessor: str | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.storage, self.client, self.config = storage, client, config
        self.worker_action, self.owner = worker_action, owner
        self.ps_action = ps_action or sibling_action(worker_action, PS)
        self.deadline_ms, self.handoff, self.log, self.predecessor = deadline_ms, handoff, log, predecessor
        self.poll_s = poll_s
        self.layout = JobLayout(config.job)
        self.size = data.train_size(config, TRAIN_SIZE)
        self.total = config.total_batches(self.size)
        self.per_epoch = config.batches_per_epoch(self.size)
        self.slots = ([Slot(PS)] if config.topology == "ps" else []) + [Slot(w) for w in range(config.workers)]
        self.evaluated: set[int] = {0}  # the untrained model
        self.refused: set[int] = set()  # damaged checkpoints, named once
        self.metrics = MetricsLog(storage, self.layout)

    # -- storage state ------------------------------------------------------------------------

    def _status(self, state: str, **extra) -> None:
        self.storage.put_json(
            self.layout.status,
            {"owner": self.owner, "state": state, "updated": time.time(), "total_batches": self.total, **extra},
        )

    def _still_owner(self) -> bool:
        try:
            return self.storage.get_json(self.layout.status).get("owner") == self.owner
        except ObjectNotFoundError:
            return True

    def _get_json(self, key: str) -> dict | None:
        return read_json(self.storage, key)

    def _await_predecessor(self, timeout_s: float = 120.0) -> None:
        """Waits until the coordinator that started this one has named it in the status.

        metrics.jsonl is rewritten whole, so a successor that wrote before its predecessor's
        last event would erase that event.
        """
        deadline = time.monotonic() + timeout_s
        while self.predecessor and time.monotonic() < deadline:
            status = self._get_json(self.layout.status)
            if status is None or status.get("successor") == self.owner or status.get("owner") != self.predecessor:
                break
            time.sleep(0.1)
        self.metrics = MetricsLog(self.storage, self.layout)

    # -- workers --------------------------------------------------------------------------------

    def _launch(self, slot: Slot, reason: str) -> None:
        if slot.worker == PS:
            reply = self.client.invoke(self.ps_action, {"job": self.config.job}, blocking=False)
        else:
            reply = self.client.invoke(
                self.worker_action, {"job": self.config.job, "worker": slot.worker}, blocking=False
            )
        slot.activation, slot.launched_at = reply["activationId"], time.time()
        self.metrics.append(
            {"event": "launched", "worker": slot.worker, "activation": slot.activation, "reason": reason}, flush=True
        )

    def _adopt_or_launch(self) -> None:
        damaged = self._newest_damaged()
        for slot in self.slots:
            stats = self._get_json(self.layout.worker_stats(slot.worker)) or {}
            claim = self._get_json(self.layout.worker_info(slot.worker))
            if stats.get("state") == "done" and stats.get("batch", 0) >= self.total and not damaged:
                slot.done = True
            elif claim is not None and stats.get("state") != "done":
                slot.activation, slot.launched_at = claim["owner"], claim.get("since", time.time())
                self.metrics.append(
                    {"event": "launched", "worker": slot.worker, "activation": slot.activation, "reason": "adopted"}
                )
            else:
                self._launch(slot, "replay" if damaged else "new")

    def _newest_damaged(self) -> str | None:
        """Why the checkpoint the pointer names cannot be resumed from (damaged or gone), or None when it can.

        A finished job's workers are launched again then: they start from the newest whole
        checkpoint and replay to the end, rewriting the damaged one.
        """
        pointer = self._get_json(self.layout.checkpoint_pointer)
        if pointer is None:
            return None
        key = self.layout.checkpoint(pointer["round"])
        try:
            read_state(self.storage, key)
            return None
        except ObjectNotFoundError:
            why = f"{key}, the newest checkpoint, is gone"
        except DamagedError as exc:
            why = str(exc)
        self.refused.add(pointer["round"])
        self.metrics.append({"event": "checkpoint_refused", "key": key, "error": why}, flush=True)
        self.log(f"{why}; the workers start again from the newest whole checkpoint")
        return why

    def _ended(self, slot: Slot, record: dict) -> None:
        """A worker activation ended: follow its successor, count it done, or replace it."""
        result = record.get("response", {}).get("result") or {}
        state = result.get("state") if record.get("response", {}).get("success") else None
        self.metrics.append(
            {
                "event": "billed",
                "worker": slot.worker,
                "activation": slot.activation,
                "state": state or "failed",
                "gb_s": round(gb_s_of(record), 6),
                "duration_ms": record.get("duration", 0),
            }
        )
        if state == "continued":
            slot.activation, slot.launched_at = result["successor"], time.time()
            return
        if state == "done":
            slot.done = True
            return
        if state == "superseded":
            claim = self._get_json(self.layout.worker_info(slot.worker)) or {}
            if claim.get("owner") and claim["owner"] != slot.activation:
                slot.activation = claim["owner"]
                return
        error = result.get("error") or record.get("response", {}).get("status", "unknown")
        self._replace(slot, f"activation {slot.activation} ended: {str(error)[:300]}")

    def _replace(self, slot: Slot, why: str) -> None:
        slot.replacements += 1
        self.metrics.append(
            {
                "event": "worker_failed",
                "worker": slot.worker,
                "activation": slot.activation,
                "error": why,
                "replacement": slot.replacements,
            },
            flush=True,
        )
        if slot.replacements > self.config.retries:
            raise TrainingError(f"{slot.name} failed {slot.replacements} times; last: {why}")
        self.log(f"{slot.name}: {why}; starting a replacement")
        self._launch(slot, "replace")

    def _watch_workers(self) -> None:
        for slot in self.slots:
            if slot.done or slot.activation is None:
                continue
            try:
                record = self.client.find_activation(slot.activation)
            except OpenWhiskError as exc:
                self.log(f"cannot read activation {slot.activation}: {exc}")
                continue
            if record is not None:
                self._ended(slot, record)
                continue
            stats = self._get_json(self.layout.worker_stats(slot.worker)) or {}
            last = stats.get("time", 0) if stats.get("owner") == slot.activation else slot.launched_at
            if time.time() - max(last, slot.launched_at) > self.config.worker_timeout_s:
                self._replace(
                    slot, f"activation {slot.activation} made no progress for {self.config.worker_timeout_s:.0f} s"
                )

    # -- evaluation -------------------------------------------------------------------------------

    def _evaluate_new(self) -> int:
        """Evaluates every checkpoint not evaluated yet; returns the newest checkpoint's batch.

        With `eval_live` off this runs only once the workers are done: on one machine the
        evaluation would take a core from them, which on a cluster it would not. The
        checkpoints are kept until evaluated and carry the time they were written, so
        the times to accuracy are the same either way.
        """
        rounds = sorted(self.layout.round_of(k) for k in self.storage.list_keys(self.layout.prefix + "checkpoints/"))
        for number in rounds:
            if number in self.evaluated:
                continue
            key = self.layout.checkpoint(number)
            try:
                header, vector, _ = read_state(self.storage, key)
            except ObjectNotFoundError:
                continue  # pruned since the listing
            except DamagedError as exc:
                if number not in self.refused:  # named once; a replay may rewrite it whole
                    self.refused.add(number)
                    self.metrics.append({"event": "checkpoint_refused", "key": key, "error": str(exc)}, flush=True)
                    self.log(str(exc))
                continue
            self.evaluated.add(number)
            images, labels = data.test_set(self.config, self.storage)
            started = time.perf_counter()
            model = model_from_vector(vector, self.config.model)
            result = evaluate(model, images, labels, batch_size=eval_batch_size(self.config.model))
            eval_s = round(time.perf_counter() - started, 3)
            del model
            return_free_memory()
            self.metrics.append(
                {
                    "event": "eval",
                    "round": number,
                    "batch": header["batch"],
                    "epoch": round(header["batch"] / self.per_epoch, 4),
                    "accuracy": result["accuracy"],
                    "loss": result["loss"],
                    "n": result["n"],
                    "model_time": header["time"],
                    "eval_s": eval_s,
                },
                flush=True,
            )
            self.log(f"epoch {header['batch'] / self.per_epoch:.2f}: test accuracy {result['accuracy']:.4f}")
        done = sorted(n for n in rounds if n in self.evaluated)
        if len(done) > 2:  # a replacement starts from the newest; the one before stays for safety
            self.storage.delete_keys([self.layout.checkpoint(n) for n in done[:-2]])
        return self._newest_batch()

    def _newest_batch(self) -> int:
        pointer = self._get_json(self.layout.checkpoint_pointer)
        return pointer["batch"] if pointer else 0

    def _progress(self) -> list[dict]:
        return [self._get_json(self.layout.worker_stats(w)) or {} for w in range(self.config.workers)]

    def _ps_progress(self) -> dict:
        return {"ps": self._get_json(self.layout.worker_stats(PS)) or {}} if self.config.topology == "ps" else {}

    # -- the loop ---------------------------------------------------------------------------------

    def _time_left_s(self) -> float:
        return float("inf") if self.deadline_ms is None else self.deadline_ms / 1000.0 - time.time()

    def run(self) -> dict:
        """Raises TrainingError when a worker keeps failing."""
        try:
            return self._run()
        except TrainingError as exc:
            self.metrics.append({"event": "failed", "error": str(exc)}, flush=True)
            self._status("failed", error=str(exc))
            raise
        finally:
            self.metrics.flush()
            return_free_memory()

    def _run(self) -> dict:
        self._await_predecessor()
        previous = self._get_json(self.layout.status) or {}
        job_started = previous.get("job_started") or time.time()
        self._status("running", job_started=job_started)
        self.metrics.append(
            {
                "event": "start",
                "owner": self.owner,
                "total_batches": self.total,
                "batches_per_epoch": self.per_epoch,
                "config": self.config.as_dict(),
            },
            flush=True,
        )
        self._adopt_or_launch()
        while True:
            self._watch_workers()
            finished = all(slot.done for slot in self.slots)
            newest = self._evaluate_new() if self.config.eval_live or finished else self._newest_batch()
            if finished and newest >= self.total:
                break
            if all(slot.done for slot in self.slots):
                raise TrainingError(
                    f"every worker ended but the newest checkpoint is at batch {newest} of {self.total}"
                )
            if not self._still_owner():
                self.metrics.append({"event": "superseded", "owner": self.owner}, flush=True)
                return {"state": "superseded"}
            if self.handoff is not None and self._time_left_s() < 10.0 + 3 * self.poll_s:
                return self._hand_off(job_started)
            time.sleep(self.poll_s)
        pointer = self._get_json(self.layout.checkpoint_pointer)
        self.storage.put_bytes(self.layout.final, final_state_bytes(self.storage, self.config, pointer["round"]))
        scratch = delete_scratch(self.storage, self.layout)
        self.metrics.append(
            {
                "event": "done",
                "batch": pointer["batch"],
                "round": pointer["round"],
                "scratch_deleted": scratch,
                "workers": self._progress(),
                **self._ps_progress(),
            },
            flush=True,
        )
        self._status("done", job_started=job_started, batch=pointer["batch"])
        return {"state": "done", "batch": pointer["batch"], "round": pointer["round"]}

    def _hand_off(self, job_started: float) -> dict:
        self.metrics.append({"event": "handoff", "owner": self.owner}, flush=True)
        self._status("continuing", job_started=job_started)
        successor = self.handoff()
        self.metrics.append({"event": "handed_off", "successor": successor}, flush=True)
        self._status("continuing", job_started=job_started, successor=successor)  # last write
        return {"state": "continued", "successor": successor}
