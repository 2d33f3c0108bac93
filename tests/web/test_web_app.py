"""The web app's JSON endpoints over real HTTP, invoking mnist/infer on the real local platform."""

from __future__ import annotations

import base64
import io
import socket

import numpy as np
import pytest
import requests
from PIL import Image

from deployer.client import OpenWhiskClient
from deployer.web import create_app
from deployer.web.server import BackgroundServer
from mlcore.mnist import load_mnist


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits(mnist_root):
    images, labels = load_mnist(train=False, root=mnist_root)
    return images[:10].numpy(), labels[:10].tolist()


def canvas_like(digit: np.ndarray) -> Image.Image:
    """Black strokes on a white 280x280 canvas, as the page's drawing pad sends them."""
    big = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
    return big.convert("RGB")


def test_page_has_the_pad_and_the_upload_form(web_server):
    page = requests.get(web_server.url + "/", timeout=10)
    assert page.status_code == 200
    assert '<canvas id="pad"' in page.text and 'name="image"' in page.text and "mnist/infer" in page.text
    assert requests.get(web_server.url + "/static/app.js", timeout=10).status_code == 200


def test_json_data_url_is_classified_and_hosted(web_server, web_storage, deployed_infer, digits):
    # Prepare
    images, labels = digits
    data = encode(canvas_like(images[0]))
    body = {"image": "data:image/png;base64," + base64.b64encode(data).decode()}
    # Execute
    answer = requests.post(web_server.url + "/api/predict", json=body, timeout=120)
    # Assert: the digit, 10 probabilities, the model, and the very bytes hosted at the URL the action used
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["digit"] == labels[0] and len(result["probabilities"]) == 10
    assert result["model"] == deployed_infer
    assert result["image_url"].startswith(web_server.url + "/images/")
    hosted = requests.get(result["image_url"], timeout=10)
    assert hosted.content == data and hosted.headers["Content-Type"] == "image/png"


def test_multipart_jpeg_upload(web_server, digits):
    images, labels = digits
    right = 0
    for img, label in zip(images[1:6], labels[1:6]):
        files = {"image": ("digit.jpg", encode(canvas_like(img), "JPEG", quality=90), "image/jpeg")}
        answer = requests.post(web_server.url + "/api/predict", files=files, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["image_url"].endswith(".jpg")
        right += answer.json()["digit"] == label
    assert right >= 4


def test_non_image_upload_is_refused_before_storing(web_server, web_storage):
    before = set(web_storage.list_keys("web/uploads/"))
    files = {"image": ("notes.txt", b"not a picture at all", "image/png")}
    answer = requests.post(web_server.url + "/api/predict", files=files, timeout=30)
    assert answer.status_code == 400
    assert "not an image in a supported format" in answer.json()["error"]
    assert set(web_storage.list_keys("web/uploads/")) == before


@pytest.mark.parametrize("kwargs, status, message", [
    ({"json": {}}, 400, "send a multipart field `image`"),
    ({"json": {"image": "@@@"}}, 400, "not valid base64"),
    ({"files": {"other": ("a.png", b"x")}}, 400, "multipart field `image`"),
    ({"files": {"image": ("a.png", b"")}}, 400, "empty"),
    ({"files": {"image": ("big.png", b"\x89PNG" + b"\0" * 250_000)}}, 400, "larger than the limit of 200000 bytes"),
    ({"files": {"image": ("big.png", b"\x89PNG" + b"\0" * 600_000)}}, 413, "larger than the limit of 200000 bytes"),
    ({"files": {"image": ("a.tif", encode(Image.new("L", (8, 8)), "TIFF"))}}, 400, "PNG, JPEG"),
    ({"files": {"image": ("huge.png", encode(Image.new("1", (3000, 3000))))}}, 400, "more than the limit of 4194304"),
])
def test_bad_uploads(web_server, kwargs, status, message):
    answer = requests.post(web_server.url + "/api/predict", timeout=30, **kwargs)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_action_error_is_shown_as_422(web_server):
    blank = encode(Image.new("L", (100, 100), 255))
    answer = requests.post(web_server.url + "/api/predict", files={"image": ("blank.png", blank)}, timeout=120)
    assert answer.status_code == 422
    assert "no digit found" in answer.json()["error"]


def test_images_route_serves_only_stored_uploads(web_server):
    assert requests.get(web_server.url + "/images/..%2Fsecret", timeout=10).status_code == 404
    assert requests.get(web_server.url + "/images/" + "0" * 32 + ".png", timeout=10).status_code == 404


def test_unreachable_platform_is_a_502(web_storage, digits):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenWhiskClient(f"http://127.0.0.1:{port}", "user:key", timeout_s=5)
    with BackgroundServer(create_app(client, web_storage)) as server:
        answer = requests.post(server.url + "/api/predict",
                               files={"image": ("d.png", encode(canvas_like(digits[0][0])))}, timeout=30)
    client.close()
    assert answer.status_code == 502
    assert "cannot reach the OpenWhisk API" in answer.json()["error"]
