"""Fixtures shared by every test package: a real S3 endpoint on loopback and a small MNIST."""

from __future__ import annotations

import os

import pytest

from deployer.local.s3 import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, EmbeddedS3
from mlcore import mnist
from mlcore.storage import Storage, StorageConfig

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the session; tests isolate themselves by bucket."""
    with EmbeddedS3() as server:
        yield server


_bucket_counter = iter(range(1_000_000))


@pytest.fixture
def storage_config(s3_server) -> StorageConfig:
    return StorageConfig(
        endpoint_url=s3_server.endpoint_url,
        bucket=f"test-bucket-{next(_bucket_counter)}",
        access_key=DEFAULT_ACCESS_KEY,
        secret_key=DEFAULT_SECRET_KEY,
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

    owner = LocalPlatform(tmp_path_factory.mktemp("platform"), max_containers=6, idle_timeout_s=600)
    info = owner.start()
    handle = PlatformHandle(owner, info)
    Storage(handle.storage_config).ensure_bucket()
    try:
        yield handle
    finally:
        handle.client.close()
        owner.stop()
