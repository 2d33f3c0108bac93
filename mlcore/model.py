"""LeNet-5 for 28x28 MNIST digits, the one model shared by inference, training and FedAvg, and its wider kin.

`bench train` sweeps model size: `lenet5x4` is LeNet-5 with every layer four times as wide,
16x the parameters (so 16x the bytes per update) for about 5x the compute per step, the
regime where moving the update, not computing it, sets a distributed step's time.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import MLCoreError

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class LeNet5(nn.Module):
    """LeCun et al. 1998 with ReLU and max-pooling; 61,706 parameters (972,554 with `width=4`).

    The 28x28 input is padded to 32x32 by the first convolution, as in the paper's
    32x32 input, so C3/C5 keep their original sizes. `width` multiplies every layer's
    channels or units; the layer names stay, so each width's state dict has the same keys.
    """

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        c1, c3, f5, f6 = 6 * width, 16 * width, 120 * width, 84 * width
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c3, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * 5 * 5, f5),
            nn.ReLU(),
            nn.Linear(f5, f6),
            nn.ReLU(),
            nn.Linear(f6, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# name -> LeNet-5 width; a training job names its model (JobConfig.model)
MODELS = {"lenet5": 1, "lenet5x4": 4}


def build_model(name: str = "lenet5") -> LeNet5:
    """A fresh model of that name; its initial weights come from torch's global RNG.

    Raises:
        MLCoreError: not one of MODELS.
    """
    if name not in MODELS:
        raise MLCoreError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return LeNet5(MODELS[name])


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


PIXELS = ("standardized", "unit")


def model_input(images_uint8: torch.Tensor, pixels: str = "standardized") -> torch.Tensor:
    """uint8 [N,28,28] -> float [N,1,28,28], standardised (the project's models) or in 0..1.

    The FedAvg paper does not say how it scaled pixels, and the choice moves its rounds to a
    target about twofold, so its tables can be run either way.
    """
    if pixels not in PIXELS:
        raise MLCoreError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")
    return normalize(images_uint8) if pixels == "standardized" else to_unit(images_uint8)
