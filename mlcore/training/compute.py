"""The arithmetic of training, shared by the workers and the single-process baseline.

One `Trainer` holds a LeNet-5, its data and the precision it computes in, and does either
half of a round: the gradient of one batch (sync) or K SGD steps (local). Parameters go in
and out as one flat fp32 vector, which is what travels through storage.

bf16 autocast keeps fp32 master weights; with channels-last memory it made a LeNet-5 step
1.6-2x faster than fp32 on this machine's AVX-512 bf16 CPU. Where the CPU lacks bf16,
autocast would be emulated and slower, so `auto` falls back to fp32.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from ..model import LeNet5, normalize
from . import data
from .job import JobConfig


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(requested: str) -> str:
    if requested == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return requested


def flatten(tensors) -> torch.Tensor:
    """One fp32 vector in logical order, whatever the tensors' memory format (channels-last included)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def unflatten_into(vector: torch.Tensor, tensors) -> None:
    """Copies `vector` into `tensors` in place, keeping their memory format."""
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(vector[offset : offset + t.numel()].view(t.shape))
            offset += t.numel()


def initial_vector(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return flatten(LeNet5().parameters())


def model_from_vector(vector: torch.Tensor) -> nn.Module:
    model = LeNet5()
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
        self.model = LeNet5()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = list(self.model.parameters())
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(
            self.params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self, batch_index: int):
        idx = data.batch_indices(self.config, self.worker, batch_index, self.size)
        x = normalize(self.images[idx])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]

    def _loss(self, batch_index: int) -> torch.Tensor:
        x, y = self._batch(batch_index)
        with self._autocast():
            return self.loss_fn(self.model(x), y)

    def load(self, vector: torch.Tensor) -> None:
        unflatten_into(vector, self.params)

    def vector(self) -> torch.Tensor:
        return flatten(self.params)

    def gradient(self, vector: torch.Tensor, batch_index: int) -> tuple[torch.Tensor, float]:
        """The mean gradient of one batch at `vector`: a sync worker's update."""
        self.load(vector)
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        loss = self._loss(batch_index)
        loss.backward()
        return flatten(p.grad for p in self.params), loss.item()

    def local_steps(self, vector: torch.Tensor, first_batch: int, steps: int) -> tuple[torch.Tensor, float]:
        """`steps` SGD steps from `vector`; returns the model delta and the mean loss (a local worker's update).

        The momentum buffers stay with this trainer across rounds, as in local SGD.
        """
        self.load(vector)
        self.model.train()
        losses = []
        for k in range(steps):
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr_at(first_batch + k, self.size)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(first_batch + k)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        return self.vector() - vector, sum(losses) / len(losses)

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


def evaluate_vector(vector: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Test accuracy and loss of a flat parameter vector (the single-process `evaluate`, reused)."""
    from ..train import evaluate

    return evaluate(model_from_vector(vector), images, labels)
