"""The shared arithmetic: which precision runs, flat vectors, sums in order and one evaluation."""

from __future__ import annotations

import pytest
import torch

from mlcore import compute
from mlcore.errors import MLCoreError
from mlcore.mnist import load_mnist
from mlcore.model import LeNet5


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(compute, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert compute.resolve_precision("auto") == "bf16" and compute.describe()["native_bf16"]
    monkeypatch.setattr(compute, "cpu_flags", lambda: frozenset({"avx2"}))
    assert compute.resolve_precision("auto") == "fp32"
    assert compute.resolve_precision("bf16") == "bf16"
    with pytest.raises(MLCoreError, match="precision must be auto, fp32 or bf16, got 'fp16'"):
        compute.resolve_precision("fp16")


def test_vectors_keep_logical_order_whatever_the_memory_format():
    torch.manual_seed(3)
    model, plain = LeNet5().to(memory_format=torch.channels_last), LeNet5()
    vector = torch.randn(sum(p.numel() for p in plain.parameters()))
    compute.unflatten_into(vector, model.parameters())
    compute.unflatten_into(vector, plain.parameters())
    assert model.features[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(compute.flatten(model.parameters()), vector)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), plain(x), atol=1e-5)


def test_flatten_casts_to_fp32_and_unflatten_casts_back():
    ints, floats = torch.arange(4).reshape(2, 2), torch.ones(3, dtype=torch.float64)
    flat = compute.flatten([ints, floats])
    assert flat.dtype == torch.float32 and flat.tolist() == [0, 1, 2, 3, 1, 1, 1]
    into = [torch.empty(2, 2, dtype=torch.int64), torch.empty(3, dtype=torch.float64)]
    compute.unflatten_into(flat, into)
    assert torch.equal(into[0], ints) and torch.equal(into[1], floats)


def test_the_mean_sums_in_order_as_the_loops_always_did():
    # a compensated sum (math.fsum, Python 3.12's sum) would give 1/3 here
    assert compute.mean([1e16, 1.0, -1e16]) == 0.0
    assert compute.mean([2.0, 4.0], [1, 3]) == 3.5
    assert compute.mean([]) == 0.0


def test_sgd_steps_keep_fp32_weights_under_bf16_and_report_each_step():
    torch.manual_seed(0)
    model = LeNet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))) for _ in range(3)]
    sizes = []
    losses = compute.sgd_steps(
        model,
        optimizer,
        steps,
        precision="bf16",
        channels_last=True,
        penalty=lambda: torch.tensor(1.0),
        after_step=sizes.append,
    )
    assert len(losses) == 3 and all(loss > 1.0 for loss in losses) and sizes == [8, 8, 8]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_evaluate_counts_correct_answers(mnist_root, constant_model):
    images, labels = load_mnist(train=False, root=mnist_root)
    images, labels = images[:1000], labels[:1000]
    result = compute.evaluate(constant_model(3), images, labels, batch_size=128)
    assert result["n"] == 1000
    assert result["accuracy"] == pytest.approx((labels == 3).float().mean().item())
    assert compute.evaluate(constant_model(3), images[:0], labels[:0]) == {"accuracy": 0.0, "loss": 0.0, "n": 0}


def test_evaluation_in_channels_last_scores_the_same_weights_the_same(mnist_root):
    images, labels = load_mnist(train=False, root=mnist_root)
    torch.manual_seed(1)
    model = LeNet5()
    plain = compute.evaluate(model, images[:500], labels[:500])
    last = compute.evaluate(model, images[:500], labels[:500], channels_last=True)
    assert plain["accuracy"] == last["accuracy"] and plain["loss"] == pytest.approx(last["loss"], rel=1e-5)
