"""A slot's state in storage: checkpoints, hand-offs and published weights, and where a replacement starts.

All of them are one blob in the weights format (mlcore.weights): the flat model, the sync
momentum where there is one, and a header saying where the job stands (round, batch, K),
so a damaged one is refused by its digest and named by its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import weights
from ..errors import DamagedError, ObjectNotFoundError
from .job import JobConfig, JobLayout, TrainingError

SCRATCH_FOLDERS = ("updates/", "rounds/", "reduced/", "weights/")  # what a replay can recompute


@dataclass
class StartPoint:
    round: int
    batch: int
    k: int
    vector: torch.Tensor
    momentum: torch.Tensor | None
    source: str
    refused: list[str] = field(default_factory=list)  # damaged checkpoints or hand-offs passed over


def state_blob(vector: torch.Tensor, momentum: torch.Tensor | None, header: dict) -> bytes:
    """A checkpoint or hand-off: the model (and momentum) and where it stands, in the weights format."""
    tensors = {"params": vector} if momentum is None else {"params": vector, "momentum": momentum}
    return weights.encode(tensors, header)


def split_state(blob: bytes, where: str = "a stored state") -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """(header, vector, momentum or None). Raises DamagedError naming `where` (the key) for bytes that are not whole."""
    tensors, header = weights.decode(blob, where)
    vector, momentum = tensors.get("params"), tensors.get("momentum")
    if not isinstance(vector, torch.Tensor) or not (momentum is None or _same_shape(momentum, vector)):
        raise DamagedError(f"{where} is damaged: it holds no model state")
    return header, vector, momentum


def _same_shape(momentum, vector: torch.Tensor) -> bool:
    return isinstance(momentum, torch.Tensor) and momentum.shape == vector.shape


def read_state(storage, key: str) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """split_state of a stored checkpoint or hand-off. Raises ObjectNotFoundError, or DamagedError naming the key."""
    return split_state(storage.get_bytes(key), key)


def newest_checkpoint(storage, layout: JobLayout) -> tuple[tuple[dict, torch.Tensor, torch.Tensor | None], list[str]]:
    """(the newest whole checkpoint, one line per damaged newer one passed over).

    Every stored checkpoint is a candidate, newest first: the pointer only says which one was
    written last, and a damaged one must not end the job while an older one can be replayed from.

    Raises:
        TrainingError: no checkpoint is whole (naming each), or there is none.
    """
    refused = []
    rounds = sorted({layout.round_of(key) for key in storage.list_keys(layout.prefix + "checkpoints/")}, reverse=True)
    for number in rounds:
        try:
            return read_state(storage, layout.checkpoint(number)), refused
        except ObjectNotFoundError:
            continue  # pruned since the listing
        except DamagedError as exc:
            refused.append(str(exc))
    if refused:
        raise TrainingError(f"job {layout.job} has no whole checkpoint to start from: {'; '.join(refused)}")
    raise TrainingError(f"job {layout.job} has no checkpoint to start from; create it first")


def start_point(storage, config: JobConfig, slot: int | str) -> StartPoint:
    """Where a worker or the PS begins: its predecessor's hand-off, else the newest whole checkpoint (round 0 first)."""
    layout = JobLayout(config.job)
    (header, vector, momentum), refused = newest_checkpoint(storage, layout)
    # the sync optimizer state is shared; a local worker's own momentum is not in a checkpoint
    candidates = [
        StartPoint(
            header["round"],
            header["batch"],
            header["k"],
            vector,
            momentum if config.mode == "sync" else None,
            "checkpoint",
            refused,
        )
    ]
    try:
        header, vector, momentum = read_state(storage, layout.handoff(slot))
        candidates.append(
            StartPoint(header["round"], header["batch"], header["k"], vector, momentum, "handoff", refused)
        )
    except ObjectNotFoundError:
        pass
    except DamagedError as exc:
        refused.append(str(exc))
    return max(candidates, key=lambda c: (c.round, c.source == "handoff"))


def delete_scratch(storage, layout: JobLayout, before: int | None = None) -> int:
    """Deletes what replays recompute (updates, shards, published weights, decisions) of rounds before `before`,
    or all of it (`before` None: a finished job replays nothing); returns how many objects went.

    A job keeps its last two checkpoint intervals of exchanges while it runs, gigabytes for a wide model;
    left behind, every finished job would keep them in the bucket for good.
    """
    stale = [
        key
        for prefix in SCRATCH_FOLDERS
        for key in storage.list_keys(layout.prefix + prefix)
        if before is None or layout.round_of(key) < before
    ]
    storage.delete_keys(stale)
    return len(stale)
