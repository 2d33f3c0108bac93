"""aws-chunked request bodies: the framing newer AWS SDKs stream uploads in, with chunk signatures and trailers.

    <hex size>[;chunk-signature=<sig>]\\r\\n<bytes>\\r\\n ... 0[;chunk-signature=<sig>]\\r\\n
    [<trailer name>:<value>\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n]]\\r\\n

STREAMING-AWS4-HMAC-SHA256-PAYLOAD signs every chunk, each signature chained from the one
before it (the seed is the request's own); the -TRAILER variants add trailing headers
(the checksum of the whole body), signed or not. Each chunk is checked as it ends, so a
forged chunk stops the upload before anything is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator

from . import sigv4
from .errors import S3Error

CHUNK = 1 << 20
_MAX_LINE = 4096
_SIZE_RE = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?")


def _malformed(why: str) -> S3Error:
    return S3Error(400, "InvalidRequest", f"the aws-chunked body is malformed: {why}")


class AwsChunked:
    """Iterating yields the decoded payload; `trailers` holds the trailing headers afterwards.

    `read(n)` returns up to n bytes of the request body (b"" at its end). `signed` is the
    verified request when its chunks carry signatures; `trailer` says whether trailing
    headers follow (and whether they are signed: when `signed` is given).
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        signed: sigv4.Signed | None,
        trailer: bool,
        decoded_length: int | None,
    ) -> None:
        self._read = read
        self._signed = signed
        self._trailer = trailer
        self._decoded_length = decoded_length
        self._buf = b""
        self.trailers: dict[str, str] = {}
        self.size = 0

    def _fill(self) -> None:
        data = self._read(CHUNK)
        if not data:
            raise S3Error(400, "IncompleteBody", "the aws-chunked body ended before its last chunk")
        self._buf += data

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line, self._buf = self._buf[:end], self._buf[end + 2 :]
                return line
            if len(self._buf) > _MAX_LINE:
                raise _malformed("a chunk header or trailer line is too long")
            self._fill()

    def __iter__(self) -> Iterator[bytes]:
        previous = self._signed.signature if self._signed else ""
        while True:
            match = _SIZE_RE.fullmatch(self._line())
            if not match:
                raise _malformed("a chunk does not start with its size")
            size, signature = int(match.group(1), 16), (match.group(2) or b"").decode() or None
            if self._signed and signature is None:
                raise _malformed("a chunk has no chunk-signature")
            sha = hashlib.sha256() if self._signed else None
            left = size
            while left:
                if not self._buf:
                    self._fill()
                piece, self._buf = self._buf[:left], self._buf[left:]
                left -= len(piece)
                if sha is not None:
                    sha.update(piece)
                self.size += len(piece)
                yield piece
            if self._signed:
                expected = sigv4.chunk_signature(self._signed, previous, sha.hexdigest())
                if not hmac.compare_digest(expected, signature):
                    raise sigv4.signature_mismatch()
                previous = signature
            if size == 0:
                break
            if self._line() != b"":
                raise _malformed("a chunk is longer than its size says")
        self._read_trailers(previous)
        if self._decoded_length is not None and self.size != self._decoded_length:
            raise S3Error(
                400,
                "IncompleteBody",
                f"the body decoded to {self.size} bytes; x-amz-decoded-content-length said {self._decoded_length}",
            )

    def _read_trailers(self, previous: str) -> None:
        canonical = b""
        signature = None
        while True:
            line = self._line()
            if line == b"":
                break
            name, sep, value = line.partition(b":")
            if not sep:
                raise _malformed(f"trailer line {line[:60]!r} is not name:value")
            name = name.strip().lower()
            if name == b"x-amz-trailer-signature":
                signature = value.strip().decode("latin-1")
                continue
            canonical += name + b":" + value.strip() + b"\n"
            self.trailers[name.decode("latin-1")] = value.strip().decode("latin-1")
        if self._trailer and self._signed:
            if signature is None:
                raise _malformed("the trailer has no x-amz-trailer-signature")
            if not hmac.compare_digest(sigv4.trailer_signature(self._signed, previous, canonical), signature):
                raise sigv4.signature_mismatch()
