"""The models of the FedAvg paper (CNN, 2NN) and the project's LeNet-5, by name."""

from __future__ import annotations

from torch import nn

from mlcore.model import LeNet5, count_parameters

from .errors import FedAvgError

__all__ = ["CNN", "TwoNN", "LeNet5", "MODELS", "build_model", "count_parameters"]


class CNN(nn.Module):
    """The paper's MNIST CNN: 5x5 conv 32, pool, 5x5 conv 64, pool, fc 512, fc 10; 1,663,370 parameters.

    'same' padding keeps 28x28 before each pooling, which is what gives the paper's count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class TwoNN(nn.Module):
    """The paper's 2NN: two hidden layers of 200 ReLU units; 199,210 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 200),
            nn.ReLU(),
            nn.Linear(200, 200),
            nn.ReLU(),
            nn.Linear(200, 10),
        )

    def forward(self, x):
        return self.layers(x)


MODELS = {"cnn": CNN, "2nn": TwoNN, "lenet5": LeNet5}


def build_model(name: str) -> nn.Module:
    """A fresh model; initial weights come from torch's global RNG, so seed it first.

    Raises:
        FedAvgError: the name is not one of MODELS.
    """
    try:
        return MODELS[name]()
    except KeyError:
        raise FedAvgError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
