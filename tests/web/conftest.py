"""The web page against the real local platform: mnist/infer deployed, a model published, the app on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deployer import manifest
from deployer.web import create_app
from deployer.web.server import BackgroundServer
from mlcore.model import state_from_bytes, state_to_bytes
from mlcore.storage import Storage, StorageConfig
from mlcore.train import publish_model, train_lenet5

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "web-tests"
# The same configuration (and so the same cache entry) as tests/actions' lenet5_full.
FULL = {"epochs": 2, "batch_size": 128, "lr": 0.1, "seed": 0}


@pytest.fixture(scope="session")
def lenet5_full_web(request, mnist_root):
    folder = request.config.cache.mkdir("lenet5")
    name = "-".join(f"{k}{v}" for k, v in sorted(FULL.items()))
    blob_path, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    if blob_path.is_file() and meta_path.is_file():
        return state_from_bytes(blob_path.read_bytes()), json.loads(meta_path.read_text())
    threads = torch.get_num_threads()
    try:
        result = train_lenet5(**FULL, threads=2, root=mnist_root)
    finally:
        torch.set_num_threads(threads)
    blob_path.write_bytes(state_to_bytes(result.state))
    meta_path.write_text(json.dumps(result.metrics()))
    return result.state, result.metrics()


@pytest.fixture(scope="module")
def web_storage(platform) -> Storage:
    storage = Storage(StorageConfig.from_env({**platform.storage_env, "S3_BUCKET": BUCKET}))
    storage.ensure_bucket()
    return storage


@pytest.fixture(scope="module")
def deployed_infer(platform, web_storage, lenet5_full_web):
    state, metrics = lenet5_full_web
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
