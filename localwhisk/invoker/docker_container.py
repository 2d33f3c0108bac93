"""One action container as a real Docker container: a drop-in for `container.Container`.

As OpenWhisk's DockerContainerFactory / DockerContainer do it: `docker run -d` from the runtime
image with the action's memory as the cgroup limit (`--memory M --memory-swap M`: no swap), CPU
shares, a pids limit and an open-files ulimit, `__OW_API_HOST` in the environment, labels naming
the platform (so a later start reaps what a dead one left), on a bridge network of the platform's
own; then POST /init and /run to the container's IP on port 8080. The logs are the container's
output (`docker logs --follow`, stdout and stderr apart) up to the activation sentinels; an
activation whose connection broke is a memory exhaustion when `docker inspect` says OOMKilled; a
timeout removes the container. Idle containers can be paused (`docker pause`) and are unpaused on
their next use.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid

from localwhisk.entities import kinds
from localwhisk.invoker.container import (
    DEFAULT_MAX_UNPACKED_BYTES,
    ActionContract,
    ContainerError,
    ContainerOutOfMemory,
)
from localwhisk.invoker.docker_cli import docker, docker_binary
from localwhisk.invoker.proxy_connection import ProxyConnection, ProxyGone
from procs import popen
from runtimes import contract

LABEL = "org.deployer.platform"  # value: the platform id; every container and network made here has it
KEY_LABEL = "org.deployer.action"
ACTION_PORT = 8080
# runtime family -> the image of its default kind in the runtime manifest, for a container asked for by runtime alone
DEFAULT_IMAGES = {rt.family: rt.image for rt in kinds.MANIFEST if rt.default}
# OpenWhisk's defaults for an action container
DEFAULT_CPU_SHARES = 64
DEFAULT_PIDS_LIMIT = 1024
DEFAULT_NOFILE = 1024


def _safe_name(text: str) -> str:
    """Docker names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; label values allow anything."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)


