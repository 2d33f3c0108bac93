"""A worker's arithmetic: the flat optimizer is torch's SGD, and a sync round is one step on the whole batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mlcore.compute import batch_loss, flatten, unflatten_into
from mlcore.model import normalize
from mlcore.training import data
from mlcore.training.job import JobConfig
from mlcore.training.trainer import FlatSGD, Trainer, initial_vector

torch.set_num_threads(1)


def test_flat_sgd_is_torch_sgd_with_nesterov_and_weight_decay():
    config = JobConfig(job="j", momentum=0.9, weight_decay=5e-4, nesterov=True)
    torch.manual_seed(0)
    params = torch.nn.Parameter(torch.randn(50))
    reference = torch.optim.SGD([params], lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    flat, sgd = params.detach().clone(), FlatSGD(config)
    for step in range(5):
        grad = torch.randn(50)
        params.grad = grad.clone()
        for group in reference.param_groups:
            group["lr"] = 0.1 / (step + 1)
        reference.step()
        flat = sgd.step(flat, grad, 0.1 / (step + 1))
    assert torch.allclose(flat, params.detach(), atol=1e-6)


@pytest.mark.parametrize("precision, channels_last", [("fp32", False), ("fp32", True), ("bf16", True)])
def test_the_mean_of_the_workers_gradients_is_the_gradient_of_their_union(mnist_root, precision, channels_last):
    images, labels = data.load("local", None, train=True)
    config = JobConfig(
        job="j", workers=2, batch_size=64, train_limit=1024, precision=precision, channels_last=channels_last
    )
    vector = initial_vector(0)
    grads = [Trainer(config, w, images, labels, 1024).gradient(vector, 5)[0] for w in range(2)]
    union = torch.cat([data.batch_indices(config, w, 5, 1024) for w in range(2)])
    single = dataclasses.replace(config, workers=1)
    trainer = Trainer(single, 0, images[union], labels[union], 64)
    model = trainer.model
    unflatten_into(vector, model.parameters())
    model.zero_grad()
    # the union as one batch of a single process
    batch_loss(model, normalize(images[union]), labels[union], precision, channels_last).backward()
    whole = flatten(p.grad for p in model.parameters())
    tolerance = 1e-5 if precision == "fp32" else 2e-2
    assert torch.allclose((grads[0] + grads[1]) / 2, whole, atol=tolerance, rtol=tolerance)
