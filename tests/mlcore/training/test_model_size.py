"""A job names its model and topology; the wide model trains in the workers and the baseline; requests are counted."""

from __future__ import annotations

import threading

import pytest
import torch

from mlcore.compute import evaluate
from mlcore.errors import MLCoreError
from mlcore.model import LeNet5, build_model, count_parameters
from mlcore.storage import Storage
from mlcore.training import data
from mlcore.training.baseline import run_baseline
from mlcore.training.coordinator import create_job
from mlcore.training.job import JobConfig, JobLayout, TrainingError
from mlcore.training.report import worker_totals
from mlcore.training.state import split_state
from mlcore.training.trainer import initial_vector, model_from_vector
from mlcore.training.worker import Worker

TINY = dict(epochs=1, batch_size=64, lr=0.1, train_limit=256, test_limit=200, precision="fp32", compress="none")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model": "resnet"}, "model must be one of ('lenet5', 'lenet5x4'), got 'resnet'"),
        ({"topology": "ring"}, "topology must be one of ('allreduce', 'scatter', 'ps'), got 'ring'"),
    ],
)
def test_an_unknown_model_or_topology_is_refused_by_name(settings, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JobConfig.from_dict({"job": "j", **settings})


def test_a_job_trains_lenet5_by_all_reduce_unless_told_otherwise():
    config = JobConfig.from_dict({"job": "j"})
    assert (config.model, config.topology) == ("lenet5", "allreduce")
    wide = JobConfig.from_dict({"job": "j", "model": "lenet5x4", "topology": "ps"})
    assert JobConfig.from_dict(wide.as_dict()) == wide


def test_the_wide_model_is_lenet5_four_times_as_wide_with_the_same_layer_names():
    assert count_parameters(build_model("lenet5")) == 61_706 == count_parameters(LeNet5())
    wide = build_model("lenet5x4")
    assert count_parameters(wide) == 972_554  # 15.8x: the 10-100x of the size sweep
    assert list(wide.state_dict()) == list(LeNet5().state_dict())
    assert wide(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(MLCoreError, match="unknown model 'vgg'; choose one of lenet5, lenet5x4"):
        build_model("vgg")


def test_a_vector_is_only_read_back_as_the_model_of_its_size():
    vector = initial_vector(0, "lenet5x4")
    assert vector.numel() == 972_554 and count_parameters(model_from_vector(vector, "lenet5x4")) == 972_554
    with pytest.raises(TrainingError, match="a vector of 972554 parameters is not a lenet5 \\(61706 parameters\\)"):
        model_from_vector(vector)


def test_the_baseline_trains_and_evaluates_the_model_its_config_names(mnist_root):
    config = JobConfig(job="baseline", workers=1, data="local", model="lenet5x4", eval_every=2, **TINY)
    result = run_baseline(config, threads=1, targets=(0.2,))
    assert result["model"] == "lenet5x4" and result["parameters"] == 972_554
    assert [h["batch"] for h in result["history"]] == [2, 4] and 0.0 < result["final_accuracy"] <= 1.0


def test_sync_workers_train_the_wide_model_and_count_each_request_they_send(storage, mnist_root):
    # Prepare
    data.upload_mnist(storage, mnist_root)
    config = JobConfig(job="wide", workers=2, mode="sync", model="lenet5x4", data="s3", eval_every=2, **TINY)
    create_job(storage, config)
    results, errors = {}, []

    def run(w: int) -> None:
        try:
            results[w] = Worker(Storage(storage.config), config, w, owner=f"wide-w{w}").run()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    # Assert: 4 rounds of one step (32 of 128 images); each puts its gradient and gets its peer's, plus missed polls
    assert not errors and [results[w]["rounds"] for w in (0, 1)] == [4, 4]
    for w in (0, 1):
        exchange = results[w]["exchange_requests"]
        assert exchange == 2 * results[w]["rounds"] + results[w]["misses"]
        assert results[w]["requests"]["total"] >= exchange
    assert worker_totals(list(results.values()))["per_round"]["requests"] >= 2
    layout = JobLayout("wide")
    _, vector, _ = split_state(
        storage.get_bytes(layout.checkpoint(storage.get_json(layout.checkpoint_pointer)["round"]))
    )
    images, labels = data.test_set(config, storage)
    assert vector.numel() == 972_554
    assert 0.0 < evaluate(model_from_vector(vector, "lenet5x4"), images, labels)["accuracy"] <= 1.0
