"""The page in docker mode: mnist/infer, in its container, fetches each picture from the page by URL.

The page listens on the host's 127.0.0.1 only; the platform's containers reach it through the relay
`publish_to_actions` sets up, at the same URL unless a container's own server holds the port.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from deployer import manifest
from deployer.errors import ActivationFailedError
from deployer.web import create_app
from deployer.web.serving import BackgroundServer, publish_to_actions
from localwhisk.invoker import docker_container as dc
from localwhisk.invoker import factory
from localwhisk.supervisor import LocalPlatform
from mlcore.mnist import load_mnist
from mlcore.storage import Storage, StorageConfig
from mlcore.train import publish_model

from .test_browser import CHROMIUM, open_page, shown_digit, stroke
from .test_web_app import png_upload

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[3]
INFER = ROOT / "manifests" / "infer.yaml"


@pytest.fixture(scope="module")
def docker_web(runtime_image, tmp_path_factory, running_platform, lenet5_augmented):
    """A docker-mode platform with mnist/infer deployed and a model published; (handle, storage)."""
    state = tmp_path_factory.mktemp("docker-web")
    with running_platform(LocalPlatform(state, containers="docker", max_containers=4, prewarm="none")) as handle:
        env = {**handle.storage_env, "S3_BUCKET": "web-docker"}
        storage = Storage(StorageConfig.from_env(env))
        storage.ensure_bucket()
        publish_model(storage, *lenet5_augmented)
        manifest.deploy(handle.client, INFER, env=env)
        yield handle, storage
    assert dc.leftovers(factory.platform_id(state)) == {"containers": [], "networks": []}


@pytest.fixture(scope="module")
def digits(mnist_root):
    images, labels = load_mnist(train=False, root=mnist_root)
    return images[:5].numpy(), labels[:5].tolist()


def _page(handle, storage, publish: bool = True):
    """A started page server and what it published (None where it published nothing)."""
    app = create_app(handle.client, storage, max_upload_bytes=200_000)
    server = BackgroundServer(app).start()
    return server, publish_to_actions(app, handle.owner.state_dir) if publish else None


def _classify(server, digit) -> requests.Response:
    return requests.post(server.url + "/api/predict", files=png_upload(digit), timeout=300)


def test_a_picture_posted_to_the_page_is_classified_by_the_action_fetching_it_by_url(docker_web, digits):
    handle, storage = docker_web
    server, published = _page(handle, storage)
    try:
        assert published is not None and published.inside_port == server.port
        for digit, label in zip(*digits, strict=True):
            answer = _classify(server, digit)
            assert answer.status_code == 200, answer.text
            assert answer.json()["digit"] == label
            assert answer.json()["image_url"].startswith(f"http://127.0.0.1:{server.port}/images/")
    finally:
        published.close()
        server.stop()
    assert not (handle.owner.state_dir / "sockets" / f"{server.port}.sock").exists()


def test_without_publishing_the_container_cannot_reach_the_page(docker_web, digits):
    handle, storage = docker_web
    server, _ = _page(handle, storage, publish=False)
    try:
        answer = _classify(server, digits[0][0])
    finally:
        server.stop()
    assert answer.status_code == 422 and f"cannot connect to 127.0.0.1:{server.port}" in answer.json()["error"]


def test_a_page_whose_port_a_container_holds_is_reached_at_another_port(docker_web, digits, monkeypatch):
    handle, storage = docker_web
    app = create_app(handle.client, storage, max_upload_bytes=200_000)
    with BackgroundServer(app) as server:
        monkeypatch.setattr(factory, "RESERVED_IN_CONTAINER", frozenset({server.port}))
        with publish_to_actions(app, handle.owner.state_dir) as published:
            assert published.inside_port != server.port
            answer = _classify(server, digits[0][0])
    assert answer.status_code == 200, answer.text
    assert answer.json()["image_url"].startswith(f"http://127.0.0.1:{published.inside_port}/images/")
    assert answer.json()["digit"] == digits[1][0]


def test_the_action_still_refuses_internal_addresses_the_page_did_not_allow(docker_web):
    handle, _ = docker_web
    # the API is relayed into every container at the same loopback address: reachable, and still refused
    with pytest.raises(ActivationFailedError) as info:
        handle.client.invoke("mnist/infer", {"url": handle.apihost + "/api/v1"}, blocking=True, result=True)
    assert "leads to an internal address" in info.value.result["error"]


def test_drawing_a_digit_in_chromium_in_docker_mode(docker_web):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from .test_browser import ARGS

    handle, storage = docker_web
    server, published = _page(handle, storage)
    try:
        with sync_api.sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = open_page(chromium, server.url + "/")
                stroke(page, [(140, 40), (140, 240)])
                page.click("#classify")
                assert shown_digit(page) == "1"
            finally:
                chromium.close()
    finally:
        published.close()
        server.stop()
