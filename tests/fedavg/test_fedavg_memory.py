"""A round's memory in the parent follows the executor's window, not the clients per round.

Each update is folded into the running average as it arrives and dropped, so the parent's
peak RSS over a round of 100 clients is that of a round of 10 (plus what an allocator keeps),
where holding every update cost 100 x the 2NN's 0.8 MB. The batched executor's window is its chunk of
clients, which its memory budget bounds. The peak is the kernel's high-water
mark (VmHWM), reset before each round through /proc/self/clear_refs.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from fedavg.core import ClientConfig, ClientTask, client_seed, fedavg, initial_state
from fedavg.executors.batched import BatchedExecutor
from fedavg.executors.process import ProcessExecutor
from fedavg.executors.serial import SerialExecutor
from fedavg.run import average_round

CONFIG = ClientConfig("2nn", epochs=1, batch_size=10, lr=0.05)
UPDATE_KB = 199_210 * 4 // 1024
BOUND_KB = 20 * UPDATE_KB  # 20 updates: far below the 90 more that m = 100 held over m = 10


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _peak_growth_kb(call):
    """(how far the RSS peak rose above the RSS before, what `call` returned)."""
    gc.collect()
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    result = call()
    return _status_kb("VmHWM") - before, result


def _tasks(m: int) -> list[ClientTask]:
    # 10 examples a client: one SGD step each, so 100 clients are a quick round
    return [ClientTask(k, 1, client_seed(3, 1, k), np.arange(10 * k, 10 * k + 10), CONFIG) for k in range(m)]


@pytest.fixture(params=["serial", "batched", "process"])
def executor(request, small_mnist):
    if request.param == "serial":
        made = SerialExecutor(small_mnist.train_images, small_mnist.train_labels, num_threads=1)
    elif request.param == "batched":  # chunks of 2 clients: its window, and what one lockstep chunk holds
        made = BatchedExecutor(small_mnist.train_images, small_mnist.train_labels, num_threads=1, memory_mb=8)
    else:
        made = ProcessExecutor(small_mnist.train_images, small_mnist.train_labels, workers=2)
    with made:
        yield made


def test_the_parents_round_peak_does_not_grow_with_the_clients_and_the_average_is_fedavgs(executor):
    # Prepare
    start = initial_state("2nn", 3)
    average_round(executor, _tasks(2), start)  # warm: models built, workers' first optimizer imported
    # Execute
    grew = {m: _peak_growth_kb(lambda m=m: average_round(executor, _tasks(m), start)) for m in (10, 100)}
    # Assert: the m = 100 round's peak is within a few updates of the m = 10 round's
    assert grew[100][0] - grew[10][0] < BOUND_KB, {m: kb for m, (kb, _) in grew.items()}
    outcomes, streamed, updated = grew[100][1]
    assert updated and len(outcomes) == 100 and all(o.state == {} for o in outcomes)
    expected = fedavg(executor.run_round(_tasks(100), start))  # the old path: every update held, then averaged
    assert list(streamed) == list(expected) and all(torch.equal(streamed[k], expected[k]) for k in expected)
