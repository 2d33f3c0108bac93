"""Fixtures shared by every test package: a real S3 endpoint on loopback and a small MNIST."""

from __future__ import annotations

import json
import os

import pytest

from deployer.local.s3 import EmbeddedS3
from mlcore import mnist
from mlcore.model import state_from_bytes, state_to_bytes
from mlcore.storage import Storage, StorageConfig

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def s3_server():
    """One embedded S3 server process for the session (its own keys); tests isolate themselves by bucket."""
    with EmbeddedS3() as server:
        yield server


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


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """A real local platform process on loopback (controller, invoker, embedded S3)."""
    from deployer.local.supervisor import LocalPlatform

    # room for a 3-worker training job with a straggler (3 + 1 workers, PS, coordinator) and a spare
    owner = LocalPlatform(tmp_path_factory.mktemp("platform"), max_containers=8, idle_timeout_s=600)
    info = owner.start()
    handle = PlatformHandle(owner, info)
    Storage(handle.storage_config).ensure_bucket()
    try:
        yield handle
    finally:
        handle.client.close()
        owner.stop()


# Trained LeNet-5 models shared by the action and web tests: trained once per configuration and
# kept in pytest's cache directory, since training is the slow part on 2 cores.
SMALL = {"epochs": 1, "batch_size": 64, "lr": 0.1, "seed": 0, "train_limit": 10_000, "test_limit": 1_000}
FULL = {"epochs": 2, "batch_size": 128, "lr": 0.1, "seed": 0}


def cached_model(request, mnist_root, config: dict) -> tuple[dict, dict]:
    """(state, metrics) for `config`, trained now unless pytest's cache holds it."""
    import torch

    from mlcore.train import train_lenet5

    folder = request.config.cache.mkdir("lenet5")
    name = "-".join(f"{k}{v}" for k, v in sorted(config.items()))
    blob_path, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    if blob_path.is_file() and meta_path.is_file():
        return state_from_bytes(blob_path.read_bytes()), json.loads(meta_path.read_text())
    threads = torch.get_num_threads()
    try:
        result = train_lenet5(**config, threads=2, root=mnist_root)
    finally:
        torch.set_num_threads(threads)
    blob_path.write_bytes(state_to_bytes(result.state))
    meta_path.write_text(json.dumps(result.metrics()))
    return result.state, result.metrics()


@pytest.fixture(scope="session")
def lenet5_small(request, mnist_root):
    """One epoch on 10,000 real training images: about 95% on the first 1,000 test images."""
    return cached_model(request, mnist_root, SMALL)


@pytest.fixture(scope="session")
def lenet5_full(request, mnist_root):
    """Two epochs on all 60,000 training images: about 98.8% on the 10,000 test images."""
    return cached_model(request, mnist_root, FULL)
