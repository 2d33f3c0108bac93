"""The work of one step: a worker's update and the parameter server's apply, both idempotent.

Neither knows about OpenWhisk: each takes a Storage and a JobConfig and returns its timing
breakdown (seconds in S3 get, S3 put and compute, bytes moved), so the actions are thin
edges and tests call these directly on real tensors and a real S3 endpoint.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from . import dist_data
from .dist_job import JobConfig, JobLayout, TrainingError, decode_vector, encode_vector
from .errors import ObjectNotFoundError
from .model import LeNet5, normalize, state_to_bytes


class StepTimer:
    """Accumulates seconds per phase and bytes per direction for one step's report."""

    def __init__(self) -> None:
        self.seconds = {"s3_get_s": 0.0, "s3_put_s": 0.0, "compute_s": 0.0}
        self.bytes_in = 0
        self.bytes_out = 0

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def get(self, storage, key: str) -> bytes:
        with self.phase("s3_get_s"):
            blob = storage.get_bytes(key)
        self.bytes_in += len(blob)
        return blob

    def put(self, storage, key: str, blob: bytes) -> None:
        with self.phase("s3_put_s"):
            storage.put_bytes(key, blob)
        self.bytes_out += len(blob)

    def report(self) -> dict:
        out = {k: round(v, 6) for k, v in self.seconds.items()}
        out.update(bytes_in=self.bytes_in, bytes_out=self.bytes_out)
        return out


def load_config(storage, job: str) -> JobConfig:
    """Raises TrainingError when the job does not exist."""
    try:
        return JobConfig.from_dict(storage.get_json(JobLayout(job).config))
    except ObjectNotFoundError as exc:
        raise TrainingError(f"job {job!r} does not exist in s3://{storage.bucket}/jobs/; start it first") from exc


def initial_vector(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return parameters_to_vector(LeNet5().parameters()).detach()


def create_job(storage, config: JobConfig) -> bool:
    """Writes config.json and model version 0 unless the job exists; True when created.

    Raises:
        TrainingError: a job of that name exists with different settings.
    """
    layout = JobLayout(config.job)
    if storage.exists(layout.config):
        existing = storage.get_json(layout.config)
        if existing != config.as_dict():
            raise TrainingError(f"job {config.job!r} already exists with other settings; resume it or pick "
                                "another name")
        return False
    storage.put_json(layout.config, config.as_dict())
    if not storage.exists(layout.model(0)):
        storage.put_bytes(layout.model(0), encode_vector(initial_vector(config.seed)))
    return True


def model_from_vector(vector: torch.Tensor, model: nn.Module | None = None) -> nn.Module:
    """The parameters become views of `vector`: pass a clone when the model will be trained."""
    model = model or LeNet5()
    vector_to_parameters(vector, model.parameters())
    return model


_worker_model: dict[str, nn.Module] = {}


def _cached_model() -> nn.Module:
    """One LeNet-5 per warm container; its parameters are overwritten from S3 every step."""
    if "m" not in _worker_model:
        _worker_model["m"] = LeNet5()
    return _worker_model["m"]


def worker_step(storage, config: JobConfig, step: int, worker: int) -> dict:
    """Pulls model/<step>, computes on the worker's own batches, pushes grads/<step>/<worker>.

    sync: the mean gradient of one batch. local: K SGD steps, then the model delta.
    Rewriting the same key on a retry is harmless: the content depends only on (step, worker).

    Raises:
        TrainingError: the model version does not exist or the worker index is out of range.
    """
    layout = JobLayout(config.job)
    timer = StepTimer()
    try:
        start_vector = decode_vector(timer.get(storage, layout.model(step)))
    except ObjectNotFoundError as exc:
        raise TrainingError(f"model version {step} of job {config.job} does not exist") from exc
    with timer.phase("s3_get_s"):
        images, labels = dist_data.load(config.data, storage, train=True)
    size = dist_data.train_size(config, len(labels))
    with timer.phase("compute_s"):
        model = model_from_vector(start_vector.clone(), _cached_model())
        model.train()
        loss_fn = nn.CrossEntropyLoss()
        first_batch = step * config.local_steps
        losses = []
        if config.mode == "sync":
            idx = dist_data.batch_indices(config, worker, first_batch, size)
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(normalize(images[idx])), labels[idx])
            loss.backward()
            losses.append(loss.item())
            update = parameters_to_vector(p.grad for p in model.parameters()).detach()
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                        nesterov=config.nesterov and config.momentum > 0,
                                        weight_decay=config.weight_decay)
            for k in range(config.local_steps):
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at(first_batch + k, size)
                idx = dist_data.batch_indices(config, worker, first_batch + k, size)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(normalize(images[idx])), labels[idx])
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            update = parameters_to_vector(model.parameters()).detach() - start_vector
        blob = encode_vector(update, config.compress)
    timer.put(storage, layout.grads(step, worker), blob)
    return {"step": step, "worker": worker, "loss": sum(losses) / len(losses), "examples": len(losses) * len(idx),
            **timer.report()}


