"""The algorithm's maths on hand-computable tensors, and the paper's model sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedavg.core import (
    ClientConfig,
    RunningAverage,
    Update,
    client_update,
    fedavg,
    initial_state,
    sample_clients,
    state_distance,
)
from fedavg.errors import AggregationError, ClientError, FedAvgError
from fedavg.models import MODELS, build_model, count_parameters
from mlcore.model import normalize


def test_fedavg_is_the_example_weighted_mean():
    # Prepare
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([4.0])}
    c = {"w": torch.tensor([-1.0, 0.0]), "b": torch.tensor([8.0])}
    # Execute
    out = fedavg([Update(a, 1), Update(b, 3), (c, 4)])
    # Assert: (1*a + 3*b + 4*c) / 8
    assert torch.allclose(out["w"], torch.tensor([(1 + 9 - 4) / 8, (2 + 18 + 0) / 8]))
    assert torch.allclose(out["b"], torch.tensor([(0 + 12 + 32) / 8]))
    assert out["w"].dtype == torch.float32


def test_fedavg_rejects_what_cannot_be_averaged():
    with pytest.raises(AggregationError):
        fedavg([])
    with pytest.raises(AggregationError):
        fedavg([Update({"w": torch.zeros(2)}, 0)])
    with pytest.raises(AggregationError):
        fedavg([Update({"w": torch.zeros(2)}, 1), Update({"w": torch.zeros(3)}, 1)])


def test_a_running_average_of_the_expected_clients_is_fedavg_and_of_fewer_their_weighted_mean():
    # Prepare: three updates with an integer buffer; the round expected all three (1 + 3 + 4 examples)
    torch.manual_seed(0)
    states = [{"w": torch.randn(3, 4), "steps": torch.tensor([k])} for k in range(3)]
    counts = [1, 3, 4]
    whole, fewer = RunningAverage(8), RunningAverage(8)
    # Execute: all three; then the second missing, as a client that failed
    for state, n in zip(states, counts):
        whole.add(state, n)
    for i in (0, 2):
        fewer.add(states[i], counts[i])
    # Assert: the same floats as fedavg; without the second, the mean of the others weighted 1 : 4
    expected = fedavg(list(zip(states, counts)))
    assert all(torch.equal(whole.result()[k], expected[k]) for k in expected)
    survivors = fedavg([(states[0], 1), (states[2], 4)])
    assert torch.allclose(fewer.result()["w"], survivors["w"], rtol=1e-6, atol=0)
    assert torch.equal(fewer.result()["steps"], torch.tensor([0]))


def test_a_running_average_refuses_what_cannot_be_averaged():
    with pytest.raises(AggregationError, match="expect examples"):
        RunningAverage(0)
    average = RunningAverage(4)
    with pytest.raises(AggregationError, match="no client updates"):
        average.result()
    with pytest.raises(AggregationError, match="num_examples > 0"):
        average.add({"w": torch.zeros(2)}, 0)
    average.add({"w": torch.zeros(2)}, 2)
    with pytest.raises(AggregationError, match="disagree"):
        average.add({"w": torch.zeros(3)}, 2)


def test_fedsgd_with_one_client_is_one_sgd_step(small_mnist):
    # Prepare
    images, labels = normalize(small_mnist.train_images[:50]), small_mnist.train_labels[:50]
    start = initial_state("2nn", seed=3)
    lr = 0.1
    # Execute: FedSGD = one epoch on the whole local set, averaged over one client
    state, _ = client_update(build_model("2nn"), start, images, labels, ClientConfig("2nn", 1, None, lr), seed=0)
    averaged = fedavg([Update(state, len(labels))])
    # Assert against a plain SGD step computed by hand
    reference = build_model("2nn")
    reference.load_state_dict(start)
    loss = nn.functional.cross_entropy(reference(images), labels)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for (name, p), g in zip(reference.named_parameters(), grads):
        assert torch.allclose(averaged[name], p.detach() - lr * g, atol=1e-6), name
    assert state_distance(averaged, start) > 0


def test_fedprox_keeps_the_update_closer_to_the_global_weights(small_mnist):
    images, labels = normalize(small_mnist.train_images[:200]), small_mnist.train_labels[:200]
    start = initial_state("2nn", seed=1)
    plain, _ = client_update(build_model("2nn"), start, images, labels, ClientConfig("2nn", 2, 10, 0.1), seed=5)
    prox, _ = client_update(build_model("2nn"), start, images, labels, ClientConfig("2nn", 2, 10, 0.1, mu=1.0), seed=5)
    assert state_distance(prox, start) < 0.9 * state_distance(plain, start)


def test_client_without_examples_fails_clearly():
    with pytest.raises(ClientError, match="no examples"):
        client_update(
            build_model("2nn"),
            initial_state("2nn", 0),
            torch.zeros(0, 1, 28, 28),
            torch.zeros(0, dtype=torch.int64),
            ClientConfig("2nn"),
            seed=0,
        )


def test_client_sampling_is_seeded_and_sized_as_in_the_paper():
    chosen = sample_clients(100, 0.1, seed=7, round_index=3)
    assert len(chosen) == 10 == len(set(chosen))
    assert chosen == sample_clients(100, 0.1, seed=7, round_index=3)
    assert chosen != sample_clients(100, 0.1, seed=7, round_index=4)
    assert len(sample_clients(5, 0.01, seed=0, round_index=1)) == 1


@pytest.mark.parametrize("name,expected", [("cnn", 1_663_370), ("2nn", 199_210), ("lenet5", 61_706)])
def test_models_have_the_published_sizes(name, expected):
    model = build_model(name)
    assert count_parameters(model) == expected
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_is_a_fedavg_error():
    with pytest.raises(FedAvgError, match="unknown model"):
        build_model("resnet")
    assert set(MODELS) == {"cnn", "2nn", "lenet5"}
