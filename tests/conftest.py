"""Fixtures shared by every test package: a real S3 endpoint on loopback and a small MNIST."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess

import pytest

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
        with open(folder / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (64 << 10))
                    f.flush()
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


# Trained LeNet-5 models shared by the action and web tests: trained once per configuration and
# kept in pytest's cache directory, since training is the slow part on 2 cores.
SMALL = {"epochs": 1, "batch_size": 64, "lr": 0.1, "seed": 0, "train_limit": 10_000, "test_limit": 1_000}
FULL = {"epochs": 2, "batch_size": 128, "lr": 0.1, "seed": 0}
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
def lenet5_small(request, mnist_root):
    """One epoch on 10,000 real training images: about 95% on the first 1,000 test images."""
    return cached_model(request, mnist_root, SMALL)


@pytest.fixture(scope="session")
def lenet5_full(request, mnist_root):
    """Two epochs on all 60,000 training images: about 98.9% on the 10,000 test images."""
    return cached_model(request, mnist_root, FULL)


@pytest.fixture(scope="session")
def lenet5_augmented(request, mnist_root):
    """Three epochs with `deployer model train`'s augmentation: about 99.3%, for drawn and printed digits."""
    return cached_model(request, mnist_root, AUGMENTED)
