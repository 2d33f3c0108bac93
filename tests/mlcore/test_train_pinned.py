"""`deployer model train` gives the weights it gave before the ML compute core was shared.

The reference below is the training loop as it stood in mlcore/train.py (train_epoch,
evaluate, the one-cycle schedule) kept here verbatim in substance: both run in this
process on the same threads, so the comparison is exact on any machine, where a digest
pinned on one CPU would break on another whose kernels round differently.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlcore.augment import AugmentConfig, Augmenter
from mlcore.mnist import load_mnist
from mlcore.model import LeNet5, normalize, standardize, to_unit
from mlcore.train import train_lenet5


@pytest.fixture(autouse=True)
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _batches(n, batch_size, generator=None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _reference_epoch(model, optimizer, images, labels, batch_size, generator, scheduler, augment):
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total, count = 0.0, 0
    for idx in _batches(len(labels), batch_size, generator):
        y = labels[idx]
        x = normalize(images[idx]) if augment is None else standardize(augment(to_unit(images[idx])))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def _reference_evaluate(model, images, labels, batch_size=1000):
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    correct, loss = 0, 0.0
    for idx in _batches(len(labels), batch_size):
        logits = model(normalize(images[idx]))
        loss += loss_fn(logits, labels[idx]).item()
        correct += (logits.argmax(1) == labels[idx]).sum().item()
    n = len(labels)
    return {"accuracy": correct / n, "loss": loss / n}


def _reference_train(root, epochs, batch_size, lr, seed, threads, train_limit, test_limit, augment=None):
    """(state, [(train loss, test accuracy, test loss) per epoch]) as train_lenet5 computed them."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train_x, train_y = load_mnist(train=True, root=root)
    test_x, test_y = load_mnist(train=False, root=root)
    train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    model = LeNet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = (len(train_y) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch
    )
    generator = torch.Generator().manual_seed(seed)
    augmenter = Augmenter(augment, seed) if augment is not None else None
    history = []
    for _ in range(epochs):
        loss = _reference_epoch(model, optimizer, train_x, train_y, batch_size, generator, scheduler, augmenter)
        result = _reference_evaluate(model, test_x, test_y)
        history.append((round(loss, 5), result["accuracy"], round(result["loss"], 5)))
    return model.state_dict(), history


@pytest.mark.parametrize("augment", [None, AugmentConfig()], ids=["plain", "augmented"])
def test_model_train_gives_the_weights_of_the_reference_loop(mnist_root, augment):
    # Prepare
    settings = dict(epochs=2, batch_size=50, lr=0.05, seed=5, threads=1, train_limit=600, test_limit=300)
    expected, expected_history = _reference_train(mnist_root, augment=augment, **settings)
    # Execute
    result = train_lenet5(root=mnist_root, augment=augment, **settings)
    # Assert
    assert list(result.state) == list(expected)
    assert all(torch.equal(result.state[k], expected[k]) for k in expected)
    assert [(h["train_loss"], h["test_accuracy"], h["test_loss"]) for h in result.history] == expected_history
