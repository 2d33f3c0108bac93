"""A worker's model, data and optimizer, and the flat vectors that travel between workers.

One `Trainer` holds the job's model (LeNet-5 or a wider one), its shard of the data and the
precision it computes in, and does either half of a round: the gradient of one batch (sync)
or K SGD steps (local), both through mlcore.compute, the steps FedAvg and `model train` take
too. Parameters go in and out as one flat fp32 vector, which is what travels through storage.
"""

from __future__ import annotations

import torch
from torch import nn

from ..compute import batch_loss, flatten, mean, memory_format, resolve_precision, sgd_steps, unflatten_into
from ..model import build_model, normalize
from . import data
from .job import JobConfig, TrainingError


def initial_vector(seed: int, name: str = "lenet5") -> torch.Tensor:
    torch.manual_seed(seed)
    return flatten(build_model(name).parameters())


def model_from_vector(vector: torch.Tensor, name: str = "lenet5") -> nn.Module:
    """Raises MLCoreError for an unknown model name, TrainingError for a vector of another model's size."""
    model = build_model(name)
    size = sum(p.numel() for p in model.parameters())
    if vector.numel() != size:
        raise TrainingError(f"a vector of {vector.numel()} parameters is not a {name} ({size} parameters)")
    unflatten_into(vector, model.parameters())
    return model


class FlatSGD:
    """torch.optim.SGD (momentum, Nesterov, weight decay) on flat vectors.

    The sync workers each apply the averaged gradient themselves; doing it on the flat vector
    with a flat momentum buffer makes that one fused pass, and the buffer is the whole
    optimizer state a checkpoint needs.
    """

    def __init__(self, config: JobConfig, momentum_buffer: torch.Tensor | None = None) -> None:
        self.momentum, self.weight_decay = config.momentum, config.weight_decay
        self.nesterov = config.nesterov and config.momentum > 0
        self.buffer = momentum_buffer

    def step(self, params: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        g = grad + self.weight_decay * params if self.weight_decay else grad.clone()
        if self.momentum:
            self.buffer = g.clone() if self.buffer is None else self.buffer.mul_(self.momentum).add_(g)
            g = g.add(self.buffer, alpha=self.momentum) if self.nesterov else self.buffer
        return params - lr * g


class Trainer:
    """One worker's (or the baseline's) model, data and precision."""

    def __init__(
        self, config: JobConfig, worker: int, images: torch.Tensor, labels: torch.Tensor, train_size: int
    ) -> None:
        self.config, self.worker, self.size = config, worker, train_size
        self.images, self.labels = images, labels
        self.precision = resolve_precision(config.precision)
        self.channels_last = config.channels_last
        self.model = build_model(config.model).to(memory_format=memory_format(self.channels_last))
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.SGD(
            self.params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )

    def _batch(self, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = data.batch_indices(self.config, self.worker, batch_index, self.size)
        return normalize(self.images[idx]), self.labels[idx]

    def _scheduled(self, first_batch: int, steps: int):
        """The batches of `steps` steps, each setting its learning rate as it is taken."""
        for batch_index in range(first_batch, first_batch + steps):
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr_at(batch_index, self.size)
            yield self._batch(batch_index)

    def load(self, vector: torch.Tensor) -> None:
        unflatten_into(vector, self.params)

    def vector(self) -> torch.Tensor:
        return flatten(self.params)

    def gradient(self, vector: torch.Tensor, batch_index: int) -> tuple[torch.Tensor, float]:
        """The mean gradient of one batch at `vector`: a sync worker's update."""
        self.load(vector)
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        loss = batch_loss(self.model, *self._batch(batch_index), self.precision, self.channels_last)
        loss.backward()
        return flatten(p.grad for p in self.params), loss.item()

    def local_steps(self, vector: torch.Tensor, first_batch: int, steps: int) -> tuple[torch.Tensor, float]:
        """`steps` SGD steps from `vector`; returns the model delta and the mean loss (a local worker's update).

        The momentum buffers stay with this trainer across rounds, as in local SGD.
        """
        self.load(vector)
        losses = sgd_steps(
            self.model,
            self.optimizer,
            self._scheduled(first_batch, steps),
            precision=self.precision,
            channels_last=self.channels_last,
        )
        return self.vector() - vector, mean(losses)

    def momentum_vector(self) -> torch.Tensor | None:
        buffers = [self.optimizer.state.get(p, {}).get("momentum_buffer") for p in self.params]
        if any(b is None for b in buffers):
            return None
        return flatten(buffers)

    def set_momentum(self, vector: torch.Tensor | None) -> None:
        if vector is None:
            return
        buffers = [torch.empty_like(p) for p in self.params]
        unflatten_into(vector, buffers)
        for p, buffer in zip(self.params, buffers):
            self.optimizer.state[p]["momentum_buffer"] = buffer
