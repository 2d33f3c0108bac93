"""The embedded S3's objects on disk: one file per object, written through before it is acknowledged.

An object is one file, `buckets/<bucket>/<quoted key>`: the body, then a JSON trailer
(key, ETag, content type, user metadata), then a 16-byte footer (trailer length and a
magic). Body and metadata therefore change together in one atomic rename: a write goes
to `tmp/`, is fsync'd, renamed over the old object and the bucket folder fsync'd, and
only then does the server answer 200. A crash at any point leaves the old object or the
new one, never a mix; a full disk fails the write and leaves the old object in place.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .errors import PlatformError

CHUNK = 1 << 20
_FOOTER = struct.Struct(">Q8s")
_MAGIC = b"DS3OBJ01"
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY")
_HASHED = "%7E"  # quote() never writes %7E ('~' is safe), so hashed names cannot collide with keys
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024


class S3Error(PlatformError):
    """An S3 error answer: HTTP status, S3 error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def no_bucket(name: str) -> S3Error:
    return S3Error(404, "NoSuchBucket", f"The specified bucket does not exist: {name}")


def disk_full(root: Path) -> S3Error:
    return S3Error(
        507,
        "InsufficientStorage",
        f"the object store's disk is full ({root}); nothing was written; free space and retry",
    )


@dataclass
class ObjectInfo:
    key: str
    size: int
    etag: str
    mtime: float
    content_type: str = "binary/octet-stream"
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    storage_class: str = "STANDARD"


def _name(key: str) -> str:
    quoted = urllib.parse.quote(key, safe="")
    if quoted in (".", ".."):
        return quoted.replace(".", "%2E")
    if len(quoted) > 240:
        return _HASHED + hashlib.sha256(key.encode()).hexdigest()
    return quoted


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_info(path: Path) -> ObjectInfo:
    """The trailer of one object file; raises OSError or ValueError for a file that is not one."""
    with open(path, "rb") as f:
        return _info_of(f, path)


def _info_of(f: BinaryIO, path: Path) -> ObjectInfo:
    """The trailer of the object file open as `f` (this version, whatever has been renamed over it since)."""
    st = os.fstat(f.fileno())
    if st.st_size < _FOOTER.size:
        raise ValueError(f"{path} is too short to be an object")
    f.seek(st.st_size - _FOOTER.size)
    meta_len, magic = _FOOTER.unpack(f.read(_FOOTER.size))
    if magic != _MAGIC or meta_len > st.st_size - _FOOTER.size:
        raise ValueError(f"{path} has no object trailer")
    f.seek(st.st_size - _FOOTER.size - meta_len)
    meta = json.loads(f.read(meta_len))
    size = st.st_size - _FOOTER.size - meta_len
    return ObjectInfo(
        meta["key"],
        size,
        meta["etag"],
        st.st_mtime,
        meta.get("content_type", "binary/octet-stream"),
        meta.get("metadata", {}),
        path,
        meta.get("storage_class", "STANDARD"),
    )


