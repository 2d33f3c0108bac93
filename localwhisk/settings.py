"""What a platform is started with: one frozen dataclass from the CLI (or a job's LocalPlatform) to the server.

The server process receives it whole, as JSON (`python -m localwhisk.server --settings JSON`),
so a setting is named, defaulted and checked here once, not in every layer it crosses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from localwhisk.errors import BadRequest
from localwhisk.invoker.prewarm import DEFAULT_PREWARM
from localwhisk.invoker.prewarm import parse as parse_prewarm

DEFAULT_PORT = 3233
DEFAULT_S3_PORT = 3234
DEFAULT_MAX_CONTAINERS = 12
# OpenWhisk's concurrentInvocations throttle (its deployments default to 30): what a namespace may have accepted and
# not finished. Here it bounds the activations queued for the containers, so a flood is refused, never held in memory.
DEFAULT_CONCURRENT_INVOCATIONS = 1000
MAX_INT = 2**31 - 1  # OpenWhisk's limits are Ints
MODES = ("process", "docker")


@dataclass(frozen=True)
class Settings:
    """One platform's settings. `state_dir` is where it keeps everything; 0 for a port means any free one."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    s3_port: int = DEFAULT_S3_PORT
    max_containers: int = DEFAULT_MAX_CONTAINERS  # containers running at once
    idle_timeout_s: float = 600.0  # a warm container idle this long is removed
    blocking_timeout_s: float = 60.0  # a blocking invoke waits this long, then answers 202
    concurrent_invocations: int = DEFAULT_CONCURRENT_INVOCATIONS  # activations in flight per namespace, then 429
    max_unpacked_mb: int = 512  # what an action's zip may unpack to
    prewarm: str = DEFAULT_PREWARM  # stem cells: KIND@MBxN,... or none
    containers: str = "process"  # process | docker
    owner_pid: int | None = None  # stop when this process ends (a platform owned by a job)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        for name in ("port", "s3_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise BadRequest(f"{name} must be between 0 and 65535: {getattr(self, name)}")
        if not 1 <= self.max_containers <= 256:
            raise BadRequest(f"max_containers must be between 1 and 256: {self.max_containers}")
        if not 1 <= self.concurrent_invocations <= MAX_INT:
            raise BadRequest(f"concurrent_invocations must be between 1 and {MAX_INT}: {self.concurrent_invocations}")
        for name in ("idle_timeout_s", "blocking_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise BadRequest(f"{name} must be a positive number of seconds: {value}")
        if not 1 <= self.max_unpacked_mb <= 65536:
            raise BadRequest(f"max_unpacked_mb must be between 1 and 65536: {self.max_unpacked_mb}")
        if self.containers not in MODES:
            raise BadRequest(f"containers must be one of {', '.join(MODES)}: {self.containers!r}")
        try:
            parse_prewarm(self.prewarm)
        except ValueError as exc:
            raise BadRequest(f"prewarm: {exc}") from exc

    def but(self, **changes) -> Settings:
        """A copy with some settings changed (and checked again)."""
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Raises BadRequest for JSON that is not an object of known settings."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise BadRequest(f"settings are not JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        if not isinstance(doc, dict) or not doc.keys() <= known or "state_dir" not in doc:
            raise BadRequest(f"settings must be an object with state_dir and some of {', '.join(sorted(known))}")
        return cls(**doc)
