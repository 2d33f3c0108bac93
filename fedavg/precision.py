"""Which arithmetic a client update uses, and whether this CPU runs it natively.

bf16 autocast (fp32 master weights, bf16 matmuls and convolutions) with channels-last
memory is about twice as fast per SGD step on CPUs with native bf16 (AVX512-BF16 or AMX);
elsewhere oneDNN emulates bf16 and it is slower than fp32, so "auto" only picks it
where the flags say it is native. The choice is part of a run's configuration (and of
its id), never decided silently per machine inside a run.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

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


def resolve(precision: str) -> str:
    """'auto' becomes bf16 where the CPU has native bf16, else fp32; explicit choices pass through.

    Raises:
        ValueError: not auto, fp32 or bf16.
    """
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
    return precision


def describe() -> dict:
    """What the reports record about the arithmetic available here."""
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "native_bf16": native_bf16(),
        "bf16_flags": sorted(f for f in NATIVE_BF16_FLAGS if f in cpu_flags()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
