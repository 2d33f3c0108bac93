"""The one format of weights on storage: named tensors and a JSON header, closed by their sha256.

Published models, FedAvg checkpoints and the tensors FedAvg's action exchanges, and the
training workers' updates, checkpoints and hand-offs are all written by `encode` and read by
`decode`, so a flipped or cut-off copy is refused by name wherever it is read:

    b"MLW1" | header length (u32, little-endian) | header (JSON) | tensor bytes | sha256 of all before

The header is {"tensors": [[name, dtype, shape], ...], "meta": {...}}: the tensors' bytes
follow in that order, little-endian and in logical order whatever their memory format;
`meta` is the writer's own JSON (a round, a report). Reading takes numpy only and never
unpickles, so bytes from storage cannot run code.

Blobs from before this format are read where they were read before: a bare `torch.save`
zip (published models, FedAvg checkpoints and action tensors) unchecked, as it was, and a
zip behind a first line `<tag> sha256=<hex> bytes=<n>` (FedAvg checkpoints) checked against
that line.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
from collections.abc import Mapping

import numpy as np
import torch

from .errors import DamagedError, MLCoreError

MAGIC = b"MLW1"
DIGEST_BYTES = 32
_HEAD = struct.Struct("<I")
_DTYPES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
_NUMPY = {name: np.dtype(name).newbyteorder("<") for name in _DTYPES.values()}


def encode(tensors: Mapping[str, torch.Tensor], meta: dict | None = None, *, meta_json: str | None = None) -> bytes:
    """The blob of `tensors` (CPU tensors of the dtypes in _DTYPES) and `meta` (JSON-able).

    `meta_json`, in place of `meta`, is it already serialized: a writer whose meta grows by a
    little each time (a run's report, round after round) keeps the old part's JSON instead of
    formatting all of it again.

    Raises:
        MLCoreError: a tensor's dtype has no place in the format.
    """
    table, parts = [], []
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPES:
            raise MLCoreError(f"tensor {name!r} is {tensor.dtype}; weights store only {', '.join(_DTYPES.values())}")
        dtype = _DTYPES[tensor.dtype]
        array = tensor.detach().cpu().contiguous().numpy().astype(_NUMPY[dtype], copy=False)
        table.append([name, dtype, list(tensor.shape)])
        parts.append(array.tobytes())
    meta_text = meta_json if meta_json is not None else json.dumps(meta or {})
    head = ('{"tensors": ' + json.dumps(table) + ', "meta": ' + meta_text + "}").encode()
    body = b"".join([MAGIC, _HEAD.pack(len(head)), head, *parts])
    return body + hashlib.sha256(body).digest()


def decode(blob: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors by name, meta) of a blob; `where` names it (a key, a file) in errors.

    Raises:
        DamagedError: the bytes do not match their sha256, are cut short, or are in no format written here.
    """
    if blob[: len(MAGIC)] != MAGIC:
        return _decode_legacy(blob, where)
    body, digest = memoryview(blob)[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    if len(blob) < len(MAGIC) + _HEAD.size + DIGEST_BYTES or hashlib.sha256(body).digest() != digest:
        raise DamagedError(f"{where} is damaged: its bytes do not match its sha256 ({len(blob)} bytes)")
    start = len(MAGIC) + _HEAD.size
    (length,) = _HEAD.unpack_from(body, len(MAGIC))
    try:
        head = json.loads(bytes(body[start : start + length]))
        offset, tensors = start + length, {}
        for name, dtype, shape in head["tensors"]:
            count = int(np.prod(shape, dtype=np.int64))
            array = np.frombuffer(body, dtype=_NUMPY[dtype], count=count, offset=offset)
            tensors[name] = torch.from_numpy(array.astype(array.dtype.newbyteorder("="))).reshape(shape)
            offset += array.nbytes
        if offset != len(body):
            raise ValueError(f"{len(body) - offset} bytes after the last tensor")
        return tensors, head["meta"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedError(f"{where} is damaged: its header does not describe its bytes ({exc})") from exc


def _decode_legacy(blob: bytes, where: str) -> tuple[dict, dict]:
    """A torch.save zip, bare or behind a digest line: the dict it holds, and no meta."""
    if not blob.startswith(b"PK"):
        head, _, blob = blob.partition(b"\n")
        fields = dict(part.split("=", 1) for part in head.decode("ascii", "replace").split()[1:] if "=" in part)
        if "sha256" not in fields or not fields.get("bytes", "").isdigit():
            raise DamagedError(f"{where} is damaged: it is not in the weights format")
        if len(blob) != int(fields["bytes"]):
            raise DamagedError(f"{where} is damaged: {len(blob)} of its {fields['bytes']} bytes are there")
        if hashlib.sha256(blob).hexdigest() != fields["sha256"]:
            raise DamagedError(f"{where} is damaged: its bytes do not match its sha256")
    try:
        loaded = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DamagedError(f"{where} is damaged: {exc}") from exc
    if not isinstance(loaded, dict):
        raise DamagedError(f"{where} is damaged: it holds a {type(loaded).__name__}, not named tensors")
    return loaded, {}
