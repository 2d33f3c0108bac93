"""The FedAvg algorithm as plain functions over models and tensors (McMahan et al. 2017, Algorithm 1).

ClientUpdate is `client_update`, the server's weighted average is `fedavg`; FedSGD is
the special case of one epoch on the whole local set (batch_size=None), FedProx adds
mu/2 * ||w - w_global||^2 to the local loss. Nothing here knows where a client runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mlcore.compute import batches, mean, memory_format, sgd_steps
from mlcore.model import model_input

from .errors import AggregationError, ClientError
from .models import build_model

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ClientConfig:
    """What every client does in a round; batch_size None means the whole local set (B = inf)."""

    model: str = "cnn"
    epochs: int = 5
    batch_size: int | None = 10
    lr: float = 0.05
    mu: float = 0.0
    precision: str = "fp32"
    channels_last: bool = False
    pixels: str = "standardized"


@dataclass(frozen=True)
class ClientTask:
    """One ClientUpdate to run: which client, on which examples, with which seed."""

    client_id: int
    round_index: int
    seed: int
    indices: np.ndarray
    config: ClientConfig


@dataclass
class ClientResult:
    client_id: int
    state: State
    num_examples: int
    train_loss: float
    duration_s: float


@dataclass
class ClientFailure:
    """A client that did not return an update; the round goes on without it."""

    client_id: int
    error: str


@dataclass
class Update:
    """Anything with a state and a weight can be averaged."""

    state: State
    num_examples: int
    meta: dict = field(default_factory=dict)


def client_seed(seed: int, round_index: int, client_id: int) -> int:
    """A seed per (run, round, client), so results never depend on which executor ran first."""
    return int(np.random.SeedSequence([seed, round_index, client_id]).generate_state(1)[0])


def sample_clients(num_clients: int, frac: float, seed: int, round_index: int) -> list[int]:
    """m = max(C * K, 1) distinct clients for a round, reproducible from (seed, round)."""
    m = max(int(round(frac * num_clients)), 1)
    rng = np.random.default_rng([seed, round_index, 0xC11E])
    return sorted(int(k) for k in rng.choice(num_clients, size=min(m, num_clients), replace=False))


def client_update(
    model: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    config: ClientConfig,
    seed: int,
) -> tuple[State, float]:
    """E epochs of minibatch SGD from the global weights; returns (new state, mean training loss).

    `images` are already normalised float [n,1,28,28]. The steps are mlcore.compute's, so
    under bf16 the weights stay fp32 and averaging and checkpoints are the same for both
    precisions; the returned state is contiguous whatever layout the model trained in.

    Raises:
        ClientError: the client has no examples.
    """
    n = len(labels)
    if n == 0:
        raise ClientError("client has no examples")
    model.to(memory_format=memory_format(config.channels_last))  # before the anchor, which keeps this layout
    model.load_state_dict(global_state)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    penalty = _proximal_term(model, config.mu) if config.mu > 0 else None
    batch = n if not config.batch_size else min(config.batch_size, n)
    generator = torch.Generator().manual_seed(seed)
    steps = ((images[idx], labels[idx]) for _ in range(config.epochs) for idx in batches(n, batch, generator))
    losses = sgd_steps(
        model, optimizer, steps, precision=config.precision, channels_last=config.channels_last, penalty=penalty
    )
    state = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    return state, mean(losses)


def _proximal_term(model: nn.Module, mu: float):
    """FedProx's mu/2 * ||w - w_global||^2, with w_global the weights the client started from."""
    anchor = [p.detach().clone() for p in model.parameters()]
    return lambda: mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))


def run_task(
    task: ClientTask,
    model: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    images_uint8: torch.Tensor,
    labels: torch.Tensor,
) -> ClientResult:
    """One ClientUpdate on the task's slice of the raw training set (the same code in every executor)."""
    started = time.perf_counter()
    idx = torch.as_tensor(np.asarray(task.indices, dtype=np.int64))
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(labels)):
        raise ClientError(f"client {task.client_id}: indices outside the {len(labels)} training examples")
    inputs = model_input(images_uint8[idx], task.config.pixels)
    state, loss = client_update(model, global_state, inputs, labels[idx], task.config, task.seed)
    return ClientResult(task.client_id, state, len(idx), loss, time.perf_counter() - started)


