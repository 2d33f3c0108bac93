"""`mnist/infer` deployed from manifests/infer.yaml on the real local platform, classifying real test digits."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deployer import manifest
from deployer.errors import ActivationFailedError
from mlcore.mnist import load_mnist
from mlcore.storage import Storage, StorageConfig
from mlcore.train import publish_model

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "infer-platform-tests"
N_IMAGES = 320


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def deployed(platform, lenet5_augmented):
    """The manifest deployed with the platform's S3 settings and the shared trained model published."""
    env = {**platform.storage_env, "S3_BUCKET": BUCKET}
    storage = Storage(StorageConfig.from_env(env))
    storage.ensure_bucket()
    state, metrics = lenet5_augmented
    version = publish_model(storage, state, metrics)
    names = manifest.deploy(platform.client, ROOT / "manifests" / "infer.yaml", env=env)
    try:
        yield version, names
    finally:
        manifest.undeploy(platform.client, ROOT / "manifests" / "infer.yaml", env=env)


@pytest.fixture(scope="module")
def test_digits(mnist_root):
    images, labels = load_mnist(train=False, root=mnist_root)
    return images[:N_IMAGES].numpy(), labels[:N_IMAGES].tolist()


def test_manifest_deploys_the_action_with_its_limits(platform, deployed):
    _, names = deployed
    assert names == ["mnist", "mnist/infer"]
    action = platform.client.get_action("mnist/infer")
    assert action["limits"]["timeout"] == 60000 and action["limits"]["memory"] == 1024
    bound = {p["key"]: p["value"] for p in action["parameters"]}
    assert bound["s3_bucket"] == BUCKET and bound["s3_endpoint"] == platform.storage_env["S3_ENDPOINT_URL"]


def test_accuracy_over_real_test_images_through_the_platform(platform, deployed, test_digits):
    # Prepare
    version, _ = deployed
    images, labels = test_digits
    encoded = [base64.b64encode(png(img)).decode() for img in images]
    # Execute: batches of 64, as a client would send them
    predictions = []
    for start in range(0, len(encoded), 64):
        answer = platform.client.invoke("mnist/infer", {"images": encoded[start : start + 64]}, result=True)
        assert answer["model"] == version
        predictions.extend(p["digit"] for p in answer["predictions"])
    # Assert
    accuracy = float(np.mean([p == y for p, y in zip(predictions, labels)]))
    assert len(predictions) == N_IMAGES
    assert accuracy >= 0.98, f"accuracy {accuracy:.4f} over {N_IMAGES} real test images"


def test_url_input_through_the_platform(platform, deployed, test_digits, image_server):
    version, _ = deployed
    images, labels = test_digits
    answers = [
        platform.client.invoke(
            "mnist/infer",
            {"url": image_server.route(f"/p{i}.png", png(images[i])), "allow_hosts": image_server.allow},
            result=True,
        )
        for i in range(10)
    ]
    assert all(a["model"] == version for a in answers)
    assert sum(a["digit"] == y for a, y in zip(answers, labels)) >= 9


def test_web_action_classifies_an_image_url_without_the_api_key(platform, deployed, test_digits, image_server):
    import requests

    version, _ = deployed
    images, labels = test_digits
    url = image_server.route("/web0.png", png(images[0]))
    web = f"{platform.apihost}/api/v1/web/guest/mnist/infer.json"
    # anonymous callers can neither widen the fetch allow-list nor point the action at another bucket
    for extra in ({"allow_hosts": image_server.allow}, {"s3_bucket": "elsewhere"}):
        refused = requests.get(web, params={"url": url, **extra}, timeout=60)
        assert refused.status_code == 400, refused.text
    # an application error's `error` field is what a web action answers (as text with .text)
    assert "internal address" in requests.get(web.replace(".json", ".text"), params={"url": url}, timeout=60).text
    # the deployment allow-lists the image host, as a site would its own image server
    platform.client._request(
        "PUT",
        platform.client._url("actions", "mnist/infer"),
        params={"overwrite": "true"},
        json_body={"parameters": _bound_with(platform, allow_hosts=image_server.allow)},
    )
    answer = requests.get(web, params={"url": url}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["digit"] == labels[0] and answer.json()["model"] == version


def _bound_with(platform, **extra) -> list[dict]:
    bound = {p["key"]: p["value"] for p in platform.client.get_action("mnist/infer")["parameters"]}
    return [{"key": k, "value": v} for k, v in {**bound, **extra}.items()]


def test_bad_input_is_an_application_error_and_the_container_keeps_serving(platform, deployed, test_digits):
    with pytest.raises(ActivationFailedError) as caught:
        platform.client.invoke("mnist/infer", {"url": "ftp://127.0.0.1/x.png"}, result=True)
    assert "url must be an http:// or https:// address" in caught.value.result["error"]
    image = base64.b64encode(png(test_digits[0][0])).decode()
    record = platform.client.invoke("mnist/infer", {"image": image})
    assert record["response"]["success"] is True
    assert record["response"]["result"]["digit"] == test_digits[1][0]


def test_manifest_bundles_mlcore_and_needs_the_storage_variables():
    import zipfile

    from deployer.errors import ManifestError

    env = {
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "S3_BUCKET": "b-b",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    (package,) = manifest.load(ROOT / "manifests" / "infer.yaml", env=env)
    (action,) = package.actions
    assert action.qualified == "mnist/infer" and action.exec_["kind"] == "blackbox"
    assert action.exec_["image"] == manifest.DEFAULT_RUNTIME_IMAGE  # torch is in the project's image only
    (package,) = manifest.load(ROOT / "manifests" / "infer.yaml", env={**env, "DEPLOYER_RUNTIME_IMAGE": "r.io/x:1"})
    assert package.actions[0].exec_["image"] == "r.io/x:1"
    assert action.limits == {"timeout": 60000, "memory": 1024}
    assert action.inputs == {
        "s3_endpoint": "http://127.0.0.1:9",
        "s3_bucket": "b-b",
        "s3_access_key": "a",
        "s3_secret_key": "s",
        "allow_hosts": "",
    }
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(action.exec_["code"]))).namelist()
    assert "__main__.py" in names and {"mlcore/inference.py", "mlcore/preprocess.py"} <= set(names)
    with pytest.raises(ManifestError, match=r"\$S3_BUCKET is not set"):
        manifest.load(ROOT / "manifests" / "infer.yaml", env={k: v for k, v in env.items() if k != "S3_BUCKET"})


def test_a_small_rgba_canvas_is_refused_by_size_not_killed_by_memory(platform, deployed, test_digits):
    # Prepare: 75 KB of PNG inside the pixel limit, whose four channels would need more than the action's 1024 MB
    canvas = Image.new("RGBA", (4096, 4096), (255, 255, 255, 0))
    for x in range(0, 4096, 512):
        canvas.paste((0, 0, 0, 255), (x, 0, x + 4, 4096))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    # Execute
    with pytest.raises(ActivationFailedError) as caught:
        platform.client.invoke("mnist/infer", {"image": base64.b64encode(buf.getvalue()).decode()}, result=True)
    # Assert: an error naming the size and the limit, and the same container serves the next image
    assert "4096x4096 RGBA = 67108864 samples" in caught.value.result["error"]
    assert "limit of 16777216" in caught.value.result["error"]
    image = base64.b64encode(png(test_digits[0][0])).decode()
    assert platform.client.invoke("mnist/infer", {"image": image}, result=True)["digit"] == test_digits[1][0]