class ObjectStore:
    """Buckets, objects and multipart uploads under one root folder (0700, files 0600)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.buckets = self.root / "buckets"
        self.tmp = self.root / "tmp"
        self.uploads = self.root / "uploads"
        for d in (self.root, self.buckets, self.tmp, self.uploads):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            d.chmod(0o700)
        for leftover in self.tmp.iterdir():  # writes a crash interrupted: never acknowledged
            leftover.unlink()

    # buckets
    def _bucket(self, name: str) -> Path:
        path = self.buckets / name
        if not _BUCKET_RE.match(name) or not path.is_dir():
            raise no_bucket(name)
        return path

    def list_buckets(self) -> list[tuple[str, float]]:
        return sorted((p.name, p.stat().st_mtime) for p in self.buckets.iterdir() if p.is_dir())

    def head_bucket(self, name: str) -> None:
        self._bucket(name)

    def create_bucket(self, name: str) -> None:
        if not _BUCKET_RE.match(name) or ".." in name:
            raise S3Error(400, "InvalidBucketName", f"The specified bucket is not valid: {name}")
        try:
            (self.buckets / name).mkdir(mode=0o700)
        except FileExistsError:
            raise S3Error(409, "BucketAlreadyOwnedByYou", f"You already own the bucket {name}") from None
        except OSError as exc:
            raise self._os_error(exc) from exc
        fsync_dir(self.buckets)

    def delete_bucket(self, name: str) -> None:
        path = self._bucket(name)
        try:
            path.rmdir()
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise S3Error(409, "BucketNotEmpty", f"The bucket you tried to delete is not empty: {name}") from exc
            raise
        fsync_dir(self.buckets)

    # objects
    def _object_path(self, bucket: str, key: str) -> Path:
        if not key or len(key.encode()) > MAX_KEY_BYTES:
            raise S3Error(400, "KeyTooLongError" if key else "InvalidArgument", f"invalid key length: {key[:50]!r}")
        return self._bucket(bucket) / _name(key)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self._object_path(bucket, key)
        try:
            return read_info(path)
        except FileNotFoundError:
            raise S3Error(404, "NoSuchKey", f"The specified key does not exist: {key}") from None

    def open(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The object's metadata and body from one open file: a PUT renamed over it meanwhile cannot mix in.

        The caller closes the file (`read_range` does, once it has streamed).
        """
        path = self._object_path(bucket, key)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise S3Error(404, "NoSuchKey", f"The specified key does not exist: {key}") from None
        try:
            return _info_of(f, path), f
        except BaseException:
            f.close()
            raise

    def put(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        content_type: str | None = None,
        metadata: dict | None = None,
        storage_class: str = "STANDARD",
    ) -> ObjectInfo:
        """Streams `chunks` to disk; the object exists, durably, once this returns.

        REDUCED_REDUNDANCY (S3's class for reproducible data) skips the two fsyncs, which
        are most of a small PUT's latency here: such an object survives a crash of any
        process, not a power loss. The rename still makes it appear whole or not at all
        to readers.
        """
        if storage_class not in STORAGE_CLASSES:
            raise S3Error(
                400,
                "InvalidStorageClass",
                f"The storage class you specified is not valid: "
                f"{storage_class} (this endpoint stores {', '.join(STORAGE_CLASSES)})",
            )
        dest = self._object_path(bucket, key)
        md5 = hashlib.md5()

        def body() -> Iterator[bytes]:
            for chunk in chunks:
                md5.update(chunk)
                yield chunk

        meta = lambda: {  # noqa: E731 - read once the body has been streamed
            "key": key,
            "etag": md5.hexdigest(),
            "content_type": content_type or "binary/octet-stream",
            "metadata": metadata or {},
            **({"storage_class": storage_class} if storage_class != "STANDARD" else {}),
        }
        return self._write(dest, body(), meta, durable=storage_class == "STANDARD")

    def _write(self, dest: Path, body: Iterable[bytes], meta_fn, durable: bool = True) -> ObjectInfo:
        tmp = self.tmp / uuid.uuid4().hex
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb", buffering=0) as f:
                size = 0
                for chunk in body:
                    f.write(chunk)
                    size += len(chunk)
                meta = json.dumps(meta_fn()).encode()
                f.write(meta + _FOOTER.pack(len(meta), _MAGIC))
                if durable:
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
            if durable:
                fsync_dir(dest.parent)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._os_error(exc) from exc
            raise
        info = json.loads(meta)
        return ObjectInfo(
            info["key"],
            size,
            info["etag"],
            time.time(),
            info.get("content_type", ""),
            info.get("metadata", {}),
            dest,
            info.get("storage_class", "STANDARD"),
        )

    def _os_error(self, exc: OSError) -> S3Error:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return disk_full(self.root)
        if exc.errno == errno.EROFS:
            return S3Error(503, "ServiceUnavailable", f"the object store's disk is read-only ({self.root})")
        return S3Error(500, "InternalError", f"the object store could not write under {self.root}: {exc.strerror}")

    def delete(self, bucket: str, key: str) -> None:
        path = self._object_path(bucket, key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        content_type: str | None = None,
        metadata: dict | None = None,
    ) -> ObjectInfo:
        """Copies within the store; new metadata replaces the old when given (MetadataDirective REPLACE)."""
        src, f = self.open(src_bucket, src_key)
        replace = content_type is not None or metadata is not None
        return self.put(
            bucket,
            key,
            self.read_range(src, 0, src.size, f),
            content_type if replace else src.content_type,
            metadata if replace else src.metadata,
        )

    @staticmethod
    def read_range(info: ObjectInfo, start: int, length: int, opened: BinaryIO | None = None) -> Iterator[bytes]:
        """Streams [start, start + length) of the body, from `opened` (then closed) or a fresh open."""
        with opened or open(info.path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise OSError(errno.EIO, f"{info.path} ended early")
                left -= len(chunk)
                yield chunk

    def list(self, bucket: str, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose keys start with `prefix` and sort after `after`, in key order."""
        folder = self._bucket(bucket)
        keys = []
        for name in os.listdir(folder):
            if name.startswith(_HASHED):
                try:
                    keys.append((read_info(folder / name).key, name))
                except (OSError, ValueError):
                    continue
            else:
                keys.append((urllib.parse.unquote(name), name))
        keys.sort()
        for key, name in keys:
            if key.startswith(prefix) and key > after:
                try:
                    yield read_info(folder / name)
                except (OSError, ValueError):
                    continue  # deleted meanwhile

    # multipart uploads
    def create_upload(self, bucket: str, key: str, content_type: str | None, metadata: dict) -> str:
        self._object_path(bucket, key)
        upload_id = uuid.uuid4().hex
        folder = self.uploads / upload_id
        try:
            folder.mkdir(mode=0o700)
            (folder / "upload.json").write_text(
                json.dumps({"bucket": bucket, "key": key, "content_type": content_type, "metadata": metadata})
            )
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise self._os_error(exc) from exc
        return upload_id

    def _upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict]:
        folder = self.uploads / upload_id
        try:
            info = (
                json.loads((folder / "upload.json").read_text()) if re.fullmatch(r"[0-9a-f]{32}", upload_id) else None
            )
        except (OSError, ValueError):
            info = None
        if info is None or info["bucket"] != bucket or info["key"] != key:
            raise S3Error(404, "NoSuchUpload", f"The specified multipart upload does not exist: {upload_id}")
        return folder, info

    def put_part(self, bucket: str, key: str, upload_id: str, number: int, chunks: Iterable[bytes]) -> str:
        folder, _ = self._upload(bucket, key, upload_id)
        if not 1 <= number <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000")
        md5 = hashlib.md5()

        def body() -> Iterator[bytes]:
            for chunk in chunks:
                md5.update(chunk)
                yield chunk

        info = self._write(folder / f"part-{number:05d}", body(), lambda: {"key": key, "etag": md5.hexdigest()})
        return info.etag

    def complete_upload(self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> ObjectInfo:
        folder, upload = self._upload(bucket, key, upload_id)
        if not parts or [n for n, _ in parts] != sorted({n for n, _ in parts}):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        infos = []
        for number, etag in parts:
            try:
                info = read_info(folder / f"part-{number:05d}")
            except (OSError, ValueError):
                raise S3Error(400, "InvalidPart", f"part {number} was not uploaded") from None
            if info.etag != etag.strip('"'):
                raise S3Error(400, "InvalidPart", f"part {number} has ETag {info.etag}, not {etag}")
            infos.append(info)
        digest = hashlib.md5(b"".join(bytes.fromhex(i.etag) for i in infos)).hexdigest()
        body = (chunk for i in infos for chunk in self.read_range(i, 0, i.size))
        meta = lambda: {  # noqa: E731 - read once the body has been streamed
            "key": key,
            "etag": f"{digest}-{len(infos)}",
            "content_type": upload["content_type"] or "binary/octet-stream",
            "metadata": upload["metadata"] or {},
        }
        result = self._write(self._object_path(bucket, key), body, meta)
        shutil.rmtree(folder, ignore_errors=True)
        return result

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        folder, _ = self._upload(bucket, key, upload_id)
        shutil.rmtree(folder, ignore_errors=True)

    def import_snapshot(self, snapshot: Path) -> int:
        """Loads the old in-memory server's snapshot (`<bucket>/<quoted key>` files); returns objects loaded."""
        count = 0
        for bucket_dir in sorted(p for p in snapshot.iterdir() if p.is_dir()):
            if not (self.buckets / bucket_dir.name).is_dir():
                self.create_bucket(bucket_dir.name)
            for f in sorted(bucket_dir.iterdir()):
                with open(f, "rb") as fh:
                    self.put(bucket_dir.name, urllib.parse.unquote(f.name), iter(lambda: fh.read(CHUNK), b""))
                count += 1
        return count
