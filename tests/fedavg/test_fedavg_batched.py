"""The batched executor against the serial reference: every client's state and loss, failures, refusals, the CLI.

Lockstep SGD sums its matrix products in another order than one client at a time, so
states agree to float rounding (TOLERANCE), not bit for bit. Where a client's training passes
within rounding of a kink (a ReLU input or a max-pool runner-up a few ulps away), the two orders
may take different branches and the states part by a step's size in the units behind it; a
generated round that parts is accepted only when the serial run shows such a kink (KINK).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.cli import cli
from fedavg.core import (
    ClientConfig,
    ClientFailure,
    ClientResult,
    ClientTask,
    client_seed,
    initial_state,
    run_task,
)
from fedavg.errors import FedAvgError
from fedavg.executors import EXECUTORS, make_factory
from fedavg.executors.batched import BatchedExecutor
from fedavg.executors.serial import SerialExecutor
from fedavg.models import MODELS, build_model
from fedavg.partition import make_partition
from fedavg.run import RunConfig, run

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
KINK = 1e-6


def _tasks(parts, config: ClientConfig, seed: int = 5) -> list[ClientTask]:
    return [ClientTask(k, 1, client_seed(seed, 1, k), part, config) for k, part in enumerate(parts)]


def _distance(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _close(a: dict, b: dict) -> bool:
    return all(torch.allclose(b[k], a[k], **TOLERANCE) for k in a)


def _kink_margin(data, task: ClientTask, global_state) -> float:
    """How close the client's serial training came to a branch: the smallest ReLU input or max-pool top-two gap."""
    margins = [math.inf]

    def relu(module, inputs, output):
        margins.append(float(inputs[0].detach().abs().min()))

    def pool(module, inputs, output):
        x = inputs[0].detach()
        windows = x.unfold(2, module.kernel_size, module.stride).unfold(3, module.kernel_size, module.stride)
        top2 = windows.flatten(-2).topk(2, dim=-1).values
        positive = top2[..., 0] > 0
        if positive.any():
            margins.append(float((top2[..., 0] - top2[..., 1])[positive].min()))

    model = build_model(task.config.model)
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.register_forward_hook(relu)
        elif isinstance(module, torch.nn.MaxPool2d):
            module.register_forward_hook(pool)
    run_task(task, model, global_state, data.train_images, data.train_labels)
    return min(margins)


def _assert_same_outcomes(expected, got) -> None:
    assert [o.client_id for o in got] == [o.client_id for o in expected]
    for want, have in zip(expected, got):
        assert type(have) is type(want), (want, have)
        if isinstance(want, ClientFailure):
            assert have.error == want.error
            continue
        assert have.num_examples == want.num_examples
        assert have.train_loss == pytest.approx(want.train_loss, rel=1e-5)
        assert list(have.state) == list(want.state)
        for key in want.state:
            torch.testing.assert_close(
                have.state[key], want.state[key], **TOLERANCE, msg=f"client {want.client_id} {key}"
            )


def _both(data, tasks, global_state, **batched_options):
    with SerialExecutor(data.train_images, data.train_labels) as serial:
        expected = serial.run_round(tasks, global_state)
    with BatchedExecutor(data.train_images, data.train_labels, **batched_options) as batched:
        got = batched.run_round(tasks, global_state)
    return expected, got


@pytest.mark.parametrize("model", ["2nn", "cnn"])
@pytest.mark.parametrize("batch_size", [10, None], ids=["B10", "Binf"])
@pytest.mark.parametrize("kind", ["iid", "shards"])
def test_every_clients_state_and_loss_match_the_serial_executors(small_mnist, model, batch_size, kind):
    # Prepare: 4 of 8 clients on 400 examples; two trimmed so that one shares the others' steps
    # with a short last batch (padded) and one takes fewer steps (a group of its own)
    parts = make_partition(kind, small_mnist.train_labels[:400].numpy(), 8, seed=1)[:4]
    parts[1], parts[3] = parts[1][:43], parts[3][:27]
    config = ClientConfig(model, epochs=2, batch_size=batch_size, lr=0.05)
    # Execute
    expected, got = _both(small_mnist, _tasks(parts, config), initial_state(model, 2))
    # Assert
    assert all(isinstance(o, ClientResult) for o in got)
    _assert_same_outcomes(expected, got)