def _docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """docker CLI; a failure raises ContainerError with the CLI's last line (the runtime_image errors are
    other DeployerErrors, which the invoker would not classify)."""
    try:
        done = docker(*args, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ContainerError(f"docker {args[0]} did not answer in {timeout:.0f} s") from exc
    except Exception as exc:  # DockerUnavailable
        raise ContainerError(str(exc)) from exc
    if check and done.returncode != 0:
        raise ContainerError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done


def _labelled(kind: str, label_value: str | None) -> list[str]:
    selector = LABEL if label_value is None else f"{LABEL}={label_value}"
    if kind == "container":
        out = _docker("ps", "-aq", "--no-trunc", "--filter", f"label={selector}").stdout
    else:
        out = _docker("network", "ls", "-q", "--no-trunc", "--filter", f"label={selector}").stdout
    return out.split()


def reap(label_value: str | None = None) -> dict:
    """Removes every container, then every network, carrying the project's label (one platform's
    when label_value names it). Returns what it removed: {"containers": [...], "networks": [...]}."""
    containers = _labelled("container", label_value)
    if containers:
        _docker("rm", "-f", *containers, timeout=120, check=False)
    networks = _labelled("network", label_value)
    for net in networks:
        _docker("network", "rm", net, check=False)
    return {"containers": containers, "networks": networks}


def leftovers(label_value: str | None = None) -> dict:
    """What `reap` would remove now (tests assert this is empty)."""
    return {"containers": _labelled("container", label_value), "networks": _labelled("network", label_value)}


class DockerNetwork:
    """The platform's own bridge network, made on `create()` and removed on `remove()` (both idempotent).

    internal=True (default): no route out of the host (no NAT to the machine's interfaces); the host
    still reaches each container at its address on the bridge.
    """

    def __init__(self, platform_id: str, name: str | None = None, internal: bool = True) -> None:
        self.platform_id = platform_id
        self.name = name or f"deployer-{_safe_name(platform_id)}"
        self.internal = internal

    def create(self) -> DockerNetwork:
        found = _docker("network", "ls", "-q", "--filter", f"name=^{self.name}$").stdout.strip()
        if not found:
            args = ["network", "create", "--driver", "bridge", "--label", f"{LABEL}={self.platform_id}", *_run_label()]
            if self.internal:
                args.append("--internal")
            done = _docker(*args, self.name, check=False)
            if done.returncode != 0 and "already exists" not in done.stderr:
                raise ContainerError(f"docker network create {self.name} failed: {done.stderr.strip()}")
        return self

    @property
    def gateway(self) -> str | None:
        """The host's address on this network (where a service for the containers would listen)."""
        out = _docker("network", "inspect", "--format", "{{json .IPAM.Config}}", self.name).stdout
        return next((c.get("Gateway") for c in json.loads(out or "[]") or [] if c.get("Gateway")), None)

    def remove(self) -> None:
        done = _docker("network", "rm", self.name, check=False)
        if done.returncode != 0 and "not found" not in done.stderr and "No such" not in done.stderr:
            raise ContainerError(f"docker network rm {self.name} failed: {done.stderr.strip()}")

    def __enter__(self) -> DockerNetwork:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.remove()


def _run_label() -> list[str]:
    """Under `./run test` everything made carries the run's marker, so the run can tell what it left."""
    run = os.environ.get("DEPLOYER_TEST_RUN")
    return ["--label", f"org.deployer.run={run}"] if run else []


def _docker_stamp(ts: str) -> str:
    """Docker's RFC 3339 nanosecond stamp in container.py's format (microseconds, Z)."""
    try:
        head, _, frac = ts.rstrip("Z").partition(".")
        return (
            dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").strftime("%Y-%m-%dT%H:%M:%S") + f".{(frac + '000000')[:6]}Z"
        )
    except ValueError:
        return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DockerContainer(ActionContract):
    """Owns one Docker container. `kill()` (docker rm -f) is idempotent; `with DockerContainer(...)` kills on exit.

    Same public interface as container.Container, plus `pause()`, `unpause()`, `paused`, `id`, `ip`, `name`.
    """

    def __init__(
        self,
        key: str,
        *,
        memory_mb: int,
        log_limit_bytes: int,
        env: dict[str, str] | None = None,
        runtime: str = "python",
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        platform_id: str = "default",
        network: DockerNetwork | str | None = None,
        image: str | None = None,
        images: dict[str, str] | None = None,
        api_host: str | None = None,
        cpu_shares: int = DEFAULT_CPU_SHARES,
        pids_limit: int = DEFAULT_PIDS_LIMIT,
        nofile: int = DEFAULT_NOFILE,
        mounts: dict[str, str] | None = None,
    ) -> None:
        images = images or DEFAULT_IMAGES
        if image is None and runtime not in images:
            raise ContainerError(f"no docker image for runtime {runtime!r}; known: {', '.join(images)}")
        super().__init__(key, runtime, memory_mb, max_unpacked_bytes, env or {}, log_limit_bytes)
        self.image = image or images[runtime]
        self.platform_id = platform_id
        self.network = network.name if isinstance(network, DockerNetwork) else network
        self.api_host = api_host
        self.cpu_shares, self.pids_limit, self.nofile = cpu_shares, pids_limit, nofile
        self.mounts = mounts or {}  # host folder -> container folder, read-only
        self.name = f"deployer-{_safe_name(platform_id)}-{uuid.uuid4().hex[:12]}"
        self.kill_error: str | None = None  # why the last `docker rm -f` failed (reap() at the next start cleans up)
        self._follower: subprocess.Popen | None = None
        self._lock = threading.Lock()  # start/kill/pause against each other
        self._killed = False
        self.paused = False
        self.id: str | None = None
        self.ip: str | None = None
        self.port = ACTION_PORT
        self.pid = None  # the process lives in the container's own PID namespace

    # ------------------------------------------------------------ lifecycle

    def _run_args(self) -> list[str]:
        mem = f"{int(self.memory_mb)}m"
        args = [
            "run",
            "-d",
            "--name",
            self.name,
            "--label",
            f"{LABEL}={self.platform_id}",
            *_run_label(),
            "--label",
            f"{KEY_LABEL}={(self.key or 'stem cell')[:200]}",
            "--memory",
            mem,
            "--memory-swap",
            mem,
            "--cpu-shares",
            str(self.cpu_shares),
            "--pids-limit",
            str(self.pids_limit),
            "--ulimit",
            f"nofile={self.nofile}:{self.nofile}",
            "--cap-drop",
            "NET_RAW",
            "--cap-drop",
            "NET_ADMIN",
            "--restart",
            "no",
            "--log-driver",
            "json-file",
        ]
        if self.network:
            args += ["--network", self.network]
        for host_dir, inside in self.mounts.items():
            args += ["-v", f"{host_dir}:{inside}:ro"]
        env = {"ACTION_MAX_UNPACKED_BYTES": str(self.max_unpacked_bytes), "PYTHONUNBUFFERED": "1"}
        if self.api_host:
            env["__OW_API_HOST"] = self.api_host
        env.update(self._env)
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        return args + [self.image]

    def start(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._killed:
                raise ContainerError("the container was killed before it started")
            done = _docker(*self._run_args(), timeout=timeout_s, check=False)
            if done.returncode != 0:
                _docker("rm", "-f", self.name, check=False)  # a half-made container (exit 125) keeps its name
                raise ContainerError(f"docker run {self.image} failed: {done.stderr.strip()[-500:]}")
            self.id = done.stdout.strip().splitlines()[-1]
            # every line since the container started, stdout and stderr apart; ends when the container does
            # dies with the platform (the container itself outlives a killed platform until the next start)
            self._follower = popen(
                [docker_binary(), "logs", "--follow", "--timestamps", self.id],
                die_with_parent=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                errors="replace",
            )
        for name, stream in (("stdout", self._follower.stdout), ("stderr", self._follower.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()
        try:
            self.ip = self._address()
            self._wait_for_port(deadline)
            self._connection = ProxyConnection(self.ip, self.port)
        except ContainerError:
            self.kill()
            raise

    def _address(self) -> str:
        out = _docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", self.id).stdout
        nets = json.loads(out or "{}") or {}
        net = nets.get(self.network) if self.network else next(iter(nets.values()), None)
        ip = (net or {}).get("IPAddress")
        if not ip:
            raise ContainerError(f"container {self.name} has no address on network {self.network or 'default'}")
        return ip

    def _wait_for_port(self, deadline: float) -> None:
        """Until the proxy accepts on ip:8080; a container that exits meanwhile fails at once."""
        while True:
            try:
                socket.create_connection((self.ip, self.port), timeout=1).close()
                return
            except OSError:
                pass
            if not self.alive():
                logs = "\n".join(self._logs.take(0, 0.5)[-20:])
                raise ContainerError(f"the action runtime in {self.name} exited before it listened; output:\n{logs}")
            if time.monotonic() > deadline:
                logs = "\n".join(self._logs.take(0, 0)[-20:])
                raise ContainerError(
                    f"the action runtime in {self.name} did not listen on {self.ip}:{self.port} "
                    f"in time; output:\n{logs}"
                )
            time.sleep(0.02)  # the port has no event to wait on: OpenWhisk polls it too

    def _pump(self, name: str, stream) -> None:
        for raw in stream:
            stamp, _, line = raw.partition(" ")
            self._logs.add(name, line, stamp=_docker_stamp(stamp))

    def alive(self) -> bool:
        """True while the container runs: its log follower ends when the container stops."""
        return self._follower is not None and self._follower.poll() is None and not self._killed

    def pause(self) -> None:
        """Freezes an idle container (docker pause); its memory stays, it uses no CPU."""
        with self._lock:
            if self.id and not self.paused and not self._killed:
                _docker("pause", self.id)
                self.paused = True

    def unpause(self) -> None:
        with self._lock:
            if self.id and self.paused and not self._killed:
                _docker("unpause", self.id)
                self.paused = False

    def kill(self) -> None:
        """Removes the container (docker rm -f); idempotent, and never raises (as Container.kill): a failure
        is kept in `kill_error`, and the label lets `reap()` remove the container later."""
        with self._lock:
            if self._killed:
                return
            self._killed = True
            target = self.id or self.name
        try:
            done = _docker("rm", "-f", target, timeout=60, check=False)
            if done.returncode != 0 and "No such container" not in done.stderr:
                self.kill_error = f"docker rm -f {target} failed: {done.stderr.strip()}"
        except ContainerError as exc:
            self.kill_error = str(exc)
        if self._follower is not None:
            try:
                self._follower.wait(timeout=10)  # ends with the container
            except subprocess.TimeoutExpired:
                self._follower.kill()
                self._follower.wait()

    def __enter__(self) -> DockerContainer:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    # ------------------------------------------------------------ the action contract

    def _oom_killed(self, wait_s: float = 2.0) -> bool:
        """After a broken connection: waits (docker wait) for the container to stop, then asks docker
        whether the kernel's OOM killer struck in it (docker records it on the cgroup's OOM event)."""
        if self.id is None:
            return False
        if wait_s > 0:
            try:
                subprocess.run([docker_binary(), "wait", self.id], capture_output=True, timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass
        done = _docker("inspect", "--format", "{{.State.OOMKilled}}", self.id, check=False)
        return done.stdout.strip() == "true" or self._oom_kills() > 0

    def _oom_kills(self) -> int:
        """The memory cgroup's OOM kill count: docker marks OOMKilled only when the container stops, but here
        the kernel kills the action's process and the proxy lives on (cgroup v1, cgroupfs driver)."""
        candidates = [
            f"{root}/{name}/{leaf}"
            for root, leaf in (
                ("/sys/fs/cgroup/memory/docker", "memory.oom_control"),
                ("/sys/fs/cgroup/memory/system.slice", "memory.oom_control"),
                ("/sys/fs/cgroup/system.slice", "memory.events"),  # cgroup v2
                ("/sys/fs/cgroup/docker", "memory.events"),
            )
            for name in (self.id, f"docker-{self.id}.scope")
        ]
        for path in candidates:
            try:
                with open(path) as fh:
                    fields = dict(line.split() for line in fh if line.strip())
                return int(fields.get("oom_kill", 0))
            except (OSError, ValueError):
                continue
        return 0

    def _post(self, path: str, body: dict, timeout_s: float) -> tuple[int, dict]:
        if self._connection is None or self._killed:
            raise ContainerError("the container is not running")
        if self.paused:
            self.unpause()
        try:
            status, payload = self._exchange(self._connection, path, body, timeout_s)
        except ProxyGone as exc:
            if self._oom_killed():
                raise ContainerOutOfMemory("memory limit exceeded") from exc
            raise ContainerError(f"the action process exited unexpectedly ({exc})") from exc
        # the OOM killer takes the biggest process, the action's, and the proxy answers that it exited
        if isinstance(payload, dict) and payload.get("error") == contract.ERR_EXITED and self._oom_killed(0):
            self.kill()
            raise ContainerOutOfMemory("memory limit exceeded")
        return status, payload
