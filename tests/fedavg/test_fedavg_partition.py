"""Partitions of the real MNIST labels: coverage, label skew, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from fedavg.errors import PartitionError
from fedavg.partition import label_counts, make_partition
from mlcore.mnist import load_mnist


@pytest.fixture(scope="module")
def labels(mnist_root):
    return load_mnist(True, mnist_root)[1].numpy()


def covers_exactly_once(parts, n):
    joined = np.concatenate(parts)
    return len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


@pytest.mark.parametrize("clients", [100, 7, 37])
def test_shards_give_at_most_two_labels_and_cover_the_data_once(labels, clients):
    parts = make_partition("shards", labels, clients, seed=0)
    assert len(parts) == clients
    assert covers_exactly_once(parts, len(labels))
    assert (label_counts(parts, labels) > 0).sum(axis=1).max() <= 2


def test_shards_for_k100_are_the_papers_200_shards_of_about_300(labels):
    sizes = [len(p) for p in make_partition("shards", labels, 100, seed=1)]
    assert 570 <= min(sizes) and max(sizes) <= 630


def test_too_few_shards_still_cover_the_data(labels):
    parts = make_partition("shards", labels, 2, seed=0)
    assert covers_exactly_once(parts, len(labels))


def test_iid_covers_the_data_and_each_client_sees_every_label(labels):
    parts = make_partition("iid", labels, 100, seed=0)
    assert covers_exactly_once(parts, len(labels))
    assert (label_counts(parts, labels) > 0).sum(axis=1).min() == 10


def _mean_label_entropy_bits(parts, labels) -> float:
    counts = label_counts(parts, labels).astype(float)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
    return float(h.mean())


def test_dirichlet_skew_responds_to_alpha(labels):
    entropies = {
        a: _mean_label_entropy_bits(make_partition("dirichlet", labels, 20, 0, alpha=a), labels)
        for a in (0.05, 0.5, 100.0)
    }
    assert entropies[0.05] < entropies[0.5] < entropies[100.0]
    assert entropies[100.0] > 3.2  # near log2(10) = 3.32: almost IID
    assert entropies[0.05] < 1.5  # a couple of dominant labels per client
    assert covers_exactly_once(make_partition("dirichlet", labels, 20, 0, alpha=0.05), len(labels))


def test_same_seed_same_partition_other_seed_other_partition(labels):
    a = make_partition("shards", labels, 50, seed=4)
    b = make_partition("shards", labels, 50, seed=4)
    c = make_partition("shards", labels, 50, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_impossible_settings_are_partition_errors(labels):
    with pytest.raises(PartitionError):
        make_partition("zipf", labels, 10, 0)
    with pytest.raises(PartitionError):
        make_partition("dirichlet", labels, 10, 0, alpha=0)
    with pytest.raises(PartitionError):
        make_partition("iid", labels[:5], 10, 0)
