"""Fixtures shared by every test package: a real S3 endpoint on loopback and a small MNIST."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

import procs
from localwhisk.s3 import EmbeddedS3
from mlcore import mnist, weights
from mlcore.storage import Storage, StorageConfig

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def s3_server():
    """One embedded S3 server process for the session (its own keys); tests isolate themselves by bucket."""
    with EmbeddedS3() as server:
        yield server


@pytest.fixture
def small_fs(tmp_path):
    """mount(name, size, read_only=False) -> a tmpfs of its own under tmp_path, unmounted at teardown.

    A real small (or read-only) file system without touching the machine's disks; needs root,
    and skips with the reason where mount is refused.
    """
    mounted = []

    def mount(name: str, size: str, read_only: bool = False):
        path = tmp_path / name
        path.mkdir()
        opts = f"size={size},mode=0700" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs at {path} ({done.stderr.strip() or done.returncode}): needs root")
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in reversed(mounted):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def fill_fs():
    """fill(folder): writes zeros into folder until its file system is full."""

    def fill(folder) -> None:
        with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left for close() to write
            try:
                while True:
                    f.write(b"\0" * (64 << 10))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    return fill


_bucket_counter = iter(range(1_000_000))


@pytest.fixture
def storage_config(s3_server) -> StorageConfig:
    return StorageConfig(
        endpoint_url=s3_server.endpoint_url,
        bucket=f"test-bucket-{next(_bucket_counter)}",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )


@pytest.fixture
def storage(storage_config) -> Storage:
    s = Storage(storage_config)
    s.ensure_bucket()
    return s


@pytest.fixture(scope="session")
def mnist_root():
    """The real MNIST, prepared once (the README's set-up has already done it in CI)."""
    try:
        return mnist.prepare_mnist()
    except mnist.DatasetMissingError as exc:
        pytest.skip(f"real MNIST unavailable: {exc}")


class PlatformHandle:
    """A running local platform owned by the test session."""

    def __init__(self, owner, info) -> None:
        self.owner = owner
        self.info = info
        self.apihost = info.apihost
        self.auth = info.auth
        self.client = info.client()
        self.storage_config = info.storage_config()
        self.storage_env = info.storage_env()

    def restart(self) -> None:
        self.client.close()
        self.info = self.owner.restart()
        self.client = self.info.client()

    def crash_and_start(self) -> None:
        """SIGKILL the platform (its containers and S3 process die with it), then start it again."""
        self.client.close()
        self.owner.kill()
        self.info = self.owner.start()
        self.client = self.info.client()


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """A real local platform process on loopback (controller, invoker, embedded S3)."""
    from localwhisk.supervisor import LocalPlatform

    # room for a 3-worker training job with a straggler (3 + 1 workers, PS, coordinator) and a spare
    with running(LocalPlatform(tmp_path_factory.mktemp("platform"), max_containers=8, idle_timeout_s=600)) as handle:
        yield handle


@contextlib.contextmanager
def running(owner):
    """Starts `owner` (a LocalPlatform) with its bucket made, as a PlatformHandle; stops it on the way out."""
    handle = PlatformHandle(owner, owner.start())
    Storage(handle.storage_config).ensure_bucket()
    try:
        yield handle
    finally:
        handle.client.close()
        owner.stop()


@pytest.fixture(scope="session")
def running_platform():
    """`running`, for fixtures in other folders: with running_platform(LocalPlatform(...)) as handle."""
    return running


# The trained LeNet-5 shared by the action, study and web tests: one recipe, trained once and kept in pytest's
# cache directory, since training is the slow part on 2 cores and a clean clone (CI) has no cache. The page's
# drawn digits need `deployer model train`'s augmentation; the other tests need only a model that classifies
# real digits well, which this one does too (about 99.2% on the 10,000 test images).
AUGMENTED = {"epochs": 3, "batch_size": 128, "lr": 0.1, "seed": 0, "augment": True}


def cached_model(request, mnist_root, config: dict) -> tuple[dict, dict]:
    """(state, metrics) for `config`, trained now unless pytest's cache holds it.

    `"augment": True` trains with mlcore.augment's default ranges; their digest is part of
    the cache name, so a change of the recipe trains anew instead of reusing a stale model.
    """
    import hashlib

    import torch

    from mlcore.augment import AugmentConfig
    from mlcore.train import train_lenet5

    folder = request.config.cache.mkdir("lenet5")
    name = "-".join(f"{k}{v}" for k, v in sorted(config.items()))
    config = dict(config)
    if config.pop("augment", False):
        config["augment"] = AugmentConfig()
        name += "-" + hashlib.sha256(json.dumps(config["augment"].to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    blob_path, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    if blob_path.is_file() and meta_path.is_file():
        return weights.decode(blob_path.read_bytes(), str(blob_path))[0], json.loads(meta_path.read_text())
    threads = torch.get_num_threads()
    try:
        result = train_lenet5(**config, threads=2, root=mnist_root)
    finally:
        torch.set_num_threads(threads)
    blob_path.write_bytes(weights.encode(result.state))
    meta_path.write_text(json.dumps(result.metrics()))
    return result.state, result.metrics()


@pytest.fixture(scope="session")
def lenet5_augmented(request, mnist_root):
    """Three epochs with `deployer model train`'s augmentation: about 99.3%, for drawn and printed digits."""
    return cached_model(request, mnist_root, AUGMENTED)


# docker mode: the runtime images built once per session, and a label per test that must end empty. These skip
# with the reason where docker cannot run here (no client, no engine, not root for debootstrap); the first build
# takes minutes (a ~5 GB Python image, a ~250 MB Node.js one), later sessions find them cached in seconds.
@pytest.fixture(scope="session")
def docker_engine() -> str:
    from deployer import runtime_image as ri

    try:
        return ri.check_docker()
    except ri.DockerUnavailable as exc:
        pytest.skip(f"docker mode: {exc}")


@pytest.fixture(scope="session")
def runtime_builds(docker_engine) -> dict:
    """Every runtime's image, built (or found cached) by the library function: {runtime: its report}."""
    from deployer import runtime_image as ri

    try:
        return {runtime: report.to_dict() for runtime, report in ri.build_runtime_images().items()}
    except ri.DockerUnavailable as exc:  # debootstrap missing, not root
        pytest.skip(f"docker mode: the runtime images cannot be built here: {exc}")


@pytest.fixture(scope="session")
def runtime_build(runtime_builds) -> dict:
    """The Python runtime image's report (the Node.js one is built beside it)."""
    return runtime_builds["python"]


@pytest.fixture(scope="session")
def runtime_image(runtime_builds) -> str:
    """The Python runtime image's tag, once every runtime's image is there (docker mode runs each kind in its own)."""
    from deployer import runtime_image as ri

    for report in runtime_builds.values():
        if not ri.image_id(report["tag"]):
            pytest.skip(f"docker mode: image {report['tag']} missing")
    return runtime_builds["python"]["tag"]


@pytest.fixture
def platform_id(docker_engine):
    """A platform label of the test's own; at teardown nothing may carry it (it is reaped either way)."""
    from localwhisk.invoker import docker_container as dc

    value = f"test-{uuid.uuid4().hex[:10]}"
    yield value
    left = dc.leftovers(value)
    dc.reap(value)
    assert left == {"containers": [], "networks": []}, f"the test left docker objects behind: {left}"


@pytest.fixture
def network(platform_id):
    from localwhisk.invoker.docker_container import DockerNetwork

    net = DockerNetwork(platform_id).create()
    try:
        yield net
    finally:
        net.remove()


class RuntimeProxy:
    """An action proxy of `runtimes/` as a bare process: the contract's /init and /run over HTTP, its stdout and
    stderr read as logs up to the sentinels. The platform's own containers are not involved, so a runtime test
    tests the runtime and nothing else."""

    def __init__(self, runtime: str = "python", env: dict | None = None) -> None:
        import sys
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        if runtime == "python":
            argv = [sys.executable, "-u", "-m", "runtimes.proxy"]
        else:
            argv = ["node", str(root / "runtimes" / "nodejs" / "launcher.js")]
        self.child = procs.Child(
            [*argv, "--ready-fd", procs.READY_FD],
            name=f"the {runtime} proxy",
            ready=procs.ReadyLine("fd"),
            kill_tree=True,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            # as an invoker starts one: its __OW_* variables come from the invoker alone, never from the shell
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("__OW_")},
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
        )
        self.connection = None
        self.port: int | None = None
        self._lines: list[str] = []
        self._sentinels = {"stdout": 0, "stderr": 0}
        self._cond = threading.Condition()
        self._activations = 0
        self._taken = 0

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self, timeout_s: float = 60.0) -> RuntimeProxy:
        import http.client

        self.port = port = int(self.child.start(timeout_s))
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._pump, args=(name,), daemon=True).start()
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        return self

    def _pump(self, name: str) -> None:
        from runtimes import contract

        for raw in iter(getattr(self.child.popen, name).readline, b""):
            text = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                if text == contract.SENTINEL:
                    self._sentinels[name] += 1
                else:
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # as OpenWhisk's log lines begin
                    self._lines.append(f"{stamp} {name}: {text}")
                self._cond.notify_all()

    def _post(self, path: str, body: dict, timeout_s: float) -> tuple[int, dict]:
        self.connection.timeout = timeout_s
        self.connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        return answer.status, json.loads(answer.read())

    def init(self, value: dict, timeout_s: float) -> tuple[int, dict, list[str]]:
        status, body = self._post("/init", {"value": value}, timeout_s)
        if status == 200:
            return status, body, []
        if status == 502:  # the action's code failed to load: its output ends with the sentinels, as a run's does
            self._activations += 1
            return status, body, self.take_logs()
        return status, body, self.take_logs(wait_s=0)  # refused before any code ran: nothing was written

    def run(self, message: dict, timeout_s: float) -> tuple[int, dict]:
        self._activations += 1
        return self._post("/run", message, timeout_s)

    def take_logs(self, wait_s: float = 5.0) -> list[str]:
        """The lines written since the last call, once both streams have ended this activation (or after wait_s)."""
        with self._cond:
            self._cond.wait_for(lambda: min(self._sentinels.values()) >= self._activations, timeout=wait_s)
            lines, self._lines = self._lines, []
        return lines

    def kill(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.child.kill()

    def __enter__(self) -> RuntimeProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


@pytest.fixture
def runtime_proxy():
    """runtime_proxy(runtime="python", env=None) -> a started RuntimeProxy, killed at teardown."""
    started: list[RuntimeProxy] = []

    def start(runtime: str = "python", env: dict | None = None) -> RuntimeProxy:
        started.append(RuntimeProxy(runtime, env))
        return started[-1].start()

    yield start
    for proxy in started:
        proxy.kill()
