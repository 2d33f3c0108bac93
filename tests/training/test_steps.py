"""Worker and parameter-server steps on real tensors and a real S3 endpoint (moto server on loopback)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from mlcore import dist_data
from mlcore.dist_job import JobConfig, JobLayout, TrainingError, decode_vector
from mlcore.dist_steps import create_job, model_from_vector, ps_step, worker_step
from mlcore.model import normalize

torch.set_num_threads(1)


@pytest.fixture
def job_storage(storage, mnist_root):
    dist_data.upload_mnist(storage, mnist_root)
    return storage


def small_config(**overrides) -> JobConfig:
    settings = dict(job="unit", workers=2, epochs=1, batch_size=64, train_limit=1024, test_limit=500, lr=0.05)
    settings.update(overrides)
    return JobConfig(**settings)


def model_at(storage, config, step):
    return decode_vector(storage.get_bytes(JobLayout(config.job).model(step)))


def run_step(storage, config, step):
    reports = [worker_step(storage, config, step, w) for w in range(config.workers)]
    return reports, ps_step(storage, config, step, list(range(config.workers)))


def test_worker_and_ps_publish_the_next_version_with_a_breakdown(job_storage):
    # Prepare
    config = small_config()
    create_job(job_storage, config)
    # Execute
    reports, ps = run_step(job_storage, config, 0)
    # Assert
    layout = JobLayout(config.job)
    assert job_storage.exists(layout.model(1)) and job_storage.exists(layout.opt(1))
    assert not torch.equal(model_at(job_storage, config, 0), model_at(job_storage, config, 1))
    assert job_storage.get_json(layout.applied(0))["workers"] == [0, 1]
    for r in reports:
        assert r["compute_s"] > 0 and r["s3_get_s"] > 0 and r["s3_put_s"] > 0
        assert r["bytes_out"] == len(job_storage.get_bytes(layout.grads(0, r["worker"])))
        assert r["examples"] == 32
    assert ps["bytes_in"] > 3 * 61_706 * 4 and ps["skipped"] is False


def test_two_sync_steps_equal_single_process_sgd_on_the_same_batches(job_storage):
    # Prepare
    config = small_config(weight_decay=5e-4, momentum=0.9)
    create_job(job_storage, config)
    reference = model_from_vector(model_at(job_storage, config, 0).clone())
    optimizer = torch.optim.SGD(reference.parameters(), lr=config.lr, momentum=0.9, weight_decay=5e-4,
                                nesterov=config.nesterov)
    images, labels = dist_data.load("s3", job_storage, train=True)
    # Execute
    for step in range(2):
        run_step(job_storage, config, step)
        idx = torch.cat([dist_data.batch_indices(config, w, step, 1024) for w in range(2)])
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step, 1024)
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(reference(normalize(images[idx])), labels[idx]).backward()
        optimizer.step()
    # Assert
    expected = parameters_to_vector(reference.parameters()).detach()
    assert torch.allclose(model_at(job_storage, config, 2), expected, atol=1e-6, rtol=1e-5)


def test_redelivered_updates_are_idempotent_and_never_applied_twice(job_storage):
    # Prepare
    config = small_config()
    create_job(job_storage, config)
    layout = JobLayout(config.job)
    run_step(job_storage, config, 0)
    grads_before = job_storage.get_bytes(layout.grads(0, 1))
    model_before = job_storage.get_bytes(layout.model(1))
    # Execute
    worker_step(job_storage, config, 0, 1)
    again = ps_step(job_storage, config, 0, [0, 1])
    # Assert
    assert job_storage.get_bytes(layout.grads(0, 1)) == grads_before
    assert again["skipped"] is True
    assert job_storage.get_bytes(layout.model(1)) == model_before


def test_fp16_compression_halves_what_workers_send(job_storage):
    # Prepare
    plain, half = small_config(job="plain"), small_config(job="half", compress="fp16")
    create_job(job_storage, plain)
    create_job(job_storage, half)
    # Execute
    sent_plain = worker_step(job_storage, plain, 0, 0)["bytes_out"]
    sent_half = worker_step(job_storage, half, 0, 0)["bytes_out"]
    # Assert
    assert sent_half < 0.55 * sent_plain
    g_plain = decode_vector(job_storage.get_bytes(JobLayout("plain").grads(0, 0)))
    g_half = decode_vector(job_storage.get_bytes(JobLayout("half").grads(0, 0)))
    assert torch.allclose(g_plain, g_half, atol=1e-3, rtol=1e-2)


def test_local_mode_averages_the_models_after_k_local_steps(job_storage):
    # Prepare
    config = small_config(mode="local", local_steps=3, momentum=0.0, weight_decay=0.0)
    create_job(job_storage, config)
    start = model_at(job_storage, config, 0)
    images, labels = dist_data.load("s3", job_storage, train=True)
    finals = []
    for w in range(2):
        model = model_from_vector(start.clone())
        for k in range(3):
            idx = dist_data.batch_indices(config, w, k, 1024)
            model.zero_grad()
            nn.CrossEntropyLoss()(model(normalize(images[idx])), labels[idx]).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= config.lr_at(k, 1024) * p.grad
        finals.append(parameters_to_vector(model.parameters()).detach())
    # Execute
    run_step(job_storage, config, 0)
    # Assert
    assert torch.allclose(model_at(job_storage, config, 1), torch.stack(finals).mean(0), atol=1e-5)


def test_shards_are_disjoint_and_cover_an_epoch():
    config = small_config(workers=4, batch_size=64)
    seen = [torch.cat([dist_data.batch_indices(config, w, i, 1024) for i in range(config.batches_per_epoch(1024))])
            for w in range(4)]
    union = torch.cat(seen)
    assert len(union) == len(set(union.tolist())) == 1024


def test_ps_refuses_a_missing_update_and_config_rejects_bad_settings(job_storage):
    config = small_config()
    create_job(job_storage, config)
    worker_step(job_storage, config, 0, 0)
    with pytest.raises(TrainingError, match="grads/000000000/1"):
        ps_step(job_storage, config, 0, [0, 1])
    with pytest.raises(TrainingError, match="quorum"):
        JobConfig.from_dict({"job": "x", "workers": 2, "quorum": 3})
    with pytest.raises(TrainingError, match="unknown job settings"):
        JobConfig.from_dict({"job": "x", "wrokers": 2})
    with pytest.raises(TrainingError, match="already exists"):
        create_job(job_storage, small_config(epochs=3))
