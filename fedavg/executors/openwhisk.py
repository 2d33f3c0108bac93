"""Each ClientUpdate as one invocation of the `fedavg/client` action; tensors travel through S3.

OpenWhisk caps payloads at 1 MB, so invocations carry keys only: the global weights of
round r are written once under `fedavg/<run>/round-<r>/global`, each client's examples
once per run under `fedavg/<run>/data/client-<k>-<digest>`, and each client writes its
update under `fedavg/<run>/round-<r>/update/client-<k>` (versioned by round, so a
retried invocation overwrites the same key with the same bytes). A round's objects are
deleted once its updates are read, the examples when the executor closes: the parent holds
the run's state, and a thousand rounds of a CNN would otherwise leave tens of gigabytes in
the bucket. The transport is
mlcore's OpenWhisk client, the one the deployer uses too, so this module never imports
the deployer; an invocation that fails leaves its FedAvg client out of the round.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from mlcore.errors import ActivationFailedError, MLCoreError
from mlcore.openwhisk import OpenWhiskClient
from mlcore.storage import Storage

from ..core import ClientFailure, ClientResult, ClientTask, State
from ..errors import FedAvgError
from . import Managed

ACTION = "fedavg/client"
INVOKE_TIMEOUT_S = 900.0


def run_prefix(run_id: str) -> str:
    return f"fedavg/{run_id}"


class OpenWhiskExecutor(Managed):
    name = "openwhisk"

    def __init__(
        self,
        client: OpenWhiskClient,
        storage: Storage,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        *,
        run_id: str,
        storage_params: Mapping[str, str] | None = None,
        action: str = ACTION,
        concurrency: int = 4,
        threads_per_client: int = 1,
        invoke_timeout_s: float = INVOKE_TIMEOUT_S,
    ) -> None:
        """storage_params: the `s3_*` parameters the action needs to reach the same bucket
        (defaults to this Storage's settings; differ when the actions see S3 under another address)."""
        if concurrency < 1:
            raise FedAvgError(f"concurrency must be at least 1, got {concurrency}")
        self.client = client
        self.invoke_timeout_s = invoke_timeout_s
        self.storage = storage
        self.images = images_uint8
        self.labels = labels
        self.run_id = run_id
        self.action = action
        self.concurrency = concurrency
        self.threads_per_client = threads_per_client
        self.storage_params = dict(storage.config.as_params() if storage_params is None else storage_params)
        self._uploaded: set[str] = set()

    def _data_key(self, task: ClientTask) -> str:
        indices = np.ascontiguousarray(task.indices, dtype=np.int64)
        digest = hashlib.sha256(indices.tobytes()).hexdigest()[:16]
        key = f"{run_prefix(self.run_id)}/data/client-{task.client_id:05d}-{digest}"
        if key not in self._uploaded:
            idx = torch.from_numpy(indices)
            self.storage.put_state(
                key, {"images": self.images[idx].contiguous(), "labels": self.labels[idx].contiguous()}
            )
            self._uploaded.add(key)
        return key

    def _params(self, task: ClientTask, global_key: str) -> dict:
        c = task.config
        return {
            **self.storage_params,
            "client_id": task.client_id,
            "round": task.round_index,
            "seed": task.seed,
            "model": c.model,
            "epochs": c.epochs,
            "batch_size": c.batch_size or 0,
            "lr": c.lr,
            "mu": c.mu,
            "precision": c.precision,
            "channels_last": c.channels_last,
            "pixels": c.pixels,
            "threads": self.threads_per_client,
            "global_key": global_key,
            "data_key": self._data_key(task),
            "update_key": f"{run_prefix(self.run_id)}/round-{task.round_index:05d}/update/client-{task.client_id:05d}",
        }

    def _one(self, task: ClientTask, params: dict) -> ClientResult | ClientFailure:
        try:
            answer = self.client.invoke(
                self.action, params, blocking=True, result=True, timeout_s=self.invoke_timeout_s
            )
        except Exception as exc:
            detail = exc.result if isinstance(exc, ActivationFailedError) else None
            return ClientFailure(task.client_id, f"{type(exc).__name__}: {exc}" + (f" {detail}" if detail else ""))
        if not isinstance(answer, dict) or "error" in answer or "update_key" not in answer:
            return ClientFailure(task.client_id, f"action answered {answer!r}")
        try:
            state = self.storage.get_state(answer["update_key"])
        except MLCoreError as exc:
            return ClientFailure(task.client_id, f"reading {answer['update_key']}: {exc}")
        return ClientResult(
            task.client_id,
            state,
            int(answer["num_examples"]),
            float(answer["train_loss"]),
            float(answer.get("duration_s", 0.0)),
        )

    def stream_round(self, tasks: Sequence[ClientTask], global_state: State) -> Iterator[ClientResult | ClientFailure]:
        """`concurrency` invocations at a time; an update read from S3 ahead of its turn waits in a window of
        2 x concurrency, so the parent holds that many updates, not the round's."""
        if not tasks:
            return
        round_prefix = f"{run_prefix(self.run_id)}/round-{tasks[0].round_index:05d}/"
        global_key = round_prefix + "global"
        self.storage.put_state(global_key, dict(global_state))
        window, upcoming = 2 * self.concurrency, iter(tasks)
        pending: collections.deque[tuple[ClientTask, Future | ClientFailure]] = collections.deque()
        with ThreadPoolExecutor(min(self.concurrency, len(tasks))) as pool:
            while True:
                while len(pending) < window and (task := next(upcoming, None)) is not None:
                    try:
                        params = self._params(task, global_key)
                    except (IndexError, MLCoreError) as exc:
                        failure = ClientFailure(task.client_id, f"uploading its data: {type(exc).__name__}: {exc}")
                        pending.append((task, failure))
                        continue
                    pending.append((task, pool.submit(self._one, task, params)))
                if not pending:
                    break
                _, job = pending.popleft()
                yield job.result() if isinstance(job, Future) else job
        self._delete(round_prefix)  # every invocation has ended (the pool waited) and every update is read

    def _delete(self, prefix: str) -> None:
        self.storage.delete_keys(list(self.storage.list_keys(prefix)))

    def close(self) -> None:
        """Deletes the run's objects: the examples, and the round a failure or a stopped loop left.

        Storage that cannot be reached keeps them (under `fedavg/<run>/`) rather than hide the error the run
        is ending with.
        """
        self._uploaded.clear()
        try:
            self._delete(run_prefix(self.run_id) + "/")
        except MLCoreError:
            pass
