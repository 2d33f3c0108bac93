"""ClientUpdates one after another in this process: the reference every other executor must match."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from mlcore.errors import MLCoreError

from ..core import ClientFailure, ClientResult, ClientTask, State, run_task
from ..errors import FedAvgError
from ..models import build_model
from . import Managed

# What a client's own computation can raise; anything else is a bug and should surface.
CLIENT_ERRORS = (FedAvgError, MLCoreError, RuntimeError, ValueError, IndexError, OSError)


class SerialExecutor(Managed):
    name = "serial"

    def __init__(self, images_uint8: torch.Tensor, labels: torch.Tensor, num_threads: int | None = None) -> None:
        """num_threads, when given, is what torch uses while a round runs (restored afterwards)."""
        self.images = images_uint8
        self.labels = labels
        self.num_threads = num_threads
        self._models: dict[str, torch.nn.Module] = {}
        self.eval_threads = num_threads

    def _model(self, name: str) -> torch.nn.Module:
        if name not in self._models:
            self._models[name] = build_model(name)
        return self._models[name]

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[ClientResult | ClientFailure]:
        before = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            for task in tasks:
                try:
                    outcome = run_task(task, self._model(task.config.model), global_state, self.images, self.labels)
                except CLIENT_ERRORS as exc:
                    outcome = ClientFailure(task.client_id, f"{type(exc).__name__}: {exc}")
                yield outcome
        finally:
            torch.set_num_threads(before)

    def close(self) -> None:
        self._models.clear()
