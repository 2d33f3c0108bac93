"""The invoker: a capped pool of warm action containers and the run of one activation.

Mirrors OpenWhisk's invoker: one activation per container at a time, warm reuse per
action revision, cold starts recorded as `initTime`, queueing recorded as `waitTime`,
idle containers evicted, per-action limits enforced, failures classified as OpenWhisk
classifies them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from localwhisk.entities import kinds
from localwhisk.invoker.container import (
    DEFAULT_MAX_UNPACKED_BYTES,
    INVALID_RUN_RESPONSE,
    Container,
    ContainerError,
    ContainerOutOfMemory,
    ContainerTimeout,
    InvalidAnswer,
)
from localwhisk.invoker.factory import process_factory
from localwhisk.invoker.prewarm import StemSpec
from localwhisk.settings import Settings
from runtimes import contract

log = logging.getLogger("invoker")
MAX_RESULT_BYTES = 1024 * 1024
TRUNCATED_CHARS = 1024  # of an oversized answer, quoted in its error (OpenWhisk's `truncation`, smaller)
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."
# 8 training workers + the PS + the coordinator + two other actions; more only evicts and cold-starts

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, INTERNAL_ERROR = 0, 1, 2, 3
STATUS_NAMES = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application error",
    DEVELOPER_ERROR: "action developer error",
    INTERNAL_ERROR: "whisk internal error",
}


class WouldQueue(ContainerError):
    """An activation asked not to wait would have had to (for a free container, or an eviction)."""


@dataclass
class RunResult:
    status_code: int
    result: dict
    logs: list[str] = field(default_factory=list)
    start_ms: int = 0
    end_ms: int = 0
    wait_ms: int = 0
    init_ms: int | None = None
    timed_out: bool = False


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Lease:
    """What one activation holds of the pool, from `_acquire` until `_give_back`.

    A warm activation holds a busy container; a cold one first a reserved slot (and the container it boots,
    a stem cell or a new one), which `_admit` turns into a busy container.
    """

    container: Container | None = None  # busy, in the pool
    booting: Container | None = None  # started or taken for this activation, not admitted: killed if given back
    reserved: bool = False  # a slot counted in `_starting`
    cold: bool = False  # counted in `_cold_in_flight`
    reusable: bool = False  # set once /run answered as the contract says; else the container is retired

    @staticmethod
    def key_of(container) -> str:
        return getattr(container, "key", None) or "(no container)"


class Invoker:
    """Owns every container; `shutdown()` kills them all."""

    def __init__(
        self,
        max_containers: int,
        idle_timeout_s: float = Settings.idle_timeout_s,
        container_env: dict[str, str] | None = None,
        work_root: Path | None = None,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        stem_cells: list[StemSpec] = (),
        container_factory=process_factory,
    ) -> None:
        if max_containers < 1:
            raise ValueError("max_containers must be at least 1")
        self.max_containers = max_containers
        self.idle_timeout_s = idle_timeout_s
        self._env = container_env or {}
        self.work_root = work_root
        self.max_unpacked_bytes = max_unpacked_bytes
        self._cond = threading.Condition()
        self._containers: list[Container] = []
        self._starting = 0
        self._dying = 0  # taken out of the pool, being killed outside the lock: their slots are not free yet
        self._queued = 0  # activations waiting for a container slot
        self._cold_in_flight = 0  # activations between taking a stem cell or slot and the end of their first run
        self._booting: set[Container] = set()  # taken by a cold start, not yet admitted or failed: shutdown kills them
        self._closed = False
        self.cold_starts = 0
        self._factory = container_factory
        self._stem_specs = list(stem_cells)
        self._stems: list[Container] = []  # started, not initialised: any matching action may take one
        self._stems_starting: dict[StemSpec, int] = {}
        self._stem_env: dict[str, str] | None = None
        self.prewarm_hits = 0
        self._stop = threading.Event()  # the reaper's only wake-up besides its timer
        self._reaper = threading.Thread(target=self._reap_idle, daemon=True)
        self._reaper.start()

    def prewarm(self, env: dict[str, str]) -> None:
        """Starts filling the stem-cell pool; `env` is what every action container gets (the API host)."""
        with self._cond:
            if self._stem_env is not None or not self._stem_specs:
                return
            self._stem_env = dict(env)
        threading.Thread(target=self._refill, daemon=True).start()

    def _container_env(self, runtime: str, deny: str, env: dict[str, str] | None) -> dict[str, str]:
        return {
            **self._env,
            **(env or {}),
            "ACTION_DENY_MODULES": deny,
            "ACTION_PRELOAD_MODULES": kinds.preload(runtime, deny),
        }

    def _new_container(self, key, runtime, memory_mb, log_limit_bytes, env, image=None):
        c = self._factory(
            key,
            memory_mb=memory_mb,
            log_limit_bytes=log_limit_bytes,
            env=env,
            runtime=runtime,
            work_root=self.work_root,
            max_unpacked_bytes=self.max_unpacked_bytes,
            image=image,
        )
        c.requested_image = image
        return c

    def _used_slots(self) -> int:
        return len(self._containers) + self._starting + len(self._stems) + self._dying

    def _retire(self, containers: list[Container]) -> None:
        """Kills containers already taken out of the pool (and counted in `_dying` under the lock).

        Called without the lock: a kill can wait 10 s for a process tree to die, and nothing else may
        wait for that. Their slots are freed once they are gone, so the cap holds.
        """
        try:
            for c in containers:
                c.kill()
        finally:
            with self._cond:
                self._dying -= len(containers)
                self._cond.notify_all()

    def _refill(self) -> None:
        """Keeps each stem spec at its count, in free slots only, and never while an activation waits or starts
        cold: a stem cell's start (two interpreters) would take the cores from that activation's /init and /run."""
        while True:
            with self._cond:
                spec = None
                while spec is None:
                    if self._closed:
                        return
                    if self._queued == 0 and self._cold_in_flight == 0 and self._used_slots() < self.max_containers:
                        spec = next(
                            (
                                s
                                for s in self._stem_specs
                                if sum(c.stem is s for c in self._stems) + self._stems_starting.get(s, 0) < s.count
                            ),
                            None,
                        )
                    if spec is None:
                        self._cond.wait(5.0)
                self._starting += 1
                self._stems_starting[spec] = self._stems_starting.get(spec, 0) + 1
                env = self._container_env(spec.runtime, spec.deny, self._stem_env)
            stem = None
            try:
                stem = self._new_container(None, spec.runtime, spec.memory_mb, 10 * 1024 * 1024, env, spec.image)
                stem.stem, stem.env_signature = spec, frozenset(env.items())
                stem.start()
            except Exception as exc:
                log.warning("prewarm %s: cannot start a stem cell: %s", spec.label, exc)
                if stem is not None:
                    stem.kill()
                stem = None
            with self._cond:
                closed = self._closed
                if stem is not None and not closed:
                    self._stems.append(stem)
            if stem is not None and closed:
                stem.kill()  # before its start counts as done: shutdown waits for that
            with self._cond:
                self._starting -= 1
                self._stems_starting[spec] -= 1
                self._cond.notify_all()
                if stem is None and not self._closed:
                    self._cond.wait(5.0)  # a runtime that cannot start: do not spin

    def stats(self) -> dict:
        with self._cond:
            return {
                "containers": len(self._containers),
                "prewarmed": len(self._stems),
                "prewarmed_by_spec": {
                    spec.label: sum(c.stem is spec for c in self._stems) for spec in self._stem_specs
                },
                "prewarm_hits": self.prewarm_hits,
                "busy": sum(c.busy for c in self._containers),
                "queued": self._queued,
                "max_containers": self.max_containers,
                "cold_starts": self.cold_starts,
            }

    def _acquire(
        self, key: str, deadline: float, stem_match=None, queue: bool = True
    ) -> tuple[Container | None, Container | None]:
        """(a warm idle container for `key`, None), or (None, a matching stem cell or None) with a slot reserved."""
        victim, found = self._reserve(key, deadline, stem_match, queue)
        if victim is not None:
            try:
                victim.kill()  # outside the lock; the slot it frees is already this activation's reservation
            except BaseException:
                self._unreserve()
                self._cold_done()
                raise
        return found

    def _reserve(self, key: str, deadline: float, stem_match, queue: bool = True) -> tuple[Container | None, tuple]:
        """(a container to kill or None, what `_acquire` returns), decided under the lock."""
        queued = False
        with self._cond:
            try:
                while True:
                    if self._closed:
                        raise ContainerError("the platform is shutting down")
                    for c in self._containers:
                        if c.key == key and not c.busy and c.alive():
                            c.busy = True
                            return None, (c, None)
                    stem = next(
                        (c for c in self._stems if stem_match is not None and stem_match(c) and c.alive()), None
                    )
                    if stem is not None:  # its slot becomes the reservation
                        self._stems.remove(stem)
                        self._reserve_cold_start()
                        self.prewarm_hits += 1
                        self._cond.notify_all()
                        return None, (None, stem)
                    if self._used_slots() < self.max_containers:
                        self._reserve_cold_start()
                        return None, (None, None)
                    if not queue:  # evicting would wait for a kill
                        raise WouldQueue("no container free now")
                    idle = [c for c in sorted(self._containers, key=lambda c: c.last_used) if not c.busy]
                    victim = self._stems[0] if self._stems else (idle[0] if idle else None)
                    if victim is not None:
                        if victim in self._stems:
                            self._stems.remove(victim)
                        else:
                            self._containers.remove(victim)
                        self._reserve_cold_start()
                        return victim, (None, None)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ContainerTimeout("no container became free in time")
                    if not queued:
                        queued, self._queued = True, self._queued + 1
                    self._cond.wait(min(left, 1.0))
            finally:
                if queued:
                    self._queued -= 1

    def _release(self, c: Container, reusable: bool) -> None:
        with self._cond:
            c.busy = False
            c.last_used = time.monotonic()
            dead = not reusable or not c.alive()
            taken = dead and c in self._containers
            if taken:
                self._containers.remove(c)
                self._dying += 1
            if self._queued:  # a warm release changes nothing else the lock's waiters (stem refill) watch
                self._cond.notify_all()
        if taken:
            self._retire([c])
        elif dead:
            c.kill()  # shutdown took it out of the pool already

    def _reap_idle(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                idle = [c for c in self._containers if not c.busy and now - c.last_used > self.idle_timeout_s]
                for c in idle:
                    self._containers.remove(c)
                self._dying += len(idle)
            self._retire(idle)
            if self._stop.wait(min(5.0, max(self.idle_timeout_s / 4, 0.1))):
                return

    def run(
        self,
        key: str,
        init_value: dict,
        run_message: dict,
        limits: dict,
        runtime: str = "python",
        deny: str = "",
        env: dict[str, str] | None = None,
        image: str | None = None,
        queue: bool = True,
    ) -> RunResult:
        """Runs one activation to completion; never raises for action faults.

        Whatever happens once a container or slot is taken, it is given back (`_give_back`, in a finally), and
        any failure on the way is the activation's error (`_failed`), never an exception to the caller.
        `image` (kinds.image: the kind's or the blackbox's) picks the container in docker mode, and with the
        runtime, module set and memory which stem cell may serve the action.

        Raises:
            WouldQueue: with queue=False, when no container, stem cell or free slot is there right now
                (nothing was started or changed).
        """
        timeout_s = limits["timeout"] / 1000.0
        start = _now_ms()
        t0 = time.monotonic()
        container_env = self._container_env(runtime, deny, env)
        signature = frozenset(container_env.items())

        def stem_match(c) -> bool:
            return (
                c.stem.runtime == runtime
                and c.stem.memory_mb == limits["memory"]
                and c.env_signature == signature
                and c.requested_image == image
            )

        try:
            container, stem = self._acquire(key, deadline=t0 + max(timeout_s, 60.0), stem_match=stem_match, queue=queue)
        except WouldQueue:
            raise
        except ContainerError as exc:
            return RunResult(
                INTERNAL_ERROR, {"error": f"No container could be scheduled: {exc}"}, start_ms=start, end_ms=_now_ms()
            )
        cold = container is None
        lease = _Lease(container=container, booting=stem, reserved=cold, cold=cold)
        wait_ms = int((time.monotonic() - t0) * 1000)
        run_start = time.monotonic()
        try:
            outcome = self._activation(lease, key, init_value, run_message, limits, runtime, container_env, image)
        except Exception as exc:
            outcome = self._failed(lease, exc, limits)
        finally:
            self._give_back(lease)
        outcome.start_ms = start
        outcome.wait_ms = wait_ms
        outcome.end_ms = outcome.end_ms or start + wait_ms + int((time.monotonic() - run_start) * 1000)
        return outcome

    def _activation(self, lease, key, init_value, run_message, limits, runtime, container_env, image) -> RunResult:
        timeout_s = limits["timeout"] / 1000.0
        init_ms = None
        if lease.cold:
            failure, init_ms = self._cold_start(
                lease, key, init_value, limits, timeout_s, runtime, container_env, image
            )
            if failure is not None:
                return failure
        outcome = self._run_in(lease, run_message, limits, timeout_s - (init_ms or 0) / 1000.0)
        outcome.init_ms = init_ms
        return outcome

    def _failed(self, lease: _Lease, exc: Exception, limits: dict) -> RunResult:
        """Any failure once the slot was taken, as the activation's developer error; the container is retired."""
        lease.reusable = False
        if self._closed and isinstance(exc, ContainerError):
            return RunResult(INTERNAL_ERROR, {"error": f"The action did not run: {exc}"})
        container = lease.container or lease.booting
        answered = isinstance(exc, InvalidAnswer) and lease.container is not None
        if isinstance(exc, InvalidAnswer):  # a developer error: retired, as OpenWhisk's ContainerProxy does
            error = f"{INVALID_RUN_RESPONSE}: {exc}"
        else:
            log.error("%s: the activation failed in the platform", lease.key_of(container), exc_info=exc)
            error = f"The activation failed in the platform ({exc.__class__.__name__}: {exc}); see the platform's log"
        logs = []
        if container is not None:
            try:
                logs = container.take_logs() if answered else container.take_logs(0.2)
            except Exception as log_exc:
                log.warning("%s: its logs could not be read: %s", lease.key_of(container), log_exc)
        return RunResult(DEVELOPER_ERROR, {"error": error}, logs=logs)

    def _give_back(self, lease: _Lease) -> None:
        """Frees what `lease` holds, whatever state the activation left it in: the one way a slot is freed."""
        try:
            if lease.booting is not None:
                booting, lease.booting = lease.booting, None
                try:
                    booting.kill()  # before its start counts as done: shutdown waits for that
                finally:
                    with self._cond:
                        self._booting.discard(booting)
            if lease.container is not None:
                container, lease.container = lease.container, None
                self._release(container, lease.reusable)
        finally:
            try:
                if lease.reserved:
                    lease.reserved = False
                    self._unreserve()
            finally:
                if lease.cold:
                    lease.cold = False
                    self._cold_done()

    def _cold_start(self, lease, key, init_value, limits, timeout_s, runtime, container_env, image=None):
        """(None, init_ms) with the container admitted into `lease`, or (the failed activation, None)."""
        log_limit = limits["logs"] * 1024 * 1024
        if lease.booting is not None:
            container = lease.booting
            container.key, container.log_limit_bytes, container.stem = key, log_limit, None
            started = True
        else:
            container = self._new_container(key, runtime, limits["memory"], log_limit, container_env, image)
            lease.booting, started = container, False
        with self._cond:
            self._booting.add(container)
        t_init = time.monotonic()
        try:
            if not started:
                container.start()
            status, body, logs = container.init(init_value, timeout_s)
        except ContainerTimeout:
            msg = f"The action exceeded its time limits of {limits['timeout']} milliseconds during initialization."
            return self._failed_init(container, {"error": msg}, timed_out=True), None
        except ContainerOutOfMemory:
            return self._failed_init(container, {"error": "The action exhausted its memory and was aborted."}), None
        except ContainerError as exc:
            return self._failed_init(container, {"error": f"The action failed to initialize: {exc}"}), None
        init_ms = int((time.monotonic() - t_init) * 1000)
        if status != contract.OK:
            if not (isinstance(body, dict) and "error" in body):
                body = {"error": f"init failed with status {status}"}
            return self._failed_init(container, body, logs=logs, init_ms=init_ms), None
        self._admit(lease, container)
        return None, init_ms

    def _admit(self, lease: _Lease, container: Container) -> None:
        """Counts a container whose init succeeded as busy and running, unless the platform closed meanwhile
        (then the lease still holds it as booting, and giving it back kills it)."""
        with self._cond:
            if self._closed:
                raise ContainerError("the platform is shutting down")
            self._booting.discard(container)
            self._starting -= 1
            container.busy = True
            self._containers.append(container)
            self.cold_starts += 1
            lease.booting, lease.reserved, lease.container = None, False, container

    def _failed_init(self, container: Container, error: dict, *, logs: list[str] | None = None, **extra) -> RunResult:
        """A failed cold start's record; the container is killed first, so its last words are in the logs (the
        lease, still holding it as booting, gives back its slot)."""
        container.kill()
        logs = container.take_logs(0.2) if logs is None else logs
        return RunResult(DEVELOPER_ERROR, error, logs=logs, end_ms=_now_ms(), **extra)

    def _reserve_cold_start(self) -> None:
        """Under the lock: a slot for a container being started, held until `_admit` or `_unreserve`, and a
        cold start in flight (no stem refill) until `_cold_done`."""
        self._starting += 1
        self._cold_in_flight += 1

    def _cold_done(self) -> None:
        with self._cond:
            self._cold_in_flight -= 1
            if self._cold_in_flight == 0:
                self._cond.notify_all()  # the stem refill may start now

    def _unreserve(self) -> None:
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()

    def _run_in(self, lease: _Lease, message: dict, limits: dict, timeout_s: float) -> RunResult:
        """/run in the lease's container; sets `lease.reusable` only when the proxy answered as the contract says."""
        container = lease.container
        try:
            status, body = container.run(message, max(timeout_s, 0.05))
        except InvalidAnswer:
            raise
        except ContainerError as exc:
            log.warning("%s: /run failed, container retired: %s", container.key, exc)
            container.kill()  # so the logs below need not wait for sentinels that will not come
            if isinstance(exc, ContainerTimeout):
                msg = f"The action exceeded its time limits of {limits['timeout']} milliseconds."
            elif isinstance(exc, ContainerOutOfMemory):
                msg = "The action exhausted its memory and was aborted."
            else:
                msg = ABNORMAL_RUN
            return RunResult(
                DEVELOPER_ERROR,
                {"error": msg},
                logs=container.take_logs(0.2),
                timed_out=isinstance(exc, ContainerTimeout),
            )
        logs = container.take_logs()
        if status != contract.OK:
            err = body if isinstance(body, dict) and "error" in body else {"error": f"status {status}"}
            if err["error"] == contract.ERR_EXITED:  # the proxy lives on but the action's process died
                err = {"error": ABNORMAL_RUN}
            return RunResult(DEVELOPER_ERROR, err, logs=logs)
        lease.reusable = True
        size = container.answer_bytes  # the launcher's JSON, as json.dumps(result, ensure_ascii=False) writes it
        if size > MAX_RESULT_BYTES:  # OpenWhisk's truncation: an application error quoting the answer's start
            return RunResult(
                APPLICATION_ERROR,
                {
                    "error": f"The action produced a response that exceeded the allowed length: {size} > "
                    f"{MAX_RESULT_BYTES} bytes. The truncated response was: {json.dumps(body)[:TRUNCATED_CHARS]}"
                },
                logs=logs,
            )
        if not isinstance(body, (dict, list)):
            return RunResult(DEVELOPER_ERROR, {"error": f"{INVALID_RUN_RESPONSE}: {json.dumps(body)[:200]}"}, logs=logs)
        code = APPLICATION_ERROR if isinstance(body, dict) and "error" in body else SUCCESS
        return RunResult(code, body, logs=logs)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Kills every container; then waits (up to timeout_s) for the ones being started or killed by other
        threads, which kill theirs on seeing the invoker closed, so that none outlives the platform."""
        self._stop.set()
        with self._cond:
            self._closed = True
            containers, self._containers = self._containers + self._stems + list(self._booting), []
            self._stems = []
            self._cond.notify_all()
        for c in containers:
            c.kill()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._starting + self._dying > 0 and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
