"""ClientUpdates on Ray actors, one per worker slot, spread over a Ray cluster's nodes.

Ray is the engine under Flower's simulation; here it only moves bytes and keeps workers
alive, while each client still runs `run_task` as in every other executor, so the same
seed gives the same weights. The training set goes into Ray's object store once and each
actor keeps it for its lifetime; each round the global weights are put there once and
every actor reads them from its node's store. Clients are handed out one at a time to
whichever actor is free, so an actor (or node) that dies costs exactly the client it
was running: that client becomes a ClientFailure, the others finish on the survivors,
and the next round replaces the dead actors wherever the cluster has room.

Without an address the executor starts a private Ray on loopback and stops it on close;
with one it joins that cluster and only disconnects.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import ray
import ray.exceptions as rex
import ray.util
import torch

from ..core import ClientFailure, ClientResult, ClientTask, State, run_task
from ..errors import FedAvgError
from ..models import build_model
from . import Managed
from .serial import CLIENT_ERRORS

# What losing a worker looks like from the driver; a RayTaskError (a bug in Worker) is not among them.
WORKER_LOST = (
    rex.RayActorError,
    rex.ObjectLostError,
    rex.NodeDiedError,
    rex.WorkerCrashedError,
    rex.LocalRayletDiedError,
    rex.OutOfMemoryError,
    rex.RuntimeEnvSetupError,
)


AUTH_MODE = "RAY_AUTH_MODE"


def _restore_auth_mode(value: str | None) -> None:
    """Undoes what starting a Ray instance did to this process's authentication mode.

    ray.init, when it starts an instance, turns on token authentication for the whole
    process (this variable, Ray's cached settings, its cached token); left so, this
    process refuses the calls of any cluster without tokens that it connects to later.
    """
    if os.environ.get(AUTH_MODE) == value:
        return
    if value is None:
        os.environ.pop(AUTH_MODE, None)
    else:
        os.environ[AUTH_MODE] = value
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


class Worker:
    """The body of one worker slot: the training set, a model per architecture, its own torch threads.

    A plain class (made a Ray actor by the executor) so that a subclass can instrument it.
    """

    def __init__(self, images, labels, threads: int) -> None:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        # torch.optim's first optimizer imports torch._dynamo (seconds): pay it at start-up, not in round 1
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        with warnings.catch_warnings():
            # object-store arrays are read-only views; run_task only indexes them (which copies)
            warnings.simplefilter("ignore", UserWarning)
            self.images = torch.from_numpy(images)
            self.labels = torch.from_numpy(labels)
        self.models: dict[str, torch.nn.Module] = {}

    def ready(self) -> tuple[str, int]:
        """(node id, pid): answered once the constructor is done."""
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def run(self, task: ClientTask, global_state: State) -> ClientResult | ClientFailure:
        model = self.models.get(task.config.model)
        if model is None:
            model = self.models[task.config.model] = build_model(task.config.model)
        try:
            return run_task(task, model, global_state, self.images, self.labels)
        except CLIENT_ERRORS as exc:
            return ClientFailure(task.client_id, f"{type(exc).__name__}: {exc}")


@dataclass
class _Slot:
    actor: object
    started: object  # ObjectRef of actor.ready(), resolved once the actor is up
    node: str | None = None
    pid: int | None = None
    lost: str | None = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _host_port(address: str) -> tuple[str, int] | None:
    """('host', port) of `host:port` or `ray://host:port`; None for `auto` and the like."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _loopback_node():
    """Keeps 127.0.0.1 as 127.0.0.1 while ray.init runs.

    Ray replaces a loopback address (the node's, or the one to connect to) with the
    machine's routable one, so a private node would listen on every interface and a
    cluster on loopback could not be reached, unless its single-machine switch (meant
    for Windows and macOS) is off; only ray.init reads it, so it is off just for that call.
    """
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved is None:
            del ray_constants.ENABLE_RAY_CLUSTER
        else:
            ray_constants.ENABLE_RAY_CLUSTER = saved


class RayExecutor(Managed):
    name = "ray"

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        *,
        workers: int = 2,
        threads_per_worker: int = 1,
        ray_address: str | None = None,
        startup_timeout_s: float = 300.0,
        worker_cls: type = Worker,
        window: int | None = None,
    ) -> None:
        """ray_address: None for a private local Ray, else `auto`, `host:6379` or `ray://host:10001`.

        Each actor asks Ray for threads_per_worker CPUs, so Ray places no more workers on a
        node than it has cores. worker_cls is a Worker subclass (instrumentation, tests).
        window: clients handed out past the one whose update is due next (2 per worker by
        default); the driver holds at most that many updates.
        """
        if workers < 1 or threads_per_worker < 1:
            raise FedAvgError(f"need at least 1 worker and 1 thread each, got {workers} x {threads_per_worker}")
        if window is not None and window < 1:
            raise FedAvgError(f"the window must hold at least 1 update, got {window}")
        self.window = window or 2 * workers
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.ray_address = ray_address
        self.startup_timeout_s = startup_timeout_s
        self._images = images_uint8.to(torch.uint8).contiguous().numpy()
        self._labels = labels.to(torch.int64).contiguous().numpy()
        self._actor_cls = ray.remote(worker_cls)
        self._owned = False
        self._auth_mode: str | None = None
        self._data: tuple | None = None
        self._slots: list[_Slot] = []
        self.startup_s: float | None = None

    @property
    def eval_threads(self) -> int:
        """Threads the driver may use between rounds, when the workers are idle."""
        return max(1, min(os.cpu_count() or 1, self.workers * self.threads_per_worker))

    def worker_nodes(self) -> list[str | None]:
        """The node id of each worker slot (None while one is still being placed)."""
        return [slot.node for slot in self._slots]

    def _connect(self) -> None:
        if ray.is_initialized():
            if self.ray_address is None:
                raise FedAvgError(
                    "Ray is already initialised in this process: pass its address (ray_address='auto') "
                    "or ray.shutdown() first"
                )
            return  # someone else's connection: used, never shut down
        options = dict(log_to_driver=False, logging_level=logging.WARNING)
        target = _host_port(self.ray_address) if self.ray_address else None
        if target is not None:
            # ray.init retries an address where nothing listens for minutes: ask once, briefly
            try:
                socket.create_connection(target, timeout=5.0).close()
            except OSError as exc:
                raise FedAvgError(
                    f"nothing answers at {self.ray_address} ({exc}): is the Ray head running "
                    "(ray start --head) and the port open?"
                ) from exc
        self._owned = True  # from here on close() shuts down whatever ray.init left, even half-started
        self._auth_mode = os.environ.get(AUTH_MODE)
        try:
            if self.ray_address is not None:
                with _loopback_node() if target and _is_loopback(target[0]) else contextlib.nullcontext():
                    ray.init(address=self.ray_address, **options)
            else:
                with _loopback_node():
                    ray.init(
                        address="local",
                        num_cpus=self.workers * self.threads_per_worker,
                        num_gpus=0,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        **options,
                    )
        except (OSError, RuntimeError, ValueError, rex.RayError) as exc:
            where = self.ray_address or "a private local instance"
            raise FedAvgError(f"cannot start Ray ({where}): {_first_line(exc)}") from exc
        if self.ray_address is None:
            address = ray.util.get_node_ip_address()
            if not ipaddress.ip_address(address).is_loopback:
                raise FedAvgError(
                    f"the private Ray instance listens on {address}, not loopback; this Ray version "
                    "ignores the loopback switch: start a cluster and pass --ray-address"
                )

    def _spawn(self) -> _Slot:
        actor = self._actor_cls.options(
            num_cpus=self.threads_per_worker, scheduling_strategy="SPREAD", max_restarts=0
        ).remote(*self._data, self.threads_per_worker)
        return _Slot(actor, actor.ready.remote())

    def start(self) -> float:
        """Connects, puts the training set into the object store and waits until every worker is up.

        Raises:
            FedAvgError: Ray cannot start or be reached, or not every worker started within
                startup_timeout_s (the cluster lacks CPUs, or a node lacks this project).
        """
        started = time.perf_counter()
        self._connect()
        self._data = (ray.put(self._images), ray.put(self._labels))
        self._slots = [self._spawn() for _ in range(self.workers)]
        refs = [slot.started for slot in self._slots]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.startup_timeout_s)
        if len(ready) < len(refs):
            raise FedAvgError(
                f"only {len(ready)} of {self.workers} Ray workers started within "
                f"{self.startup_timeout_s:g} s; each asks for {self.threads_per_worker} CPU and the "
                f"cluster has {ray.available_resources().get('CPU', 0):g} free: lower --workers or "
                "--threads, or add nodes"
            )
        for slot in self._slots:
            try:
                slot.node, slot.pid = ray.get(slot.started)
            except (rex.RayActorError, rex.RayTaskError, rex.RuntimeEnvSetupError) as exc:
                raise FedAvgError(
                    f"a Ray worker failed to start ({_first_line(exc)}); every node needs this project installed"
                ) from exc
        self.startup_s = time.perf_counter() - started
        return self.startup_s

    def _replace_lost(self) -> None:
        """Asks every running actor for a sign of life, and replaces those lost since the last round."""
        pings = [(slot, slot.actor.ready.remote()) for slot in self._slots if slot.node and not slot.lost]
        for slot, ref in pings:
            try:
                ray.get(ref)
            except WORKER_LOST as exc:
                slot.lost = _first_line(exc)
        for i, slot in enumerate(self._slots):
            if slot.lost:
                with contextlib.suppress(rex.RayError):
                    ray.kill(slot.actor, no_restart=True)
                self._slots[i] = self._spawn()

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[ClientResult | ClientFailure]:
        if not tasks:
            return
        if not self._slots:
            self.start()
        self._replace_lost()
        weights = ray.put(dict(global_state))
        done_out: dict[int, ClientResult | ClientFailure] = {}  # finished ahead of their turn, within the window
        queue = collections.deque(range(len(tasks)))
        idle = [slot for slot in self._slots if slot.node]
        starting = {slot.started: slot for slot in self._slots if not slot.node}
        running: dict = {}
        turn = 0
        while turn < len(tasks):
            if turn in done_out:
                yield done_out.pop(turn)
                turn += 1
                continue
            while queue and idle and queue[0] < turn + self.window:
                slot, i = idle.pop(0), queue.popleft()
                running[slot.actor.run.remote(tasks[i], weights)] = (slot, i)
            if not running and not starting:
                self._fail(tasks, queue, done_out, "every Ray worker of this round was lost")
                continue
            # with clients running, every wait ends (Ray settles a dead actor's calls as errors)
            timeout = None if running else self.startup_timeout_s
            done, _ = ray.wait([*running, *starting], num_returns=1, timeout=timeout)
            if not done:
                self._fail(tasks, queue, done_out, f"no Ray worker could be placed within {self.startup_timeout_s:g} s")
                continue
            ref = done[0]
            if ref in starting:
                slot = starting.pop(ref)
                try:
                    slot.node, slot.pid = ray.get(ref)
                    idle.append(slot)
                except (*WORKER_LOST, rex.RayTaskError) as exc:
                    slot.lost = _first_line(exc)
                continue
            slot, i = running.pop(ref)
            try:
                done_out[i] = ray.get(ref)
                idle.append(slot)
            except WORKER_LOST as exc:
                slot.lost = _first_line(exc)
                done_out[i] = ClientFailure(
                    tasks[i].client_id, f"Ray worker (pid {slot.pid} on node {slot.node}) lost: {slot.lost}"
                )

    @staticmethod
    def _fail(tasks, queue, out, why: str) -> None:
        for i in queue:
            out[i] = ClientFailure(tasks[i].client_id, why)
        queue.clear()

    def close(self) -> None:
        """Stops the workers; stops the private Ray (or disconnects from the cluster) when this executor made it."""
        try:
            if ray.is_initialized():
                for slot in self._slots:
                    with contextlib.suppress(rex.RayError):
                        ray.kill(slot.actor, no_restart=True)
        finally:
            self._slots = []
            self._data = None
            if self._owned:
                self._owned = False
                ray.shutdown()
                _restore_auth_mode(self._auth_mode)
