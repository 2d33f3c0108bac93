"""The `mnist/infer` action's main, called directly: real S3 on loopback, real HTTP servers, real MNIST."""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcore.inference import load_model, predict
from mlcore.mnist import load_mnist
from mlcore.preprocess import preprocess_bytes
from mlcore.train import publish_model

ACTION = Path(__file__).resolve().parents[2] / "actions" / "mnist" / "infer" / "__main__.py"


@pytest.fixture(scope="module")
def action():
    spec = importlib.util.spec_from_file_location("mnist_infer_action", ACTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits(mnist_root):
    """The first 64 real test digits as PNG bytes, with their labels."""
    images, labels = load_mnist(train=False, root=mnist_root)
    return [png(img) for img in images[:64].numpy()], labels[:64].tolist()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def published(storage, lenet5_augmented):
    state, metrics = lenet5_augmented
    return publish_model(storage, state, metrics)


def params(storage, **extra) -> dict:
    return {**storage.config.as_params(), **extra}


def test_url_input_classifies_real_digits(action, storage, published, digits, image_server):
    # Prepare
    pngs, labels = digits
    urls = [image_server.route(f"/digit-{i}.png", data) for i, data in enumerate(pngs[:20])]
    # Execute
    answers = [action.main(params(storage, url=url, allow_hosts=image_server.allow)) for url in urls]
    # Assert: valid answers, mostly right, and the same numbers as the model called in-process
    model = load_model(storage, published).model
    expected = predict(model, np.stack([preprocess_bytes(p) for p in pngs[:20]]))
    for answer, want in zip(answers, expected):
        assert set(answer) == {"digit", "probabilities", "model"}
        assert answer["model"] == published
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-4
        assert answer["digit"] == want["digit"] == int(np.argmax(answer["probabilities"]))
        assert answer["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert sum(a["digit"] == y for a, y in zip(answers, labels)) >= 17


def test_base64_image_matches_url_answer(action, storage, published, digits, image_server):
    pngs, _ = digits
    by_url = action.main(params(storage, url=image_server.route("/same.png", pngs[0]), allow_hosts=image_server.allow))
    assert action.main(params(storage, image=b64(pngs[0]))) == by_url
    assert action.main(params(storage, image="data:image/png;base64," + b64(pngs[0]))) == by_url


def test_batch_answers_one_prediction_per_image(action, storage, published, digits):
    pngs, labels = digits
    answer = action.main(params(storage, images=[b64(p) for p in pngs]))
    assert answer["model"] == published
    assert len(answer["predictions"]) == len(pngs)
    singles = [action.main(params(storage, image=b64(p))) for p in pngs[:5]]
    for in_batch, single in zip(answer["predictions"], singles):
        assert in_batch["digit"] == single["digit"]
        assert in_batch["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    accuracy = np.mean([p["digit"] == y for p, y in zip(answer["predictions"], labels)])
    assert accuracy >= 0.85


def test_model_is_loaded_once_per_warm_container(action, storage, published, digits):
    before = action.MODELS.loads
    for p in digits[0][:3]:
        assert "digit" in action.main(params(storage, image=b64(p)))
    assert action.MODELS.loads == before + 1


def test_explicit_version_and_unknown_version(action, storage, published, digits):
    assert action.main(params(storage, image=b64(digits[0][0]), model=published))["model"] == published
    answer = action.main(params(storage, image=b64(digits[0][0]), model="no-such-version"))
    assert "no-such-version" in answer["error"] and "not published" in answer["error"]


def test_missing_model_names_the_command(action, storage, digits):
    answer = action.main(params(storage, image=b64(digits[0][0])))
    assert set(answer) == {"error"}
    assert "no model is published" in answer["error"] and "deployer model train" in answer["error"]


def test_unreachable_storage(action, storage, digits, closed_port):
    answer = action.main({**params(storage, image=b64(digits[0][0])), "s3_endpoint": f"http://127.0.0.1:{closed_port}"})
    assert f"127.0.0.1:{closed_port}" in answer["error"]


@pytest.mark.parametrize(
    "args, expected",
    [
        ({}, "give exactly one of url, image (base64) or images (list of base64); got none"),
        ({"url": "http://x/a.png", "image": "aGk="}, "got url and image"),
        ({"url": 42}, "url must be a string"),
        ({"url": "ftp://127.0.0.1/digit.png"}, "url must be an http:// or https:// address"),
        ({"url": "file:///etc/passwd"}, "url must be an http:// or https:// address"),
        ({"url": "http://"}, "url must be an http:// or https:// address"),
        ({"image": "not base64!"}, "image is not valid base64"),
        ({"image": 7}, "image must be a non-empty base64 string"),
        ({"image": b64(b"just some text")}, "not an image in a supported format"),
        ({"images": "aGk="}, "images must be a non-empty list"),
        ({"images": []}, "images must be a non-empty list"),
        ({"images": ["aGk="] * 65}, "65 items, more than the limit of 64"),
        ({"image": "aGk=", "fetch_timeout_s": 1}, "not an image"),
        ({"url": "http://127.0.0.1:1/x.png", "fetch_timeout_s": "soon"}, "fetch_timeout_s must be a number"),
        ({"url": "http://127.0.0.1:1/x.png", "fetch_timeout_s": 600}, "fetch_timeout_s must be in (0, 30]"),
        ({"image": "aGk=", "model": ["v1"]}, "model must be a version name"),
    ],
)
def test_bad_input_answers_an_error(action, storage, published, args, expected):
    answer = action.main(params(storage, **args))
    assert set(answer) == {"error"}
    assert expected in answer["error"]


def test_bad_item_in_a_batch_is_named(action, storage, published, digits):
    answer = action.main(params(storage, images=[b64(digits[0][0]), b64(b"GIF89a nonsense")]))
    assert answer["error"].startswith("images[1]: ")


def test_empty_and_bomb_images(action, storage, published):
    assert "got none" in action.main(params(storage, image=""))["error"]
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, "PNG")
    answer = action.main(params(storage, image=b64(bomb.getvalue())))
    assert "5000x5000 = 25000000 pixels, more than the limit" in answer["error"]


def test_unreachable_host(action, storage, published, closed_port):
    answer = action.main(
        params(storage, url=f"http://127.0.0.1:{closed_port}/digit.png", allow_hosts=f"127.0.0.1:{closed_port}")
    )
    assert f"cannot connect to 127.0.0.1:{closed_port}" in answer["error"]


def test_server_that_never_answers_hits_the_timeout(action, storage, published, image_server):
    # the server holds the request until the module ends: only the action's own timeout can answer
    answer = action.main(
        params(storage, url=image_server.base_url + "/stall", fetch_timeout_s=1, allow_hosts=image_server.allow)
    )
    assert "did not answer within 1 s" in answer["error"]


def test_server_that_trickles_hits_the_deadline(action, storage, published, image_server):
    # a byte every 50 ms for minutes: only the action's own deadline ends the read
    answer = action.main(
        params(storage, url=image_server.base_url + "/trickle", fetch_timeout_s=1, allow_hosts=image_server.allow)
    )
    assert "did not finish sending within 1 s" in answer["error"]


def test_a_server_that_trickles_its_headers_hits_the_same_deadline(action, storage, image_server):
    # every byte of the status line and headers comes within the socket timeout, so only a total deadline ends it
    answer = action.main(
        params(
            storage, url=image_server.base_url + "/trickle-headers", fetch_timeout_s=1, allow_hosts=image_server.allow
        )
    )
    assert "did not answer within 1 s" in answer["error"]
    assert image_server.httpd.headers_trickled == []  # it was cut off, not waited out


def test_a_lookup_that_never_answers_hits_the_deadline(action, storage, monkeypatch):
    import socket
    import threading

    released = threading.Event()

    def never_answers(*args, **kwargs):
        released.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", never_answers)
    try:
        answer = action.main(
            params(storage, url="http://images.test/digit.png", fetch_timeout_s=1, allow_hosts="images.test")
        )
    finally:
        released.set()
    assert "did not answer within 1 s" in answer["error"]


def test_http_error_status(action, storage, published, image_server):
    answer = action.main(params(storage, url=image_server.base_url + "/missing.png", allow_hosts=image_server.allow))
    assert answer["error"].startswith(f"could not fetch {image_server.base_url}/missing.png (HTTP 404)")


def test_non_image_url(action, storage, published, image_server):
    url = image_server.route("/page.html", b"<html>hello</html>", headers={"Content-Type": "text/html"})
    answer = action.main(params(storage, url=url, allow_hosts=image_server.allow))
    assert "not an image in a supported format" in answer["error"]


def test_declared_size_over_the_cap(action, storage, published, image_server):
    url = image_server.route(
        "/huge.png", b"\x89PNG", headers={"Content-Type": "image/png", "Content-Length": str(10**9)}
    )
    answer = action.main(params(storage, url=url, allow_hosts=image_server.allow))
    assert "is 954 MB, more than the limit of 8 MB;" in answer["error"]


def test_streamed_size_over_the_cap(action, storage, published, image_server):
    answer = action.main(params(storage, url=image_server.base_url + "/endless", allow_hosts=image_server.allow))
    assert "sent more than the limit of 8 MB;" in answer["error"]


def test_redirect_to_another_scheme(action, storage, published, image_server):
    url = image_server.route("/moved", b"", status=302, headers={"Location": "ftp://127.0.0.1/digit.png"})
    assert "only http and https" in action.main(params(storage, url=url, allow_hosts=image_server.allow))["error"]


def test_container_keeps_serving_after_bad_inputs(action, storage, published, digits, image_server, closed_port):
    bad = [{"url": f"http://127.0.0.1:{closed_port}/"}, {"image": "%%%"}, {"images": [1, 2]}, {}]
    assert all("error" in action.main(params(storage, **b)) for b in bad)
    assert action.main(params(storage, image=b64(digits[0][0])))["model"] == published


INTERNAL = [
    "http://127.0.0.1:{port}/digit.png",
    "http://localhost:{port}/digit.png",
    "http://[::1]:{port}/digit.png",
    "http://[::ffff:127.0.0.1]:{port}/digit.png",
    "http://0.0.0.0:{port}/digit.png",
    "http://[::]:{port}/",
    "http://10.0.0.1/digit.png",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
]


@pytest.mark.parametrize("template", INTERNAL)
def test_internal_addresses_are_refused_before_connecting(action, storage, image_server, connects, template):
    # Prepare: the image server listens on the loopback port the URLs name
    url = template.format(port=image_server.httpd.server_address[1])
    seen = len(image_server.httpd.seen)
    # Execute
    answer = action.main(params(storage, url=url))
    # Assert: refused by address, and no connection was even attempted
    assert "internal address" in answer["error"] and "allow_hosts" in answer["error"]
    assert connects == [] and len(image_server.httpd.seen) == seen


def test_a_name_that_resolves_inside_is_refused_and_the_checked_address_is_the_one_dialled(
    action, storage, connects, fake_dns
):
    lookups = fake_dns({"intranet.test": ["10.1.2.3"], "rebind.test": ["93.184.216.34", "127.0.0.1"]})
    assert "internal address" in action.main(params(storage, url="http://intranet.test/d.png"))["error"]
    assert connects == []
    # a rebinding DNS answers a public address to the check and loopback afterwards: only the checked one is dialled
    answer = action.main(params(storage, url="http://rebind.test/d.png"))
    assert "cannot connect to rebind.test:80" in answer["error"]
    assert connects == [("93.184.216.34", 80)] and lookups.count("rebind.test") == 1


def test_allow_hosts_names_the_host_the_deployment_trusts(action, storage, published, digits, image_server, fake_dns):
    port = image_server.httpd.server_address[1]
    fake_dns({"page.test": ["127.0.0.1"]})
    url = image_server.route("/trusted.png", digits[0][0]).replace("127.0.0.1", "page.test")
    assert "internal address" in action.main(params(storage, url=url, allow_hosts="127.0.0.1"))["error"]
    answer = action.main(params(storage, url=url, allow_hosts=f" other.test:1, page.test:{port} "))
    assert answer["model"] == published
    assert image_server.httpd.seen[-1] == ("/trusted.png", f"page.test:{port}")
    assert "is not host[:port]" in action.main(params(storage, url=url, allow_hosts="http://page.test/"))["error"]


def test_redirects_are_checked_on_every_hop(action, storage, published, digits, image_server):
    # Prepare: an allow-listed server that redirects once within itself and once to loopback by another name
    port = image_server.httpd.server_address[1]
    image_server.route("/secret.png", digits[0][0])
    inside = image_server.route("/hop", b"", status=302, headers={"Location": "/secret.png"})
    outside = image_server.route(
        "/bounce", b"", status=302, headers={"Location": f"http://localhost:{port}/secret.png"}
    )
    # Execute
    followed = action.main(params(storage, url=inside, allow_hosts=image_server.allow))
    seen = len(image_server.httpd.seen)
    refused = action.main(params(storage, url=outside, allow_hosts=image_server.allow))
    # Assert: the second hop to a host not allowed is refused before it is requested
    assert followed["model"] == published
    assert "internal address" in refused["error"]
    assert [path for path, _ in image_server.httpd.seen[seen:]] == ["/bounce"]


def test_errors_do_not_echo_fetched_bytes_or_tell_open_ports_from_closed(
    action, storage, published, image_server, closed_port
):
    banner = image_server.route(
        "/banner", b"SSH-2.0-OpenSSH_9.6 internal-build", headers={"Content-Type": "text/plain"}
    )
    answer = action.main(params(storage, url=banner, allow_hosts=image_server.allow))
    assert "not an image in a supported format" in answer["error"]
    assert "SSH" not in answer["error"] and "internal-build" not in answer["error"]
    port = image_server.httpd.server_address[1]
    open_port = action.main(params(storage, url=f"http://127.0.0.1:{port}/missing.png"))["error"]
    closed = action.main(params(storage, url=f"http://127.0.0.1:{closed_port}/missing.png"))["error"]
    assert open_port.replace(str(port), "PORT") == closed.replace(str(closed_port), "PORT")


def test_https_is_verified_against_the_urls_name_while_dialling_the_checked_address(
    action, storage, published, digits, tls_image_server, fake_dns, monkeypatch
):
    # Prepare: both names resolve to the server, whose certificate (trusted here) names only img.test
    server, cert = tls_image_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    fake_dns({"img.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    port = server.httpd.server_address[1]
    server.route("/d.png", digits[0][0])
    # Execute
    right = action.main(params(storage, url=f"https://img.test:{port}/d.png", allow_hosts=f"img.test:{port}"))
    wrong = action.main(params(storage, url=f"https://other.test:{port}/d.png", allow_hosts=f"other.test:{port}"))
    # Assert
    assert right["model"] == published and server.httpd.seen[-1] == ("/d.png", f"img.test:{port}")
    assert "TLS certificate was not accepted" in wrong["error"]
