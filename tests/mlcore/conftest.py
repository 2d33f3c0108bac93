"""What the mlcore tests share."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class ConstantModel(nn.Module):
    """Always answers `digit`: its accuracy is the share of that digit in the labels."""

    def __init__(self, digit: int) -> None:
        super().__init__()
        self.digit = digit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10)
        logits[:, self.digit] = 5.0
        return logits


@pytest.fixture
def constant_model():
    """constant_model(digit) -> a model that answers `digit` for every image."""
    return ConstantModel
