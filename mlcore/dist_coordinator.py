"""The coordinator: drives a job step by step through any invoker, records metrics, hands off.

It runs inside the `mnist-train/train` action (invoking workers and the PS through the
OpenWhisk API) or inside `deployer train` itself; the code is the same. State lives only
in object storage: the newest `model/<step>` is where a resumed job continues, and
`status.json` names the one coordinator that owns the job, so an older one that wakes up
stops at its next step instead of racing the new one.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeoutError
from dataclasses import dataclass, field
from typing import Callable

from . import dist_data, dist_steps
from .dist_job import JobConfig, JobLayout, StepFailedError, TrainingError
from .errors import ObjectNotFoundError
from .mnist import TRAIN_SIZE
from .owapi import ActivationError, InvokeError, record_memory_mb

DEFAULT_MEMORY_MB = 256


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


def read_metrics(storage, job: str) -> list[dict]:
    try:
        text = storage.get_bytes(JobLayout(job).metrics).decode()
    except ObjectNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Call:
    """One piece of work done by an action, possibly after retries."""

    result: dict
    attempts: int
    gb_s: float
    errors: list[str] = field(default_factory=list)


def _gb_s(record: dict | None) -> float:
    if not record:
        return 0.0
    memory_mb = record_memory_mb(record) or DEFAULT_MEMORY_MB
    return memory_mb / 1024.0 * record.get("duration", 0) / 1000.0


def _busy(result: dict) -> float:
    return result.get("s3_get_s", 0.0) + result.get("s3_put_s", 0.0) + result.get("compute_s", 0.0)


class Coordinator:
    """Runs the remaining steps of one job; `run()` returns why it stopped."""

    def __init__(self, storage, invoker, config: JobConfig, *, worker_action: str, ps_action: str,
                 owner: str, deadline_ms: int | None = None,
                 handoff: Callable[[], str] | None = None, log: Callable[[str], None] = print,
                 predecessor: str | None = None) -> None:
        self.storage, self.invoker, self.config = storage, invoker, config
        self.worker_action, self.ps_action = worker_action, ps_action
        self.owner, self.deadline_ms, self.handoff, self.log = owner, deadline_ms, handoff, log
        self.predecessor = predecessor
        self.layout = JobLayout(config.job)
        self.size = dist_data.train_size(config, TRAIN_SIZE)
        self.steps_per_epoch = config.steps_per_epoch(self.size)
        self.total_steps = config.total_steps(self.size)
        self.eval_every = config.eval_every or self.steps_per_epoch
        self.metrics = MetricsLog(storage, self.layout)
        self._pool = ThreadPoolExecutor(max_workers=4 * config.workers + 4, thread_name_prefix="invoke")
        self._step_walls: list[float] = []
        self._eval_s = 0.0
        # Left-out stragglers keep running and are billed; their GB-s arrive after their step.
        self._stragglers: dict[Future, tuple[int, int]] = {}
        self._prunes: list[Future] = []
        self._applied_through = -1

    def _status(self, state: str, step: int, **extra) -> None:
        self.storage.put_json(self.layout.status, {"owner": self.owner, "state": state, "step": step,
                                                   "total_steps": self.total_steps, "updated": time.time(), **extra})

    def _still_owner(self) -> bool:
        try:
            return self.storage.get_json(self.layout.status).get("owner") == self.owner
        except ObjectNotFoundError:
            return True

    def _time_left_s(self) -> float:
        if self.deadline_ms is None:
            return float("inf")
        return self.deadline_ms / 1000.0 - time.time()

    def _should_hand_off(self, steps_done: int) -> bool:
        limit = self.config.steps_per_run
        return self._time_left_s() < self._margin_s() or bool(limit and steps_done >= limit)

    def _margin_s(self) -> float:
        recent = self._step_walls[-20:]
        step_s = max(recent) if recent else self.config.worker_timeout_s / 4
        return 10.0 + 3 * step_s + 2 * self._eval_s

    def run(self) -> dict:
        """Raises StepFailedError when a step cannot get enough updates even after retries."""
        try:
            return self._run()
        finally:
            wait(self._prunes, timeout=30)
            self._record_late()
            self.metrics.flush()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _late_event(self, step: int, worker: int, future: Future) -> dict | None:
        """The bill of a finished straggler; None if it was cancelled before it ran."""
        try:
            call = future.result(timeout=0)
            gb_s, ok, attempts, error = call.gb_s, True, call.attempts, None
        except StepFailedError as exc:
            gb_s, ok, attempts, error = getattr(exc, "gb_s", 0.0), False, getattr(exc, "attempts", 0), str(exc)
        except Exception:  # noqa: BLE001 - cancelled at shutdown: nothing ran, nothing billed
            return None
        return {"event": "late", "step": step, "worker": worker, "ok": ok, "attempts": attempts,
                "gb_s": round(gb_s, 6), **({"error": error[:300]} if error else {})}

    def _record_late(self, timeout_s: float = 0.0) -> None:
        """Writes the bills of finished stragglers, waiting up to `timeout_s` for the rest.

        Runs on the driving thread only, so every bill is in the metrics before the status
        that follows it: a reader that sees "done" has seen every straggler.
        """
        finished = [f for f in self._stragglers if f.done()]
        if timeout_s > 0 and len(finished) < len(self._stragglers):
            try:
                finished = list(as_completed(self._stragglers, timeout=timeout_s))
            except FuturesTimeoutError:
                finished = [f for f in self._stragglers if f.done()]
        for future in sorted(finished, key=self._stragglers.__getitem__):
            step, worker = self._stragglers.pop(future)
            event = self._late_event(step, worker, future)
            if event is not None:
                self.metrics.append(event)

    def _settle_stragglers(self, limit_s: float) -> None:
        """Bills every straggler still running, or says which ones outlived `limit_s`."""
        self._record_late(timeout_s=max(0.0, limit_s))
        for step, worker in sorted(self._stragglers.values()):
            self.metrics.append({"event": "late", "step": step, "worker": worker, "ok": False, "attempts": 0,
                                 "gb_s": 0.0, "error": f"still running after {limit_s:.0f} s; not billed"})
        self._stragglers.clear()

    def _await_predecessor(self, timeout_s: float = 120.0) -> None:
        """Waits until the coordinator that started this one has named it in the status.

        metrics.jsonl is rewritten whole (S3 has no append), so a successor that wrote before
        its predecessor's last event would erase that event. The predecessor names its successor
        in the status only after that last write; a predecessor that died meanwhile is waited
        for `timeout_s` at most.
        """
        deadline = time.monotonic() + timeout_s
        while self.predecessor and time.monotonic() < deadline:
            try:
                status = self.storage.get_json(self.layout.status)
            except ObjectNotFoundError:
                return
            if status.get("successor") == self.owner or status.get("owner") != self.predecessor:
                break
            time.sleep(0.1)
        self.metrics = MetricsLog(self.storage, self.layout)  # now with every event the predecessor wrote

    def _run(self) -> dict:
        self._await_predecessor()
        latest = self.layout.latest_model_step(self.storage)
        if latest is None:
            raise TrainingError(f"job {self.config.job} has no model version 0; create it first")
        step = latest
        self._status("running", step)
        self.metrics.append({"event": "start", "owner": self.owner, "step": step,
                             "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                             "config": self.config.as_dict()}, flush=True)
        first = step
        while step < self.total_steps:
            # at least one step per activation: a limit shorter than the margin must not hand off forever
            if step > first and self.handoff is not None and self._should_hand_off(step - first):
                self._settle_stragglers(min(self.config.worker_timeout_s + 5, self._time_left_s() - 5))
                self.metrics.append({"event": "handoff", "owner": self.owner, "step": step}, flush=True)
                self._status("continuing", step)
                successor = self.handoff()
                self.metrics.append({"event": "handed_off", "step": step, "successor": successor}, flush=True)
                self._status("continuing", step, successor=successor)  # last write: the successor may go on
                return {"state": "continued", "step": step, "successor": successor}
            try:
                self._run_step(step)
                self._applied_through = step
            except StepFailedError as exc:
                self.metrics.append({"event": "failed", "step": step, "error": str(exc)}, flush=True)
                self._status("failed", step, error=str(exc))
                raise
            step += 1
            if step % self.eval_every == 0 or step == self.total_steps:
                self._evaluate(step)
            if not self._still_owner():
                # checked right before the status write, which would otherwise take the job back
                self.metrics.append({"event": "superseded", "owner": self.owner, "step": step}, flush=True)
                return {"state": "superseded", "step": step}
            self._status("running", step)
            self._prune(step)
        wait(self._prunes, timeout=30)
        self.storage.put_bytes(self.layout.final, dist_steps.final_state_bytes(self.storage, self.config, step))
        # a straggler of the last steps ends by its timeout at the latest; its bill belongs to this job
        self._settle_stragglers(self.config.worker_timeout_s + 5)
        self.metrics.append({"event": "done", "step": step}, flush=True)
        self._status("done", step)
        return {"state": "done", "step": step}

    def _prune(self, step: int) -> None:
        """Drops the version `keep_versions` behind the newest, off the step's critical path.

        Without it a job stores every model, optimizer state and update it ever made: about
        0.7 MB per step per worker for LeNet-5, gigabytes per job. Resume needs only the newest
        version; a straggler that still wants a dropped one is left out anyway.
        """
        old = step - self.config.keep_versions
        if self.config.keep_versions and old >= 0:
            self._prunes = [f for f in self._prunes if not f.done()]
            self._prunes.append(self._pool.submit(self.storage.delete_keys,
                                                  self.layout.version_keys(old, self.config.workers)))

    def _evaluate(self, step: int) -> None:
        started = time.perf_counter()
        result = dist_steps.evaluate_version(self.storage, self.config, step)
        self._eval_s = time.perf_counter() - started
        self.metrics.append({"event": "eval", "step": step, "epoch": round(step / self.steps_per_epoch, 4),
                             "accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"],
                             "eval_s": round(self._eval_s, 3)}, flush=True)
        self.log(f"step {step}/{self.total_steps}: test accuracy {result['accuracy']:.4f}")

    def _call(self, action: str, params: dict, retries: int, step: int | None = None) -> Call:
        """Invokes with retries; a worker call for `step` stops retrying once that step is applied."""
        errors, gb_s = [], 0.0
        made = 0
        for attempt in range(1, retries + 2):
            if attempt > 1 and step is not None and self._applied_through >= step:
                break
            made = attempt
            try:
                record = self.invoker.invoke(action, params, timeout_s=self.config.worker_timeout_s)
            except ActivationError as exc:
                errors.append(str(exc))
                gb_s += _gb_s(exc.record)
                continue
            except InvokeError as exc:
                errors.append(str(exc))
                continue
            return Call(record.get("response", {}).get("result", {}), attempt, gb_s + _gb_s(record), errors)
        failure = StepFailedError(f"{action} {params} failed {made} times; last error: {errors[-1]}")
        failure.gb_s, failure.attempts = gb_s, made  # failed attempts are billed too
        raise failure

    def _collect(self, step: int) -> tuple[dict[int, Call], list[int], float]:
        """Waits for every worker, or for a quorum plus `straggler_wait_s`.

        Returns (done, left out, GB-s of workers that failed every retry); the left-out
        stragglers report their GB-s later as `late` events.
        """
        n, quorum = self.config.workers, self.config.effective_quorum
        params = {"job": self.config.job, "step": step}
        pending = {self._pool.submit(self._call, self.worker_action, {**params, "worker": w}, self.config.retries,
                                     step): w
                   for w in range(n)}
        done: dict[int, Call] = {}
        failed: dict[int, str] = {}
        failed_gb_s = 0.0
        quorum_at = None
        while pending:
            timeout = None if quorum_at is None else max(0.0, quorum_at + self.config.straggler_wait_s - time.monotonic())
            finished, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not finished:
                break
            for future in finished:
                worker = pending.pop(future)
                try:
                    done[worker] = future.result()
                except StepFailedError as exc:
                    failed[worker] = str(exc)
                    failed_gb_s += getattr(exc, "gb_s", 0.0)
            if len(failed) > n - quorum:
                raise StepFailedError(f"step {step}: workers {sorted(failed)} failed and the quorum is {quorum} of "
                                      f"{n}; {next(iter(failed.values()))}")
            if quorum_at is None and len(done) >= quorum:
                quorum_at = time.monotonic()
        for future, worker in pending.items():
            self._stragglers[future] = (step, worker)
        return done, sorted(set(range(n)) - set(done)), failed_gb_s

    def _run_step(self, step: int) -> None:
        started = time.perf_counter()
        done, left_out, failed_gb_s = self._collect(step)
        ps = self._call(self.ps_action, {"job": self.config.job, "step": step, "workers": sorted(done)},
                        self.config.retries)
        wall_s = time.perf_counter() - started
        self._step_walls.append(wall_s)
        slowest = max(done.values(), key=lambda c: _busy(c.result)).result
        event = {
            "event": "step", "step": step, "epoch": round((step + 1) / self.steps_per_epoch, 4),
            "wall_s": round(wall_s, 4),
            "compute_s": round(slowest.get("compute_s", 0.0) + ps.result.get("compute_s", 0.0), 4),
            "s3_get_s": round(slowest.get("s3_get_s", 0.0) + ps.result.get("s3_get_s", 0.0), 4),
            "s3_put_s": round(slowest.get("s3_put_s", 0.0) + ps.result.get("s3_put_s", 0.0), 4),
            "bytes": sum(c.result.get("bytes_in", 0) + c.result.get("bytes_out", 0) for c in done.values())
                     + ps.result.get("bytes_in", 0) + ps.result.get("bytes_out", 0),
            "loss": round(sum(c.result.get("loss", 0.0) for c in done.values()) / len(done), 5),
            "included": sorted(done), "left_out": left_out,
            "retries": sum(c.attempts - 1 for c in done.values()) + ps.attempts - 1,
            "ps_skipped": bool(ps.result.get("skipped")),
            "gb_s": round(sum(c.gb_s for c in done.values()) + ps.gb_s + failed_gb_s, 6),
            "ps": {k: ps.result.get(k, 0.0) for k in ("compute_s", "s3_get_s", "s3_put_s")},
        }
        event["wait_s"] = round(max(0.0, wall_s - _busy(slowest) - _busy(ps.result)), 4)
        errors = [e for c in list(done.values()) + [ps] for e in c.errors]
        if errors:
            event["errors"] = errors[:5]
        self.metrics.append(event, flush=bool(left_out or errors))
        self._record_late()