def _sync_apply(config: JobConfig, vector: torch.Tensor, mean_grad: torch.Tensor, opt_state: dict | None,
                lr: float) -> tuple[torch.Tensor, dict]:
    """One torch SGD step on the averaged gradient, so the PS is exactly a single-process step."""
    model = model_from_vector(vector.clone())
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0,
                                weight_decay=config.weight_decay)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    for group in optimizer.param_groups:
        group["lr"] = lr
    offset = 0
    for p in params:
        p.grad = mean_grad[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    optimizer.step()
    return parameters_to_vector(params).detach(), optimizer.state_dict()


def ps_step(storage, config: JobConfig, step: int, workers: list[int]) -> dict:
    """Averages the updates of `workers` for `step` and publishes model/<step+1>.

    A step whose next version exists was applied already and is skipped, so a re-delivered
    PS invocation never applies an update twice. The next model is written last: it is the
    commit point that resume looks for.

    Raises:
        TrainingError: an expected update or the model version is missing.
    """
    import io

    layout = JobLayout(config.job)
    timer = StepTimer()
    if storage.exists(layout.model(step + 1)):
        return {"step": step, "skipped": True, "reason": f"model version {step + 1} exists", **timer.report()}
    if not workers:
        raise TrainingError(f"step {step}: no worker updates to apply")
    try:
        vector = decode_vector(timer.get(storage, layout.model(step)))
        updates = [decode_vector(timer.get(storage, layout.grads(step, w))) for w in sorted(set(workers))]
    except ObjectNotFoundError as exc:
        raise TrainingError(f"step {step}: {exc}") from exc
    opt_state = None
    if config.mode == "sync" and step > 0:
        try:
            opt_state = torch.load(io.BytesIO(timer.get(storage, layout.opt(step))), weights_only=True)
        except ObjectNotFoundError as exc:
            raise TrainingError(f"step {step}: optimizer state {layout.opt(step)} is missing") from exc
    with timer.phase("compute_s"):
        mean_update = torch.stack(updates).mean(dim=0)
        size = None
        if config.mode == "sync":
            size = dist_data.train_size(config, _train_full_size(storage, config))
            new_vector, state = _sync_apply(config, vector, mean_update, opt_state, config.lr_at(step, size))
            opt_blob = state_to_bytes(state)
        else:
            new_vector = vector + mean_update
        model_blob = encode_vector(new_vector)
    if config.mode == "sync":
        timer.put(storage, layout.opt(step + 1), opt_blob)
    applied = {"step": step, "workers": sorted(set(workers)), "time": time.time()}
    with timer.phase("s3_put_s"):
        storage.put_json(layout.applied(step), applied)
    timer.put(storage, layout.model(step + 1), model_blob)
    return {"step": step, "skipped": False, "workers": applied["workers"], **timer.report()}


def _train_full_size(storage, config: JobConfig) -> int:
    """The training set's size without loading it when a limit already decides it."""
    if config.train_limit:
        return config.train_limit
    from .mnist import TRAIN_SIZE

    return TRAIN_SIZE


def evaluate_version(storage, config: JobConfig, step: int) -> dict:
    """Test accuracy and loss of model/<step> (the single-process `evaluate`, reused)."""
    from .train import evaluate

    images, labels = dist_data.test_set(config, storage)
    model = model_from_vector(decode_vector(storage.get_bytes(JobLayout(config.job).model(step))))
    return evaluate(model, images, labels)


def final_state_bytes(storage, config: JobConfig, step: int) -> bytes:
    """model/<step> as an ordinary LeNet-5 state dict, loadable by inference."""
    model = model_from_vector(decode_vector(storage.get_bytes(JobLayout(config.job).model(step))))
    return state_to_bytes({k: v.detach().clone() for k, v in model.state_dict().items()})
