"""Load a published LeNet-5 from object storage once and classify 28x28 digits with it.

`publish_model` (mlcore.train) writes `models/lenet5/<version>`, its `<version>.json`
metadata and the `models/lenet5/latest` pointer; this module reads them back, checks
the checkpoint against the recorded sha256, and keeps loaded models in a small cache so
a warm action container pays the S3 round trip and the load once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import weights
from .errors import DamagedError, MLCoreError, ObjectNotFoundError
from .model import LeNet5, normalize
from .train import ARCH, LATEST_KEY, MODEL_PREFIX

TRAIN_COMMAND = "deployer model train"


class ModelNotFoundError(MLCoreError):
    """No published model under the requested version; the message names the command that makes one."""


class ModelCorruptError(MLCoreError):
    """The stored checkpoint does not match its recorded sha256 or does not load into LeNet-5."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: LeNet5
    sha256: str
    accuracy: float | None


def resolve_version(storage, version: str = "latest") -> str:
    """`latest` -> the version its pointer names; any other name is returned as given.

    Raises:
        ModelNotFoundError: nothing is published yet.
    """
    if version != "latest":
        return version
    try:
        pointer = storage.get_json(LATEST_KEY)
    except ObjectNotFoundError as exc:
        raise ModelNotFoundError(
            f"no model is published at s3://{storage.bucket}/{LATEST_KEY}; train and publish one with `{TRAIN_COMMAND}`"
        ) from exc
    return pointer["version"]


def load_model(storage, version: str = "latest") -> LoadedModel:
    """Reads, verifies and loads one published version (or `latest`).

    Raises:
        ModelNotFoundError: the version (or any model) does not exist.
        ModelCorruptError: the checkpoint fails its checksum or does not fit LeNet-5.
        StorageError: storage could not be reached.
    """
    if not isinstance(version, str) or not version.strip() or "/" in version:
        raise ModelNotFoundError(
            f"model version {version!r} is not a valid name; use `latest` or a published "
            f"version listed under s3://{storage.bucket}/{MODEL_PREFIX}/"
        )
    resolved = resolve_version(storage, version)
    try:
        meta = storage.get_json(f"{MODEL_PREFIX}/{resolved}.json")
        blob = storage.get_bytes(f"{MODEL_PREFIX}/{resolved}")
    except ObjectNotFoundError as exc:
        raise ModelNotFoundError(
            f"model version {resolved!r} is not published in s3://{storage.bucket}/"
            f"{MODEL_PREFIX}/; use `latest` or publish it with `{TRAIN_COMMAND}`"
        ) from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta.get("sha256"):
        raise ModelCorruptError(
            f"model {resolved} has sha256 {digest}, its metadata says {meta.get('sha256')}; "
            f"republish it with `{TRAIN_COMMAND}`"
        )
    arch = meta.get("arch", ARCH)  # models published before `arch` was recorded are all LeNet-5
    if arch != ARCH:
        raise ModelCorruptError(
            f"model {resolved} is a {arch!r} model; this inference builds only {ARCH!r}; "
            f"publish a {ARCH} model with `{TRAIN_COMMAND}`"
        )
    model = LeNet5()
    try:
        model.load_state_dict(weights.decode(blob, f"model {resolved}")[0])
    except DamagedError as exc:
        raise ModelCorruptError(f"{exc}; republish it with `{TRAIN_COMMAND}`") from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelCorruptError(f"model {resolved} does not load into LeNet-5: {exc}") from exc
    model.eval()
    return LoadedModel(resolved, model, digest, meta.get("accuracy"))


@torch.no_grad()
def predict(model: torch.nn.Module, images_uint8) -> list[dict]:
    """uint8 [N,28,28] (numpy or torch) -> [{"digit", "probabilities"[10]}] per image."""
    x = torch.as_tensor(np.asarray(images_uint8), dtype=torch.uint8)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or tuple(x.shape[1:]) != (28, 28):
        raise MLCoreError(f"expected images of shape [N,28,28], got {list(x.shape)}")
    model.eval()
    probs = torch.softmax(model(normalize(x)), dim=1)
    return [{"digit": int(p.argmax()), "probabilities": [round(float(v), 6) for v in p]} for p in probs]


class ModelCache:
    """Loaded models by (storage endpoint, bucket, version); `latest` is re-resolved after `latest_ttl_s`.

    One per process: an action keeps it in a module global so warm invocations reuse it.
    """

    def __init__(self, latest_ttl_s: float = 30.0, max_models: int = 4) -> None:
        self.latest_ttl_s = latest_ttl_s
        self.max_models = max_models
        self._models: dict[tuple, LoadedModel] = {}
        self._latest: dict[tuple, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, storage, version: str = "latest") -> LoadedModel:
        where = (storage.config.endpoint_url, storage.bucket)
        with self._lock:
            if version == "latest":
                cached = self._latest.get(where)
                if cached is None or time.monotonic() - cached[1] > self.latest_ttl_s:
                    cached = (resolve_version(storage, "latest"), time.monotonic())
                    self._latest[where] = cached
                version = cached[0]
            key = where + (version,)
            loaded = self._models.get(key)
            if loaded is None:
                loaded = load_model(storage, version)
                self.loads += 1
                if len(self._models) >= self.max_models:
                    self._models.pop(next(iter(self._models)))
                self._models[key] = loaded
            return loaded
