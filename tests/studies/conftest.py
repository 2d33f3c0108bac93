"""What the FedAvg studies' tests share with tests/fedavg: one torch thread, so results compare exactly."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """Torch on one thread, as the executors' workers run it; the studies that train use it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