@settings(max_examples=12, deadline=None)
@given(
    model=st.sampled_from(["2nn", "lenet5"]),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    epochs=st.integers(1, 2),
    batch_size=st.sampled_from([None, 1, 3, 10, 64]),
    lr=st.sampled_from([0.01, 0.1]),
    mu=st.sampled_from([0.0, 0.5]),
    channels_last=st.booleans(),
    max_clients=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_small_random_rounds_match_the_serial_executor(
    small_mnist, model, sizes, epochs, batch_size, lr, mu, channels_last, max_clients, seed
):
    # Prepare: disjoint slices of the training set, any sizes, chunks as small as one client
    starts = np.cumsum([0, *sizes])
    parts = [np.arange(a, b, dtype=np.int64) for a, b in zip(starts[:-1], starts[1:])]
    tasks = _tasks(parts, ClientConfig(model, epochs, batch_size, lr, mu, channels_last=channels_last), seed)
    start = initial_state(model, seed)
    # Execute
    expected, got = _both(small_mnist, tasks, start, max_clients=max_clients)
    # Assert: the same outcomes, or a client's states part only where its training met a kink
    try:
        _assert_same_outcomes(expected, got)
    except AssertionError:
        parted = [
            t
            for t, want, have in zip(tasks, expected, got)
            if isinstance(want, ClientResult) and isinstance(have, ClientResult) and not _close(want.state, have.state)
        ]
        assert parted and all(_kink_margin(small_mnist, t, start) < KINK for t in parted)
        for want, have in zip(expected, got):
            assert type(have) is type(want) and have.num_examples == want.num_examples
            assert have.train_loss == pytest.approx(want.train_loss, rel=1e-4)
            assert _distance(want.state, have.state) < lr


def test_a_client_whose_training_meets_a_relu_kink_is_told_apart_from_one_that_does_not(small_mnist):
    # Prepare: a generated round whose second client passes a hidden unit 4e-8 from zero in its
    # second step, so the batched and serial summation orders may take different branches there
    config = ClientConfig("2nn", epochs=2, batch_size=None, lr=0.1)
    tasks = _tasks([np.arange(0, 29), np.arange(29, 55)], config, seed=32446)
    start = initial_state("2nn", 32446)
    # Execute
    margins = [_kink_margin(small_mnist, t, start) for t in tasks]
    # Assert
    assert margins[1] < KINK / 10 and margins[0] > 10 * margins[1]


def test_failing_clients_come_back_as_failures_in_task_order_and_the_others_still_match(small_mnist):
    # Prepare: client 1 has no examples, client 3 an index outside the training set
    parts = [np.arange(0, 30), np.array([], dtype=np.int64), np.arange(30, 60), np.array([5, -1]), np.arange(60, 90)]
    tasks = _tasks(parts, ClientConfig("2nn", epochs=1, batch_size=10, lr=0.05))
    # Execute
    expected, got = _both(small_mnist, tasks, initial_state("2nn", 0), max_clients=2)
    # Assert
    assert [type(o).__name__ for o in got] == ["ClientResult", "ClientFailure"] * 2 + ["ClientResult"]
    assert "no examples" in got[1].error and "outside" in got[3].error
    _assert_same_outcomes(expected, got)


def test_channels_last_is_a_layout_and_gives_the_serial_clients_floats(small_mnist):
    parts = [np.arange(0, 40), np.arange(40, 77)]
    config = ClientConfig("cnn", epochs=1, batch_size=10, lr=0.05, channels_last=True)
    expected, got = _both(small_mnist, _tasks(parts, config), initial_state("cnn", 4))
    _assert_same_outcomes(expected, got)


def test_bf16_is_the_serial_clients_autocast_as_close_as_bf16_comes_to_fp32(small_mnist):
    # Prepare: a bf16 product rounds to 8 bits, so the two executors' bf16 states part by about
    # what bf16 and fp32 part by; fp32 in the batched executor is the control
    parts = [np.arange(0, 30), np.arange(30, 60), np.arange(60, 87)]
    start = initial_state("2nn", 6)
    bf16 = _tasks(parts, ClientConfig("2nn", epochs=1, batch_size=10, lr=0.05, precision="bf16"))
    fp32 = _tasks(parts, ClientConfig("2nn", epochs=1, batch_size=10, lr=0.05))
    # Execute
    serial_bf16, batched_bf16 = _both(small_mnist, bf16, start)
    serial_fp32, batched_fp32 = _both(small_mnist, fp32, start)
    # Assert: bf16 really ran (not fp32), and sits within the bf16-to-fp32 distance of the serial bf16 state
    for sb, bb, sf, bf in zip(serial_bf16, batched_bf16, serial_fp32, batched_fp32):
        envelope = _distance(sb.state, sf.state)
        assert _distance(bb.state, bf.state) > 10 * _distance(bf.state, sf.state)
        assert _distance(bb.state, sb.state) < 2 * envelope
        assert bb.train_loss == pytest.approx(sb.train_loss, abs=1e-3)


class _Normed(torch.nn.Module):
    """A model with batch norm, whose running statistics are buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.BatchNorm1d(10))

    def forward(self, x):
        return self.layers(x)


def test_a_model_with_buffers_is_refused_by_name_before_any_step(small_mnist, monkeypatch):
    monkeypatch.setitem(MODELS, "normed", _Normed)
    with BatchedExecutor(small_mnist.train_images, small_mnist.train_labels) as batched:
        with pytest.raises(FedAvgError, match="model 'normed' has buffers .*running_mean"):
            batched.run_round(_tasks([np.arange(20)], ClientConfig("normed", 1, 10, 0.05)), {})


def test_a_run_on_the_batched_executor_reaches_the_serial_runs_weights(small_mnist):
    # Prepare: registered where the CLI and the tables choose executors
    assert "batched" in EXECUTORS
    config = RunConfig(model="2nn", clients=8, frac=0.5, epochs=1, batch_size=10, lr=0.05, partition="shards", rounds=2)
    # Execute
    with make_factory("serial", small_mnist, workers=1, threads=1)() as serial:
        expected, expected_state = run(config, serial, small_mnist)
    with make_factory("batched", small_mnist, workers=1, threads=1)() as batched:
        got, got_state = run(config, batched, small_mnist)
    # Assert
    assert got["executor"] == "batched"
    assert [r["test_acc"] for r in got["rounds"]] == pytest.approx(
        [r["test_acc"] for r in expected["rounds"]], abs=2e-3
    )
    for key in expected_state:
        torch.testing.assert_close(got_state[key], expected_state[key], **TOLERANCE)


def test_the_cli_runs_the_batched_executor(tmp_path, mnist_root):
    tiny = ["fedavg", "run", "--model", "2nn", "--clients", "4", "--frac", "0.5", "--epochs", "1", "--batch", "10"]
    tiny += ["--train-limit", "400", "--test-limit", "200", "--rounds", "1", "--executor", "batched"]
    ran = CliRunner().invoke(cli, [*tiny, "--checkpoint-dir", str(tmp_path / "ok"), "--json", str(tmp_path / "r.json")])
    assert ran.exit_code == 0, ran.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["executor"] == "batched" and report["rounds_done"] == 1 and report["failed_clients"] == 0
