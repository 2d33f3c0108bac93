"""A round's ClientUpdates in lockstep in this process: the clients' weights stacked, one vmapped SGD step for all.

Every client of a round starts from the same global weights, so its SGD is the same small
computation on other data; run one client at a time, a 2NN step of batch 10 is mostly Python
and dispatch. Here the clients that take the same number of steps share each step: torch.func's
vmap over functional_call and grad gives every client its own gradient of its own batch, and
one in-place update moves all their weights. Each client gets exactly the minibatches
`fedavg.core.client_update` gives it (the same generator, index order, E, B and lr), and
FedProx's term, so in fp32 the states agree with the serial executor's up to float rounding
(batched matrix products may sum in another order). A client whose last batch of an epoch is
shorter than the others' of the same step is padded with weight-0 examples, which add exactly
nothing to its gradient.

bf16 is the serial client's autocast (fp32 weights, bf16 products, fp32 loss); a bf16 product
rounds to 8 bits, so there the two executors agree only as closely as bf16 agrees with fp32.
Channels-last is a memory layout, which the stacked weights do not take; the states agree as in fp32.
It pays where a client's step is mostly overhead (the 2NN: 2-3x less CPU a round at C=1.0); the
CNN's steps are mostly convolution, which vmap turns into slower grouped convolutions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from mlcore.compute import mean
from mlcore.model import model_input

from ..core import ClientFailure, ClientResult, ClientTask, State
from ..errors import ClientError, FedAvgError
from ..models import build_model
from . import Managed
from .serial import CLIENT_ERRORS

MEMORY_MB = 1024
# glibc's malloc maps blocks above 32 MiB (its largest dynamic mmap threshold) fresh from the kernel each time,
# so a stacked gradient over it page-faults through every step: 4x the time of a 2NN's layer-1 gradient at 100 clients.
STACKED_TENSOR_MB = 24


@dataclass
class _Plan:
    """One client's SGD steps: global training-set indices [steps, batch], and 1/0 weights, 0 where padded."""

    task: ClientTask
    index: torch.Tensor
    weight: torch.Tensor

    @property
    def key(self) -> tuple:
        """Clients with the same key step together."""
        return self.task.config, len(self.index)