class RunningAverage:
    """`fedavg`'s floats, one update at a time: a round's memory is the running sum, not its m updates.

    The weight of an update is n_k / total, with `total` the examples the round expects (the
    sum over its tasks), so adding the updates in the order `fedavg` sums them gives its floats
    exactly. When the updates added hold another total (a client reported other examples
    than its task held), the sum is scaled by expected / actual at the end: the same weighted
    mean, rounded once more in float64, so it may differ from `fedavg` in the last bit.
    """

    def __init__(self, expected_examples: int) -> None:
        """Raises: AggregationError: expected_examples is not positive."""
        if expected_examples <= 0:
            raise AggregationError(f"a round must expect examples to weigh its updates by, got {expected_examples}")
        self.expected_examples = int(expected_examples)
        self.examples = 0
        self.count = 0
        self._first: State = {}
        self._floating: list[str] = []
        self._acc: torch.Tensor | None = None
        self._term: torch.Tensor | None = None

    def add(self, state: Mapping[str, torch.Tensor], num_examples: int) -> None:
        """Folds one update in; the caller may drop it afterwards.

        Raises:
            AggregationError: a non-positive weight, or a state whose keys or shapes differ from the first's.
        """
        n = int(num_examples)
        if n <= 0:
            raise AggregationError(f"every update needs num_examples > 0, got {n}")
        if self._acc is None:
            self._first = {key: ref.detach() for key, ref in state.items()}
            self._floating = [key for key, ref in self._first.items() if torch.is_floating_point(ref)]
            self._acc = torch.zeros(sum(self._first[key].numel() for key in self._floating), dtype=torch.float64)
            self._term = torch.empty_like(self._acc)
        else:
            for key, ref in self._first.items():
                if key not in state or state[key].shape != ref.shape:
                    raise AggregationError(f"updates disagree on {key!r}: shapes or keys differ")
        offset = 0
        for key in self._floating:
            numel = self._first[key].numel()
            self._term[offset : offset + numel].view(self._first[key].shape).copy_(state[key].detach())
            offset += numel
        self._acc.add_(self._term.mul_(n / self.expected_examples))
        self.examples += n
        self.count += 1
        if self.count == 1:  # only the integer buffers and the layout are kept of the first
            self._first = {key: _layout_of(ref) for key, ref in self._first.items()}

    def result(self) -> State:
        """The average of what was added; integer buffers are the first update's.

        Raises:
            AggregationError: nothing was added.
        """
        if self._acc is None:
            raise AggregationError("no client updates to average")
        acc = self._acc
        if self.examples != self.expected_examples:
            acc = acc * (self.expected_examples / self.examples)
        out: State = {}
        offset = 0
        for key, ref in self._first.items():
            if not torch.is_floating_point(ref):
                out[key] = ref.clone()
                continue
            out[key] = acc[offset : offset + ref.numel()].view(ref.shape).to(ref.dtype, copy=True)
            offset += ref.numel()
        return out


def _layout_of(ref: torch.Tensor) -> torch.Tensor:
    """An integer buffer itself; a floating tensor's shape and dtype only (no storage), all the average needs."""
    return torch.empty(ref.shape, dtype=ref.dtype, device="meta") if torch.is_floating_point(ref) else ref.clone()


def fedavg(updates: Iterable[Update | ClientResult | tuple[Mapping[str, torch.Tensor], int]]) -> State:
    """w = sum_k n_k / n * w_k over the given updates (the server step of Algorithm 1).

    Floating tensors are averaged in float64 and cast back; integer buffers are taken
    from the first update. The floating tensors of an update are summed as one flat vector,
    element by element in the order of the updates, so it is a few large operations a
    round instead of a few per tensor, with the same floats. `RunningAverage` gives the same
    floats without holding the updates.

    Raises:
        AggregationError: no updates, a non-positive weight, or states that disagree.
    """
    pairs = []
    for u in updates:
        state, n = (u[0], u[1]) if isinstance(u, tuple) else (u.state, u.num_examples)
        pairs.append((state, int(n)))
    if not pairs:
        raise AggregationError("no client updates to average")
    if any(n <= 0 for _, n in pairs):
        raise AggregationError(f"every update needs num_examples > 0, got {[n for _, n in pairs]}")
    first = pairs[0][0]
    for key, ref in first.items():
        for state, _ in pairs[1:]:
            if key not in state or state[key].shape != ref.shape:
                raise AggregationError(f"updates disagree on {key!r}: shapes or keys differ")
    average = RunningAverage(sum(n for _, n in pairs))
    for state, n in pairs:
        average.add(state, n)
    return average.result()


def initial_state(model_name: str, seed: int) -> State:
    """The round-0 global weights, a function of (model, seed) only."""
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in build_model(model_name).state_dict().items()}


def state_distance(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """L2 distance between two states; 0.0 exactly when equal."""
    return math.sqrt(sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in a))
