"""The `fedavg/client` action's main, called directly against a real S3 endpoint on loopback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from fedavg.core import ClientConfig, client_update, initial_state
from fedavg.models import build_model
from mlcore.model import normalize

ACTION = Path(__file__).resolve().parents[2] / "actions" / "fedavg" / "client" / "__main__.py"


@pytest.fixture(scope="module")
def action():
    spec = importlib.util.spec_from_file_location("fedavg_client_action", ACTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def params_for(storage, **extra):
    return {
        **storage.config.as_params(),
        "global_key": "fedavg/t/round-00001/global",
        "data_key": "fedavg/t/data/client-00003",
        "update_key": "fedavg/t/round-00001/update/client-00003",
        "model": "2nn",
        "epochs": 1,
        "batch_size": 10,
        "lr": 0.05,
        "seed": 42,
        "client_id": 3,
        **extra,
    }


def test_main_runs_one_client_update_through_s3(action, storage, small_mnist):
    # Prepare
    images, labels = small_mnist.train_images[:120], small_mnist.train_labels[:120]
    start = initial_state("2nn", seed=0)
    storage.put_state("fedavg/t/round-00001/global", start)
    storage.put_state("fedavg/t/data/client-00003", {"images": images, "labels": labels})
    # Execute
    answer = action.main(params_for(storage))
    # Assert: keys and counts in the answer, the update in S3 equal to the same ClientUpdate run here
    assert "error" not in answer, answer
    assert answer["num_examples"] == 120 and answer["client_id"] == 3
    update = storage.get_state(answer["update_key"])
    expected, _ = client_update(
        build_model("2nn"), start, normalize(images), labels, ClientConfig("2nn", 1, 10, 0.05), seed=42
    )
    assert all(torch.equal(update[k], expected[k]) for k in expected)
    # the arithmetic travels with the parameters
    start = initial_state("cnn", seed=0)
    storage.put_state("fedavg/t/round-00001/global", start)
    answer = action.main(params_for(storage, model="cnn", precision="bf16", channels_last=True))
    assert "error" not in answer, answer
    expected, _ = client_update(
        build_model("cnn"),
        start,
        normalize(images),
        labels,
        ClientConfig("cnn", 1, 10, 0.05, precision="bf16", channels_last=True),
        seed=42,
    )
    assert all(torch.equal(storage.get_state(answer["update_key"])[k], expected[k]) for k in expected)


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"global_key": None}, "global_key"),
        ({"model": "vgg"}, "model"),
        ({"epochs": 0}, "epochs"),
        ({"lr": "fast"}, "lr"),
        ({"precision": "fp16"}, "precision"),
        ({"channels_last": "yes"}, "channels_last"),
        ({"pixels": "raw"}, "pixels"),
    ],
)
def test_bad_input_answers_an_error(action, storage, change, fragment):
    answer = action.main({k: v for k, v in params_for(storage, **change).items() if v is not None})
    assert set(answer) == {"error"} and fragment in answer["error"]


def test_missing_objects_answer_an_error_naming_the_key(action, storage):
    answer = action.main(params_for(storage, global_key="fedavg/t/nowhere"))
    assert set(answer) == {"error"} and "fedavg/t/nowhere" in answer["error"]
