"""Stem-cell containers: started ahead of need per kind (its image) and memory size, as OpenWhisk's prewarm pool.

A cold start that finds a stem cell of its image, runtime, module set and memory pays only for
/init; the invoker refills the pool in the background when nothing is waiting for a slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from localwhisk.entities import kinds

DEFAULT_PREWARM = "python:3.11@256x2,nodejs:20@256x1,deployer/action-python-ml@1024x1"
_SPEC = re.compile(r"^(?P<what>[^@]+)@(?P<mb>\d+)x(?P<n>\d+)$")


@dataclass(frozen=True)
class StemSpec:
    runtime: str
    deny: str
    memory_mb: int
    count: int
    label: str
    image: str  # what docker mode runs it in: a stem cell serves the actions of that image and module set


def parse(text: str) -> list[StemSpec]:
    """`KIND@MBxN[,...]` (a kind such as python:3.11, or the project's image name), or `none`.

    Raises ValueError with the offending part.
    """
    if text.strip().lower() in ("", "none", "0"):
        return []
    specs = []
    for part in (p.strip() for p in text.split(",")):
        match = _SPEC.match(part)
        if not match:
            raise ValueError(f"prewarm {part!r}: expected KIND@MEMORY_MBxCOUNT, e.g. python:3.11@256x2")
        what = match["what"]
        if "/" in what:
            exec_ = {"kind": "blackbox", "image": what}
        else:
            try:
                exec_ = {"kind": kinds.resolve(what)}
            except Exception as exc:
                raise ValueError(f"prewarm {part!r}: {exc}") from exc
        runtime, deny = kinds.container_profile(exec_)
        specs.append(StemSpec(runtime, deny, int(match["mb"]), int(match["n"]), part, kinds.image(exec_)))
    return specs
