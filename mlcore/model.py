"""LeNet-5 for 28x28 MNIST digits, the one model shared by inference, training and FedAvg."""

from __future__ import annotations

import torch
from torch import nn

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class LeNet5(nn.Module):
    """LeCun et al. 1998 with ReLU and max-pooling; 61,706 parameters.

    The 28x28 input is padded to 32x32 by the first convolution, as in the paper's
    32x32 input, so C3/C5 keep their original sizes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [N,28,28] -> float [N,1,28,28] in 0..1: the form augmentation works on."""
    return images_uint8.to(torch.float32).div_(255.0).unsqueeze(1)


def standardize(x_unit: torch.Tensor) -> torch.Tensor:
    """float in 0..1 -> zero mean, unit variance over MNIST's training pixels (in place)."""
    return x_unit.sub_(MNIST_MEAN).div_(MNIST_STD)


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [N,28,28] -> float [N,1,28,28] normalised exactly as in training."""
    return standardize(to_unit(images_uint8))
