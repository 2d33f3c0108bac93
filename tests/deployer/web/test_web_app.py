"""The web app's JSON endpoints over real HTTP, invoking mnist/infer on the real local platform."""

from __future__ import annotations

import base64
import io
import socket

import numpy as np
import pytest
import requests
from PIL import Image

from deployer.web import Uploads, create_app
from deployer.web.serving import BackgroundServer
from mlcore.mnist import load_mnist
from mlcore.openwhisk import OpenWhiskClient


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
    assert "at most 195 KB)" in page.text and "bytes" not in page.text
    assert requests.get(web_server.url + "/static/app.js", timeout=10).status_code == 200


def test_json_data_url_is_classified_and_hosted(web_server, web_storage, deployed_infer, digits):
    # Prepare
    images, labels = digits
    data = encode(canvas_like(images[0]))
    body = {"image": "data:image/png;base64," + base64.b64encode(data).decode(), "keep": True}
    # Execute
    answer = requests.post(web_server.url + "/api/predict", json=body, timeout=120)
    # Assert: the digit, 10 probabilities, the model, and the very bytes hosted at the URL the action used
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["digit"] == labels[0] and len(result["probabilities"]) == 10
    assert result["model"] == deployed_infer
    assert result["image_url"].startswith(web_server.url + "/images/") and result["kept"] is True
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


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"json": {}}, 400, "send a multipart field `image`"),
        ({"json": {"image": "@@@"}}, 400, "not valid base64"),
        ({"files": {"other": ("a.png", b"x")}}, 400, "multipart field `image`"),
        ({"files": {"image": ("a.png", b"")}}, 400, "empty"),
        ({"files": {"image": ("big.png", b"\x89PNG" + b"\0" * 250_000)}}, 400, "larger than the limit of 195 KB;"),
        ({"files": {"image": ("big.png", b"\x89PNG" + b"\0" * 600_000)}}, 413, "larger than the limit of 195 KB;"),
        ({"files": {"image": ("a.tif", encode(Image.new("L", (8, 8)), "TIFF"))}}, 400, "PNG, JPEG"),
        (
            {"files": {"image": ("huge.png", encode(Image.new("1", (3000, 3000))))}},
            400,
            "more than the limit of 4194304",
        ),
    ],
)
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


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_platform_is_a_502(web_storage, digits):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenWhiskClient(f"http://127.0.0.1:{port}", "user:key", timeout_s=5)
    with BackgroundServer(create_app(client, web_storage)) as server:
        answer = requests.post(
            server.url + "/api/predict", files={"image": ("d.png", encode(canvas_like(digits[0][0])))}, timeout=30
        )
    client.close()
    assert answer.status_code == 502
    assert "cannot reach the OpenWhisk API" in answer.json()["error"]


def png_upload(digit: np.ndarray) -> dict:
    return {"image": ("d.png", encode(canvas_like(digit)))}


def test_the_action_fetches_from_the_bound_address_never_from_the_host_header(web_server, digits):
    # a client names the page by another of its names in Host: the action still fetches from the bound address
    headers = {"Host": f"localhost:{web_server.port}"}
    answer = requests.post(
        web_server.url + "/api/predict", files=png_upload(digits[0][0]), headers=headers, timeout=120
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["image_url"].startswith(web_server.url + "/images/")


def test_public_url_is_the_address_handed_to_the_action(platform, web_storage, deployed_infer, digits):
    app = create_app(platform.client, web_storage, public_url="http://localhost:1")
    with BackgroundServer(app) as server:
        answer = requests.post(server.url + "/api/predict", files=png_upload(digits[0][0]), timeout=120)
    assert answer.json()["image_url"].startswith("http://localhost:1/images/")
    assert answer.status_code == 422 and "cannot connect to localhost:1" in answer.json()["error"]


@pytest.mark.parametrize(
    "origin, status", [("http://evil.test", 403), ("null", 403), ("http://127.0.0.1:1", 403), ("SELF", 200)]
)
def test_posts_from_another_origin_are_refused(web_server, web_storage, digits, origin, status):
    before = set(web_storage.list_keys("web/uploads/"))
    headers = {"Origin": web_server.url if origin == "SELF" else origin}
    answer = requests.post(
        web_server.url + "/api/predict", files=png_upload(digits[0][0]), headers=headers, timeout=120
    )
    assert answer.status_code == status, answer.text
    if status == 403:
        assert "accepts posts only from itself" in answer.json()["error"]
        assert set(web_storage.list_keys("web/uploads/")) == before


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/"),
        ("GET", "/api/health"),
        ("POST", "/api/predict"),
        ("GET", "/images/" + "0" * 32 + ".png"),
        ("GET", "/static/app.js"),
    ],
)
def test_every_response_carries_the_security_headers(web_server, method, path):
    answer = requests.request(method, web_server.url + path, json={}, timeout=30)
    csp = answer.headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert answer.headers.get("X-Content-Type-Options") == "nosniff"
    assert answer.headers.get("X-Frame-Options") == "DENY"


