"""Serverless training gives the weights it gave before the ML compute core was shared.

The reference is the workers' arithmetic as it stood in mlcore/training/compute.py (the
Trainer's gradient and local SGD steps, the flat SGD of sync mode) and the round loop's
averaging, with updates rounded as the exchange format rounds them; it is kept here, and
both run in this process on one thread, so the comparison is exact on any machine (a
digest pinned on one CPU would break on another whose kernels round differently). Batch
order and the schedule come from mlcore.training itself, as they are not what the core
replaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

import pytest
import torch
from torch import nn

from mlcore.model import LeNet5, normalize
from mlcore.storage import Storage
from mlcore.training import data
from mlcore.training.baseline import run_baseline
from mlcore.training.coordinator import create_job
from mlcore.training.job import JobConfig, JobLayout
from mlcore.training.state import read_state
from mlcore.training.worker import Worker

SIZE = 512
BASE = JobConfig(
    job="pinned",
    workers=2,
    epochs=1,
    batch_size=64,
    lr=0.1,
    train_limit=SIZE,
    test_limit=300,
    eval_every=4,
    data="local",
    threads=1,
    worker_timeout_s=120.0,
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _flatten(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _load(vector, tensors):
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(vector[offset : offset + t.numel()].view(t.shape))
            offset += t.numel()


def _initial_vector(seed):
    torch.manual_seed(seed)
    return _flatten(LeNet5().parameters())


class _ReferenceSGD:
    def __init__(self, config):
        self.momentum, self.weight_decay = config.momentum, config.weight_decay
        self.nesterov = config.nesterov and config.momentum > 0
        self.buffer = None

    def step(self, params, grad, lr):
        g = grad + self.weight_decay * params if self.weight_decay else grad.clone()
        if self.momentum:
            self.buffer = g.clone() if self.buffer is None else self.buffer.mul_(self.momentum).add_(g)
            g = g.add(self.buffer, alpha=self.momentum) if self.nesterov else self.buffer
        return params - lr * g


class _ReferenceTrainer:
    def __init__(self, config, worker, images, labels, size):
        self.config, self.worker, self.size, self.images, self.labels = config, worker, size, images, labels
        self.model = LeNet5()
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = list(self.model.parameters())
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(
            self.params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )

    def _loss(self, batch_index):
        idx = data.batch_indices(self.config, self.worker, batch_index, self.size)
        x = normalize(self.images[idx])
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        bf16 = self.config.precision == "bf16"
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            return self.loss_fn(self.model(x), self.labels[idx])

    def gradient(self, vector, batch_index):
        _load(vector, self.params)
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        loss = self._loss(batch_index)
        loss.backward()
        return _flatten(p.grad for p in self.params), loss.item()

    def local_steps(self, vector, first_batch, steps):
        _load(vector, self.params)
        self.model.train()
        losses = []
        for k in range(steps):
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr_at(first_batch + k, self.size)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(first_batch + k)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        return _flatten(self.params) - vector, sum(losses) / len(losses)


def _as_stored(vector, compress):
    """An update as its peers read it back from storage."""
    dtype = torch.float16 if compress == "fp16" else torch.float32
    return vector.to(dtype).to(torch.float32)


def _reference_job(config):
    """(final vector, sync momentum or None) of the job's rounds, as the workers compute them together."""
    images, labels = data.load("local", None, train=True)
    trainers = [_ReferenceTrainer(config, w, images, labels, SIZE) for w in range(config.workers)]
    total, every = config.total_batches(SIZE), config.checkpoint_every(SIZE)
    vector, sgd, batch = _initial_vector(config.seed), _ReferenceSGD(config), 0
    while batch < total:
        if config.mode == "sync":
            k = 1
            updates = [_as_stored(t.gradient(vector, batch)[0], config.compress) for t in trainers]
            vector = sgd.step(vector, torch.stack(updates).mean(dim=0), config.lr_at(batch, SIZE))
        else:
            k = max(1, min(config.local_steps, total - batch, every - batch % every))
            updates = [_as_stored(t.local_steps(vector, batch, k)[0], config.compress) for t in trainers]
            vector = vector + torch.stack(updates).mean(dim=0)
        batch += k
    return vector, sgd.buffer if config.mode == "sync" else None


def _run_job(storage, config):
    create_job(storage, config)
    errors = []

    def work(w):
        try:
            Worker(Storage(storage.config), config, w, owner=f"pinned-{w}").run()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(config.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    layout = JobLayout(config.job)
    _, vector, momentum = read_state(storage, layout.checkpoint(storage.get_json(layout.checkpoint_pointer)["round"]))
    return vector, momentum


JOBS = {
    "sync-fp32": dataclasses.replace(BASE, mode="sync", precision="fp32", channels_last=False, compress="none"),
    "sync-bf16-fp16": dataclasses.replace(BASE, mode="sync", precision="bf16", channels_last=True, compress="fp16"),
    "local-bf16-fp16": dataclasses.replace(
        BASE, mode="local", local_steps=3, precision="bf16", channels_last=True, compress="fp16"
    ),
    "local-fp32": dataclasses.replace(
        BASE, mode="local", local_steps=3, precision="fp32", channels_last=False, compress="none"
    ),
}


@pytest.mark.parametrize("name", list(JOBS))
def test_workers_end_with_the_weights_of_the_reference_rounds(storage, mnist_root, name):
    # Prepare
    config = JOBS[name]
    expected, expected_momentum = _reference_job(config)
    # Execute
    vector, momentum = _run_job(storage, config)
    # Assert
    assert torch.equal(vector, expected)
    assert (momentum is None) == (expected_momentum is None)
    assert momentum is None or torch.equal(momentum, expected_momentum)


@torch.no_grad()
def _reference_evaluate(vector, images, labels):
    model = LeNet5()
    _load(vector, model.parameters())
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    correct, loss = 0, 0.0
    for start in range(0, len(labels), 1000):
        logits = model(normalize(images[start : start + 1000]))
        loss += loss_fn(logits, labels[start : start + 1000]).item()
        correct += (logits.argmax(1) == labels[start : start + 1000]).sum().item()
    return correct / len(labels), loss / len(labels)


@pytest.mark.parametrize("precision, channels_last", [("fp32", False), ("bf16", True)])
def test_the_single_process_baseline_follows_the_reference_steps(mnist_root, precision, channels_last):
    # Prepare: one worker with the whole batch, evaluated at every checkpoint
    single = dataclasses.replace(
        BASE, workers=1, mode="local", local_steps=1, precision=precision, channels_last=channels_last
    )
    images, labels = data.load("local", None, train=True)
    test_images, test_labels = data.test_set(single, None)
    trainer = _ReferenceTrainer(single, 0, images, labels, SIZE)
    total, every = single.total_batches(SIZE), single.checkpoint_every(SIZE)
    vector, batch, expected = _initial_vector(single.seed), 0, []
    while batch < total:
        steps = min(every - batch % every, total - batch)
        delta, loss = trainer.local_steps(vector, batch, steps)
        vector, batch = vector + delta, batch + steps
        accuracy, test_loss = _reference_evaluate(vector, test_images, test_labels)
        expected.append((batch, accuracy, round(test_loss, 5), round(loss, 5)))
    # Execute
    report = run_baseline(dataclasses.replace(BASE, precision=precision, channels_last=channels_last), threads=1)
    # Assert
    assert [(h["batch"], h["accuracy"], h["loss"], h["train_loss"]) for h in report["history"]] == expected
