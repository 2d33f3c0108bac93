"""Training data for workers: real MNIST from object storage (any OpenWhisk) or the local dataset.

On a real cluster the actions cannot see the deployer's disk, so `upload_mnist` puts the
four IDX files under `datasets/mnist/raw/` once and every worker reads them from there.
A warm container keeps what it loaded; shards and batches are pure functions of the
job's seed, so a retried worker computes on exactly the same images.
"""

from __future__ import annotations

import functools
import struct
import threading

import numpy as np

from .. import mnist
from .job import JobConfig, TrainingError

S3_PREFIX = "datasets/mnist/raw/"
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_cache: dict[tuple, tuple] = {}
_cache_lock = threading.Lock()


def _parse_images(blob: bytes) -> np.ndarray:
    magic, n, rows, cols = struct.unpack(">IIII", blob[:16])
    if magic != 0x803:
        raise TrainingError(f"not an IDX image file (magic {magic:#x})")
    return np.frombuffer(blob, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def _parse_labels(blob: bytes) -> np.ndarray:
    magic, n = struct.unpack(">II", blob[:8])
    if magic != 0x801:
        raise TrainingError(f"not an IDX label file (magic {magic:#x})")
    return np.frombuffer(blob, dtype=np.uint8, offset=8).astype(np.int64)


def upload_mnist(storage, root=None) -> list[str]:
    """Copies the local IDX files to `datasets/mnist/raw/` when missing; returns the keys written.

    Raises:
        DatasetMissingError: MNIST is not prepared locally (the message names the command).
    """
    if not mnist.is_prepared(root):
        mnist.load_mnist(True, root)  # raises DatasetMissingError naming the command
    written = []
    for name in TRAIN_FILES + TEST_FILES:
        key = S3_PREFIX + name
        if not storage.exists(key):
            storage.put_bytes(key, (mnist.raw_dir(root) / name).read_bytes())
            written.append(key)
    return written


def _read(source: str, storage, name: str) -> bytes:
    if source == "local":
        path = mnist.raw_dir() / name
        if not path.is_file():
            mnist.load_mnist(True)  # raises DatasetMissingError naming the command
        return path.read_bytes()
    from ..errors import ObjectNotFoundError

    try:
        return storage.get_bytes(S3_PREFIX + name)
    except ObjectNotFoundError as exc:
        raise TrainingError(
            f"MNIST is not in object storage under {S3_PREFIX}; `deployer train` uploads it, "
            "or use data=local on the local platform"
        ) from exc


def load(source: str, storage, train: bool):
    """(uint8 torch [N,28,28], int64 torch [N]), cached per process and source."""
    import torch

    where = (
        source,
        train,
        getattr(getattr(storage, "config", None), "endpoint_url", None),
        getattr(storage, "bucket", None) if source == "s3" else None,
    )
    with _cache_lock:
        if where not in _cache:
            images_name, labels_name = TRAIN_FILES if train else TEST_FILES
            images = _parse_images(_read(source, storage, images_name))
            labels = _parse_labels(_read(source, storage, labels_name))
            _cache[where] = (torch.from_numpy(images.copy()), torch.from_numpy(labels))
        return _cache[where]


def train_size(config: JobConfig, full_size: int) -> int:
    return min(config.train_limit, full_size) if config.train_limit else full_size


@functools.lru_cache(maxsize=64)
def _shard(seed: int, workers: int, worker: int, size: int):
    import torch

    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    shard = size // workers
    return order[worker * shard : (worker + 1) * shard]


@functools.lru_cache(maxsize=64)
def _epoch_order(seed: int, workers: int, worker: int, size: int, epoch: int):
    import torch

    shard = _shard(seed, workers, worker, size)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009 + worker + 1)
    return shard[torch.randperm(len(shard), generator=generator)]


def batch_indices(config: JobConfig, worker: int, batch_index: int, size: int):
    """The training images (indices) of `worker`'s `batch_index`-th batch; disjoint across workers."""
    if not 0 <= worker < config.workers:
        raise TrainingError(f"worker {worker} is out of range 0..{config.workers - 1}")
    per_epoch = config.batches_per_epoch(size)
    epoch, i = divmod(batch_index, per_epoch)
    order = _epoch_order(config.seed, config.workers, worker, size, epoch)
    b = config.worker_batch
    return order[i * b : (i + 1) * b]


def test_set(config: JobConfig, storage):
    images, labels = load(config.data, storage, train=False)
    if config.test_limit:
        images, labels = images[: config.test_limit], labels[: config.test_limit]
    return images, labels