def test_uploads_are_deleted_after_classification_even_failed_ones(web_server, web_storage, digits):
    before = set(web_storage.list_keys("web/uploads/"))
    blank = {"image": ("blank.png", encode(Image.new("L", (100, 100), 255)))}
    answers = [
        requests.post(web_server.url + "/api/predict", files=files, timeout=120)
        for files in (png_upload(digits[0][0]), blank)
    ]
    assert [a.status_code for a in answers] == [200, 422]
    assert set(web_storage.list_keys("web/uploads/")) == before
    assert requests.get(answers[0].json()["image_url"], timeout=10).status_code == 404


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_kept_uploads_expire_by_age_and_count(platform, storage, deployed_infer, digits):
    # Prepare: a page whose uploads live 60 s, at most 2 of them, on a clock the test moves
    clock = Clock()
    uploads = Uploads(storage, max_age_s=60, max_count=2, clock=clock)
    with BackgroundServer(create_app(platform.client, storage, uploads=uploads)) as server:
        # Execute: three kept uploads
        urls = []
        for img in digits[0][:3]:
            answer = requests.post(server.url + "/api/predict", files=png_upload(img), data={"keep": "1"}, timeout=120)
            assert answer.status_code == 200 and answer.json()["kept"] is True
            urls.append(answer.json()["image_url"])
            clock.now += 10
        # Assert: the oldest was pushed out by the count cap; the others go once older than 60 s
        assert [requests.get(u, timeout=10).status_code for u in urls] == [404, 200, 200]
        assert len(list(storage.list_keys("web/uploads/"))) == 2
        clock.now += 45
        assert [requests.get(u, timeout=10).status_code for u in urls] == [404, 404, 200]
        clock.now += 10
        assert requests.get(urls[2], timeout=10).status_code == 404
    assert list(storage.list_keys("web/uploads/")) == []


def test_kept_uploads_are_capped_in_bytes_and_leftovers_of_a_previous_run_expire(storage):
    clock = Clock()
    uploads = Uploads(storage, max_age_s=60, max_bytes=1_000_000, clock=clock)
    names = []
    for _ in range(3):
        names.append(uploads.put(b"\x89PNG" + b"\0" * 400_000, "png", "image/png"))
        uploads.release(names[-1], keep=True)
        clock.now += 1
    assert uploads.names() == names[1:]
    # a new server process finds them in storage and lets them expire like its own
    later = Uploads(storage, max_age_s=60, clock=clock)
    assert len(later.get(names[2])) == 400_004
    clock.now += 61
    later.sweep()
    assert list(storage.list_keys("web/uploads/")) == []


def test_with_the_platform_down_the_endpoints_answer_json_in_words(digits, closed_port):
    from mlcore.storage import Storage, StorageConfig

    down = f"http://127.0.0.1:{closed_port}"
    client = OpenWhiskClient(down, "user:key", timeout_s=5)
    storage = Storage(StorageConfig(endpoint_url=down, bucket="gone", access_key="a", secret_key="s"))
    with BackgroundServer(create_app(client, storage)) as server:
        posted = requests.post(server.url + "/api/predict", files=png_upload(digits[0][0]), timeout=60)
        fetched = requests.get(server.url + "/images/" + "0" * 32 + ".png", timeout=60)
    client.close()
    for answer in (posted, fetched):
        assert answer.status_code == 503 and answer.headers["Content-Type"] == "application/json"
        assert "storage cannot be reached" in answer.json()["error"] and "deployer status" in answer.json()["error"]
