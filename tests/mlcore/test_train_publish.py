"""Single-process training on a small real MNIST slice, evaluation, publishing and loading back from S3."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch

from mlcore import weights
from mlcore.errors import MLCoreError
from mlcore.inference import ModelCache, ModelCorruptError, ModelNotFoundError, load_model, predict, resolve_version
from mlcore.mnist import load_mnist
from mlcore.model import LeNet5
from mlcore.train import LATEST_KEY, MODEL_PREFIX, publish_model, train_lenet5


@pytest.fixture(scope="module")
def tiny_run(mnist_root):
    """One epoch on 3,000 real training images, tested on 500: seconds on 2 cores."""
    before = torch.get_num_threads()
    try:
        return train_lenet5(
            epochs=1, batch_size=32, lr=0.05, seed=1, threads=2, train_limit=3000, test_limit=500, root=mnist_root
        )
    finally:
        torch.set_num_threads(before)


def test_training_learns_from_a_small_slice(tiny_run):
    assert tiny_run.accuracy >= 0.85
    assert len(tiny_run.history) == 1 and tiny_run.history[0]["epoch"] == 1
    assert tiny_run.metrics()["config"]["train_limit"] == 3000
    assert set(tiny_run.state) == set(LeNet5().state_dict())


def test_training_is_reproducible_with_a_seed(mnist_root):
    runs = [
        train_lenet5(
            epochs=1, batch_size=50, lr=0.05, seed=7, threads=1, train_limit=300, test_limit=100, root=mnist_root
        )
        for _ in range(2)
    ]
    assert all(torch.equal(runs[0].state[k], runs[1].state[k]) for k in runs[0].state)
    assert runs[0].accuracy == runs[1].accuracy


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 0}, "batch size must be >= 1"),
        ({"lr": 0}, "learning rate must be > 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message, mnist_root):
    with pytest.raises(MLCoreError, match=message):
        train_lenet5(**{"epochs": 1, "train_limit": 10, "root": mnist_root, **kwargs})


def test_publish_writes_model_metadata_and_latest(storage, tiny_run):
    version = publish_model(storage, tiny_run.state, tiny_run.metrics())
    blob = storage.get_bytes(f"{MODEL_PREFIX}/{version}")
    meta = storage.get_json(f"{MODEL_PREFIX}/{version}.json")
    assert blob.startswith(weights.MAGIC) and meta["sha256"] == hashlib.sha256(blob).hexdigest()
    assert meta["accuracy"] == tiny_run.accuracy and meta["params"] == 61_706 and meta["created"]
    assert storage.get_json(LATEST_KEY)["version"] == version
    assert resolve_version(storage) == version


def test_published_model_loads_back_and_predicts_the_same(storage, tiny_run, mnist_root):
    version = publish_model(storage, tiny_run.state, tiny_run.metrics(), version="v-test")
    loaded = load_model(storage)
    images, _ = load_mnist(train=False, root=mnist_root)
    reference = LeNet5()
    reference.load_state_dict(tiny_run.state)
    assert loaded.version == version == "v-test"
    assert predict(loaded.model, images[:20]) == predict(reference, images[:20])


def test_a_model_published_before_the_weights_format_still_loads(storage, tiny_run, mnist_root):
    # Prepare: what publish_model wrote before mlcore.weights, a bare torch.save
    buffer = io.BytesIO()
    torch.save(tiny_run.state, buffer)
    blob = buffer.getvalue()
    storage.put_bytes(f"{MODEL_PREFIX}/old", blob)
    storage.put_json(f"{MODEL_PREFIX}/old.json", {"version": "old", "sha256": hashlib.sha256(blob).hexdigest()})
    # Execute
    loaded = load_model(storage, "old")
    # Assert
    reference = LeNet5()
    reference.load_state_dict(tiny_run.state)
    images, _ = load_mnist(train=False, root=mnist_root)
    assert predict(loaded.model, images[:20]) == predict(reference, images[:20])


def test_missing_model_and_bad_versions(storage):
    with pytest.raises(ModelNotFoundError, match="deployer model train"):
        load_model(storage)
    with pytest.raises(ModelNotFoundError, match="not published"):
        load_model(storage, "v-nope")
    with pytest.raises(ModelNotFoundError, match="not a valid name"):
        load_model(storage, "../etc")
    with pytest.raises(MLCoreError, match="without '/'"):
        publish_model(storage, LeNet5().state_dict(), {}, version="a/b")


def test_corrupt_checkpoint_is_refused(storage, tiny_run):
    version = publish_model(storage, tiny_run.state, tiny_run.metrics())
    storage.put_bytes(f"{MODEL_PREFIX}/{version}", b"garbage")
    with pytest.raises(ModelCorruptError, match="sha256"):
        load_model(storage, version)


def test_cache_loads_once_and_follows_latest_after_its_ttl(storage, tiny_run):
    first = publish_model(storage, tiny_run.state, tiny_run.metrics(), version="v1")
    cache = ModelCache(latest_ttl_s=0.0)
    assert cache.get(storage).version == first
    assert cache.get(storage).version == first and cache.loads == 1
    second = publish_model(storage, tiny_run.state, tiny_run.metrics(), version="v2")
    assert cache.get(storage).version == second and cache.loads == 2
    assert cache.get(storage, "v1").version == first and cache.loads == 2


def test_a_model_of_another_architecture_is_refused_by_name(storage, tiny_run):
    version = publish_model(storage, tiny_run.state, tiny_run.metrics())
    meta = storage.get_json(f"{MODEL_PREFIX}/{version}.json")
    assert meta["arch"] == "lenet5"
    storage.put_json(f"{MODEL_PREFIX}/{version}.json", {**meta, "arch": "resnet"})
    with pytest.raises(ModelCorruptError, match="'resnet' model; this inference builds only 'lenet5'"):
        load_model(storage, version)


def test_predict_checks_the_shape():
    with pytest.raises(MLCoreError, match=r"\[N,28,28\]"):
        predict(LeNet5(), torch.zeros(2, 32, 32, dtype=torch.uint8))


def test_publish_without_marking_latest(storage, tiny_run):
    first = publish_model(storage, tiny_run.state, tiny_run.metrics())
    named = publish_model(storage, tiny_run.state, tiny_run.metrics(), mark_latest=False)
    assert resolve_version(storage) == first
    assert load_model(storage, named).version == named
