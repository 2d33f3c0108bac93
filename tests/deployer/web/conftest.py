"""The web page against the real local platform: mnist/infer deployed, a model published, the app on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer import manifest
from deployer.web import create_app
from deployer.web.serving import BackgroundServer
from mlcore.storage import Storage, StorageConfig
from mlcore.train import publish_model

ROOT = Path(__file__).resolve().parents[3]
BUCKET = "web-tests"


@pytest.fixture(scope="module")
def web_storage(platform) -> Storage:
    storage = Storage(StorageConfig.from_env({**platform.storage_env, "S3_BUCKET": BUCKET}))
    storage.ensure_bucket()
    return storage


@pytest.fixture(scope="module")
def deployed_infer(platform, web_storage, lenet5_augmented):
    """The page is for drawn and uploaded digits, so it gets a model trained as `deployer model train` does."""
    state, metrics = lenet5_augmented
    version = publish_model(web_storage, state, metrics)
    env = {**platform.storage_env, "S3_BUCKET": BUCKET}
    manifest.deploy(platform.client, ROOT / "manifests" / "infer.yaml", env=env)
    try:
        yield version
    finally:
        manifest.undeploy(platform.client, ROOT / "manifests" / "infer.yaml", env=env)


@pytest.fixture(scope="module")
def web_server(platform, web_storage, deployed_infer):
    """The app on a real HTTP server on 127.0.0.1; the action fetches uploads back from it."""
    app = create_app(platform.client, web_storage, max_upload_bytes=200_000)
    with BackgroundServer(app) as server:
        yield server
