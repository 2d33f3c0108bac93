"""FedAvg gives the weights it gave before the ML compute core was shared, in fp32 and bf16.

The reference is ClientUpdate and the round's evaluation as they stood in fedavg/core.py,
kept here: both run in this process on one thread, so the comparison is exact on any
machine (a digest pinned on one CPU would break on another whose kernels round
differently). Sampling, seeds, partition and the average are used from fedavg itself,
as they are not what the shared core replaces.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fedavg.core import ClientConfig, client_seed, client_update, fedavg, sample_clients
from fedavg.executors.serial import SerialExecutor
from fedavg.models import build_model
from fedavg.partition import make_partition
from fedavg.run import RunConfig, run
from mlcore.model import normalize


def _reference_client_update(model, global_state, images, labels, config, seed):
    n = len(labels)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    model.load_state_dict(global_state)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    anchor = [p.detach().clone() for p in model.parameters()] if config.mu > 0 else None
    batch = n if not config.batch_size else min(config.batch_size, n)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    total, steps = torch.zeros((), dtype=torch.float64), 0
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                loss = loss_fn(model(images[idx].contiguous(memory_format=layout)), labels[idx])
            if anchor is not None:
                prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                loss = loss + config.mu / 2 * prox
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
    state = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    return state, float(total) / steps


@torch.no_grad()
def _reference_evaluate(model, state, images_uint8, labels, channels_last, batch_size=1000):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    model.load_state_dict(state)
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        x = normalize(images_uint8[start : start + batch_size]).contiguous(memory_format=layout)
        y = labels[start : start + batch_size]
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    n = len(labels)
    return loss_sum / n, correct / n


def _reference_run(config: RunConfig, data):
    """(final state, [(train loss, test loss, test accuracy) per round]) of a serial run."""
    torch.manual_seed(config.seed)
    state = {k: v.detach().clone() for k, v in build_model(config.model).state_dict().items()}
    labels = data.train_labels.numpy()
    parts = make_partition(
        config.partition,
        labels,
        config.clients,
        config.seed,
        alpha=config.alpha,
        shards_per_client=config.shards_per_client,
    )
    model, rounds = build_model(config.model), []
    for r in range(1, config.rounds + 1):
        results = []
        for k in sample_clients(config.clients, config.frac, config.seed, r):
            idx = torch.as_tensor(parts[k], dtype=torch.int64)
            images, targets = normalize(data.train_images[idx]), data.train_labels[idx]
            new, loss = _reference_client_update(
                model, state, images, targets, config.client_config(), client_seed(config.seed, r, k)
            )
            results.append((new, len(idx), loss))
        state = fedavg([(s, n) for s, n, _ in results])
        n = sum(count for _, count, _ in results)
        train_loss = sum(loss * count for _, count, loss in results) / n
        test = _reference_evaluate(model, state, data.test_images, data.test_labels, config.channels_last)
        rounds.append((train_loss, *test))
    return state, rounds


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


CLIENTS = {
    "fp32": ClientConfig("cnn", epochs=2, batch_size=10, lr=0.05),
    "bf16-channels-last": ClientConfig("cnn", epochs=2, batch_size=10, lr=0.05, precision="bf16", channels_last=True),
    "fedprox": ClientConfig("2nn", epochs=2, batch_size=16, lr=0.1, mu=0.5),
    "fedsgd": ClientConfig("lenet5", epochs=3, batch_size=None, lr=0.2),
}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_client_update_gives_the_weights_of_the_reference_loop(small_mnist, name):
    # Prepare
    config = CLIENTS[name]
    torch.manual_seed(2)
    start = {k: v.detach().clone() for k, v in build_model(config.model).state_dict().items()}
    images, labels = normalize(small_mnist.train_images[:120]), small_mnist.train_labels[:120]
    expected, expected_loss = _reference_client_update(build_model(config.model), start, images, labels, config, 9)
    # Execute
    state, loss = client_update(build_model(config.model), start, images, labels, config, seed=9)
    # Assert
    assert _same(state, expected) and loss == expected_loss


SERIAL = RunConfig(model="cnn", clients=6, frac=0.5, epochs=1, batch_size=10, lr=0.05, rounds=2, seed=4)


@pytest.mark.parametrize(
    "config",
    [SERIAL, dataclasses.replace(SERIAL, precision="bf16", channels_last=True)],
    ids=["fp32", "bf16-channels-last"],
)
def test_a_two_round_serial_run_gives_the_weights_of_the_reference(small_mnist, config):
    # Prepare
    data = dataclasses.replace(
        small_mnist, train_images=small_mnist.train_images[:600], train_labels=small_mnist.train_labels[:600]
    )
    expected, expected_rounds = _reference_run(config, data)
    # Execute
    with SerialExecutor(data.train_images, data.train_labels, num_threads=1) as executor:
        report, state = run(config, executor, data)
    # Assert
    assert _same(state, expected)
    assert [(r["train_loss"], r["test_loss"], r["test_acc"]) for r in report["rounds"]] == expected_rounds


def _reference_fedavg(pairs):
    """The server's average as it stood before it summed flat vectors: per tensor, in float64, in update order."""
    total = sum(n for _, n in pairs)
    out = {}
    for key, ref in pairs[0][0].items():
        if not torch.is_floating_point(ref):
            out[key] = ref.clone()
            continue
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for state, n in pairs:
            acc += state[key].to(torch.float64) * (n / total)
        out[key] = acc.to(ref.dtype)
    return out


def test_the_average_gives_the_floats_of_the_per_tensor_reference():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    dtypes = st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.int64])
    shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)
    layouts = st.lists(st.tuples(dtypes, shapes, st.booleans()), min_size=1, max_size=5)

    @settings(max_examples=60, deadline=None)
    @given(layouts, st.lists(st.integers(1, 1000), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
    def check(layout, counts, seed):
        # Prepare
        generator = torch.Generator().manual_seed(seed)
        pairs = []
        for n in counts:
            state = {}
            for i, (dtype, shape, channels_last) in enumerate(layout):
                values = torch.randn(shape, generator=generator, dtype=torch.float64) * 1e3
                values = values.to(dtype)
                if channels_last and len(shape) == 4:
                    values = values.contiguous(memory_format=torch.channels_last)
                state[f"t{i}"] = values
            pairs.append((state, n))
        # Execute
        out = fedavg(pairs)
        # Assert
        expected = _reference_fedavg(pairs)
        assert list(out) == list(expected)
        assert all(out[k].dtype == expected[k].dtype and torch.equal(out[k], expected[k]) for k in out)

    check()
