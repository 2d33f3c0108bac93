"""The arithmetic every trainer here shares: precision, flat parameter vectors, SGD steps and evaluation.

`deployer model train`, FedAvg's ClientUpdate and the serverless training workers all step
their models with `sgd_steps` and score them with `evaluate`, so precision and memory
layout are decided once for the three.

bf16 autocast (fp32 master weights, bf16 matmuls and convolutions) with channels-last memory
is about twice as fast per SGD step on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere
oneDNN emulates bf16 and it is slower than fp32, so "auto" picks it only where the CPU flags
say it is native. The choice is part of a run's configuration, never decided silently per
machine inside a run.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .errors import MLCoreError
from .model import model_input

PRECISIONS = ("fp32", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str) -> str:
    """'auto' becomes bf16 where the CPU has native bf16, else fp32; explicit choices pass through.

    Raises:
        MLCoreError: not auto, fp32 or bf16.
    """
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise MLCoreError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
    return precision


def describe() -> dict:
    """What reports record about the arithmetic available here."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "native_bf16": native_bf16(),
        "bf16_flags": sorted(f for f in NATIVE_BF16_FLAGS if f in cpu_flags()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def flatten(tensors: Iterable[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """One fp32 vector in logical order, whatever the tensors' memory format (channels-last included).

    `out`, when given, receives it (a slot of a shared buffer) without a vector in between.
    """
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors], out=out)


def unflatten_into(vector: torch.Tensor, tensors: Iterable[torch.Tensor]) -> None:
    """Copies `vector` into `tensors` in place, in order, keeping their memory format and dtype."""
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(vector[offset : offset + t.numel()].view(t.shape))
            offset += t.numel()


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Index tensors covering range(n) in batches; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def batch_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32", channels_last: bool = False
) -> torch.Tensor:
    """Mean cross-entropy of one batch; under "bf16" autocast computes the layers in bf16, the loss stays fp32."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return nn.functional.cross_entropy(model(x.contiguous(memory_format=memory_format(channels_last))), y)


def sgd_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    penalty: Callable[[], torch.Tensor] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> list[float]:
    """One optimizer step per (normalised input, labels) of `steps`; returns each step's loss.

    The weights, gradients and optimizer stay fp32 under bf16, so what a caller averages or
    stores is the same for both precisions. `penalty()` is added to every loss in fp32
    (FedProx's proximal term); `after_step(batch size)` runs after each step (a scheduler,
    progress). `steps` is read lazily, so it may set the rate of the step it yields.
    """
    model.to(memory_format=memory_format(channels_last))
    model.train()
    losses = []
    for x, y in steps:
        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss(model, x, y, precision, channels_last)
        if penalty is not None:
            loss = loss + penalty()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(len(y))
    return losses


def mean(values: Sequence[float], weights: Sequence[int] | None = None) -> float:
    """The (weighted) mean, summed in order, so it is the same float on every Python (3.12's sum() compensates)."""
    total, count = 0.0, 0
    for i, value in enumerate(values):
        weight = 1 if weights is None else weights[i]
        total += value * weight
        count += weight
    return total / max(count, 1)


def prepare_inputs(
    images_uint8: torch.Tensor, channels_last: bool = False, pixels: str = "standardized"
) -> torch.Tensor:
    """uint8 images [N,28,28] as the float model input `evaluate_inputs` takes, made once for many evaluations."""
    return model_input(images_uint8, pixels).contiguous(memory_format=memory_format(channels_last))


def evaluate_inputs(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000, channels_last: bool = False
) -> dict:
    """`evaluate` on inputs from `prepare_inputs`: a round loop scores the same test set every round.

    The batches are `evaluate`'s, so the loss is summed in the same order and both give the same floats.
    The layout changes before inference mode, which would make the parameters inference tensors.
    """
    model.to(memory_format=memory_format(channels_last))
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            y = labels[start : start + batch_size]
            logits = model(inputs[start : start + batch_size])
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    n = len(labels)
    return {"accuracy": correct / n if n else 0.0, "loss": loss_sum / n if n else 0.0, "n": n}


def evaluate(
    model: nn.Module,
    images_uint8: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 1000,
    channels_last: bool = False,
) -> dict:
    """{"accuracy", "loss" (mean cross-entropy), "n"} of `model` on uint8 images [N,28,28] and int64 labels [N].

    Always fp32, whatever the model trained in, so the accuracy is that of its weights;
    channels-last only changes the memory layout (1.6x faster on a CPU with AVX-512).
    """
    return evaluate_inputs(model, prepare_inputs(images_uint8, channels_last), labels, batch_size, channels_last)
