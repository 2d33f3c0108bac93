"""The digests S3 checks: Content-MD5 and the five `x-amz-checksum-*` algorithms, incrementally.

CRC32 comes from zlib; CRC32C and CRC64NVME from awscrt (the AWS common runtime, which
botocore itself uses for them). Values travel as base64 of the big-endian digest, as S3
writes them. A multipart object's checksum is either COMPOSITE (the checksum of the parts'
checksums, suffixed `-N`) or FULL_OBJECT (of the whole body, for the CRCs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib

try:
    from awscrt import checksums as _crt
except ImportError:  # pragma: no cover - awscrt is a dependency; without it those two algorithms are refused
    _crt = None

from .errors import S3Error

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
FULL_OBJECT, COMPOSITE = "FULL_OBJECT", "COMPOSITE"
_CRC_BYTES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8}
DEFAULT = "CRC64NVME" if _crt is not None else None  # what S3 computes for an object uploaded without one


class _Crc:
    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.value = 0
        if algorithm == "CRC32":
            self._step = zlib.crc32
        elif _crt is None:
            raise S3Error(501, "NotImplemented", f"{algorithm} checksums need the awscrt package on the server")
        else:
            self._step = _crt.crc32c if algorithm == "CRC32C" else _crt.crc64nvme

    def update(self, data) -> None:
        self.value = self._step(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(_CRC_BYTES[self.algorithm], "big")


def hasher(algorithm: str):
    """A fresh digest for `algorithm` (one of ALGORITHMS, or MD5): `.update(bytes)`, `.digest()`."""
    if algorithm in _CRC_BYTES:
        return _Crc(algorithm)
    return hashlib.new(algorithm.lower())


def encode(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def decode(value: str, algorithm: str) -> bytes | None:
    """The digest a header or trailer carries, or None when it is not one (malformed base64, wrong length)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    size = _CRC_BYTES.get(algorithm) or hashlib.new(algorithm.lower()).digest_size
    return raw if len(raw) == size else None


def composite(algorithm: str, part_digests: list[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: the checksum of the concatenated part checksums, then -N."""
    h = hasher(algorithm)
    h.update(b"".join(part_digests))
    return f"{encode(h.digest())}-{len(part_digests)}"


def header_name(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm.lower()}"


def algorithm_of(name: str) -> str | None:
    """'x-amz-checksum-crc32' -> 'CRC32'; None for any other header name."""
    name = name.lower()
    if not name.startswith("x-amz-checksum-"):
        return None
    algorithm = name[len("x-amz-checksum-") :].upper()
    return algorithm if algorithm in ALGORITHMS else None