def plan_client(task: ClientTask, num_examples: int) -> _Plan:
    """The client's minibatches in `client_update`'s order: one randperm of its set per epoch from its seed.

    Raises:
        ClientError: no examples, or indices outside the training set.
    """
    indices = torch.as_tensor(np.asarray(task.indices, dtype=np.int64))
    n = len(indices)
    if n == 0:
        raise ClientError("client has no examples")
    if int(indices.min()) < 0 or int(indices.max()) >= num_examples:
        raise ClientError(f"client {task.client_id}: indices outside the {num_examples} training examples")
    batch = n if not task.config.batch_size else min(task.config.batch_size, n)
    per_epoch = -(-n // batch)
    generator = torch.Generator().manual_seed(task.seed)
    index = torch.empty(task.config.epochs, per_epoch * batch, dtype=torch.int64)
    weight = torch.zeros(per_epoch * batch)
    weight[:n] = 1.0
    for epoch in range(task.config.epochs):
        index[epoch, :n] = indices[torch.randperm(n, generator=generator)]
        index[epoch, n:] = index[epoch, 0]
    steps = task.config.epochs * per_epoch
    return _Plan(task, index.view(steps, batch), weight.view(per_epoch, batch).repeat(task.config.epochs, 1))


def _stack_steps(plans: list[_Plan]) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, weight), both [steps, clients, widest batch]: narrower clients padded with weight 0."""
    width = max(p.index.shape[1] for p in plans)
    index = torch.stack(
        [nn.functional.pad(p.index, (0, width - p.index.shape[1]), value=int(p.index[0, 0])) for p in plans]
    )
    weight = torch.stack([nn.functional.pad(p.weight, (0, width - p.weight.shape[1])) for p in plans])
    return index.transpose(0, 1).contiguous(), weight.transpose(0, 1).contiguous()


class BatchedExecutor(Managed):
    name = "batched"

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        num_threads: int | None = None,
        memory_mb: int = MEMORY_MB,
        max_clients: int | None = None,
    ) -> None:
        """memory_mb bounds what one lockstep chunk of clients holds; max_clients caps a chunk's clients outright.

        num_threads, when given, is what torch uses while a round runs (restored afterwards).

        Raises:
            FedAvgError: memory_mb or max_clients below 1.
        """
        if memory_mb < 1 or (max_clients is not None and max_clients < 1):
            raise FedAvgError(
                f"batched executor: memory_mb and max_clients must be at least 1, got {memory_mb} and {max_clients}"
            )
        self.images = images_uint8
        self.labels = labels
        self.num_threads = num_threads
        self.eval_threads = num_threads
        self.memory_mb = memory_mb
        self.max_clients = max_clients
        self._models: dict[str, tuple[nn.Module, int]] = {}

    def _model(self, name: str) -> tuple[nn.Module, int]:
        """(model, bytes its forward keeps for backward per example), measured once per model.

        Raises:
            FedAvgError: the model has buffers (batch norm's statistics), which lockstep steps would not update.
        """
        if name not in self._models:
            model = build_model(name)
            buffers = [key for key, _ in model.named_buffers()]
            if buffers:
                raise FedAvgError(
                    f"the batched executor steps parameters only, and model {name!r} has buffers "
                    f"({', '.join(buffers)}); use the serial or process executor"
                )
            self._models[name] = (model, _saved_bytes_per_example(model, self.images))
        return self._models[name]

    def chunk_size(self, name: str, batch: int) -> int:
        """Clients per lockstep chunk for model `name` and batch width `batch`, within memory_mb.

        Also no more than keep the largest stacked tensor under STACKED_TENSOR_MB, which is as fast a step.
        """
        model, saved = self._model(name)
        param_bytes = [p.numel() * p.element_size() for p in model.parameters()]
        # stacked weights, their gradients and vmap's temporaries; the saved activations twice (forward and backward)
        per_client = 4 * sum(param_bytes) + 2 * batch * (saved + self.images[0].numel() * 4)
        fits = max(1, min(self.memory_mb * 2**20 // per_client, STACKED_TENSOR_MB * 2**20 // max(param_bytes)))
        return min(fits, self.max_clients) if self.max_clients else fits

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[ClientResult | ClientFailure]:
        """Outcomes in task order; chunks of clients with the same steps, looked for within a window of tasks.

        The window (the chunk size) bounds the finished updates that wait for their turn.

        Raises:
            FedAvgError: a model with buffers.
        """
        before = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            yield from self._stream(list(tasks), global_state)
        finally:
            torch.set_num_threads(before)

    def _stream(self, tasks: list[ClientTask], global_state: State) -> Iterator[ClientResult | ClientFailure]:
        done: dict[int, ClientResult | ClientFailure] = {}
        plans: dict[int, _Plan] = {}
        for i, task in enumerate(tasks):
            try:
                plans[i] = plan_client(task, len(self.labels))
            except CLIENT_ERRORS as exc:
                done[i] = ClientFailure(task.client_id, f"{type(exc).__name__}: {exc}")
        head = 0
        while head < len(tasks):
            if head in done:
                yield done.pop(head)
                head += 1
                continue
            first = plans[head]
            width = self.chunk_size(first.task.config.model, first.index.shape[1])
            chunk = [
                i for i in range(head, min(head + width, len(tasks))) if i not in done and plans[i].key == first.key
            ]
            for i, outcome in zip(chunk, self._run_chunk([plans[i] for i in chunk], global_state)):
                done[i] = outcome

    def _run_chunk(self, plans: list[_Plan], global_state: State) -> list[ClientResult | ClientFailure]:
        """One outcome per plan; an error in the shared computation fails every client of the chunk."""
        started = time.perf_counter()
        try:
            states, losses = self._lockstep(plans, global_state)
        except CLIENT_ERRORS as exc:
            return [ClientFailure(p.task.client_id, f"{type(exc).__name__}: {exc}") for p in plans]
        share_s = (time.perf_counter() - started) / len(plans)
        return [
            ClientResult(p.task.client_id, state, len(p.task.indices), mean(loss), share_s)
            for p, state, loss in zip(plans, states, losses)
        ]

    def _lockstep(self, plans: list[_Plan], global_state: State) -> tuple[list[State], list[list[float]]]:
        """Every plan's SGD steps at once; (each client's state, each client's step losses)."""
        config = plans[0].task.config
        model, _ = self._model(config.model)
        model.train()
        names = [name for name, _ in model.named_parameters()]
        m = len(plans)
        anchor = {k: global_state[k].detach().to(torch.float32) for k in names}
        params = {k: v.unsqueeze(0).repeat(m, *[1] * v.dim()) for k, v in anchor.items()}
        bf16 = config.precision == "bf16"

        def loss_of(p, x, y, w, a):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                ce = nn.functional.cross_entropy(functional_call(model, p, (x,)), y, reduction="none")
            loss = (ce * w).sum() / w.sum()
            if config.mu > 0:  # FedProx's term in the serial client's order: mu / 2 * (0 + term_1 + term_2 + ...)
                loss = loss + config.mu / 2 * sum(((p[k] - a[k]) ** 2).sum() for k in names)
            return loss

        step = vmap(grad_and_value(loss_of), in_dims=(0, 0, 0, 0, None))
        index, weight = _stack_steps(plans)
        losses = []
        for s in range(len(index)):
            x = model_input(self.images[index[s].view(-1)], config.pixels)
            x = x.view(m, -1, *x.shape[1:])
            grads, loss = step(params, x, self.labels[index[s]], weight[s], anchor)
            with torch.no_grad():
                torch._foreach_add_([params[k] for k in names], [grads[k] for k in names], alpha=-config.lr)
            losses.append(loss)
        per_client = torch.stack(losses, dim=1).tolist() if losses else [[] for _ in plans]
        return [{k: params[k][i].clone() for k in names} for i in range(m)], per_client

    def close(self) -> None:
        self._models.clear()


def _saved_bytes_per_example(model: nn.Module, images_uint8: torch.Tensor) -> int:
    """What a forward keeps for its backward per example (activations, masks), so chunks fit in memory.

    Measured as the growth from one example to two, which leaves out the weights a layer saves once.
    """

    def saved(count: int) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = model_input(images_uint8[:1].expand(count, *images_uint8.shape[1:]))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return total

    return max(saved(2) - saved(1), 0)
