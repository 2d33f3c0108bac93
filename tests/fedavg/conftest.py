"""A small real MNIST slice shared by the fedavg tests (loaded once per session)."""

from __future__ import annotations

import pytest
import torch

from fedavg.run import load_data


@pytest.fixture(scope="session")
def small_mnist(mnist_root):
    """The first 2,000 training and 1,000 test images of the real MNIST."""
    return load_data(train_limit=2000, test_limit=1000, root=mnist_root)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread, as the executors' workers do, so results compare exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
