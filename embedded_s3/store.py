"""The embedded S3's objects on disk: one file per object, written through before it is acknowledged.

An object is one file, `buckets/<bucket>/<quoted key>`: the body, then a JSON trailer
(key, ETag, content type, user metadata, the headers S3 keeps, checksum, part layout),
then a 16-byte footer (trailer length and a magic). Body and metadata therefore change
together in one atomic rename: a write goes to `tmp/`, is fsync'd, renamed over the old
object and the bucket folder fsync'd, and only then does the server answer 200. A crash at
any point leaves the old object or the new one, never a mix; a full disk fails the write
and leaves the old object in place. A conditional write checks its condition under the
key's lock, right before the rename, so two writers cannot both win.

Multipart uploads live under `uploads/<id>/` (its settings and one file per part, in the
object format); completing one streams the parts into a new object and leaves a small
record behind, so a retried completion gets the same answer.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import os
import re
import shutil
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import checksums
from .errors import S3Error, bad_digest, invalid_argument, no_bucket, no_key, no_upload

CHUNK = 1 << 20
_FOOTER = struct.Struct(">Q8s")
_MAGIC = b"DS3OBJ01"
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY")
KEPT_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires")
_HASHED = "%7E"  # quote() never writes %7E ('~' is safe), so hashed names cannot collide with keys
BUCKET_FILE = "%bucket"  # quote() never writes '%b' either: no key maps to it
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_C1 = re.compile("[\x80-\x9f]")
MAX_KEY_BYTES = 1024
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10000
COMPLETED_KEPT_S = 24 * 3600  # how long a completed upload answers a retried completion


def disk_full(root: Path) -> S3Error:
    return S3Error(
        507,
        "InsufficientStorage",
        f"the object store's disk is full ({root}); nothing was written; free space and retry",
    )


@dataclass
class Meta:
    """What a write stores beside the body: content type, user metadata, the headers S3 keeps, storage class."""

    content_type: str | None = None
    metadata: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    storage_class: str = "STANDARD"


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
    headers: dict = field(default_factory=dict)
    checksum: dict | None = None  # {"algorithm", "value", "type"}
    parts: list | None = None  # [[size, checksum value or None], ...] of a multipart object

    @property
    def meta(self) -> Meta:
        return Meta(self.content_type, dict(self.metadata), dict(self.headers), self.storage_class)

    def part_span(self, number: int) -> tuple[int, int]:
        """(offset, length) of part `number` (1-based); a single-part object is its own part 1."""
        sizes = [p[0] for p in self.parts] if self.parts else [self.size]
        if not 1 <= number <= len(sizes):
            raise S3Error(400, "InvalidPart", f"part {number} does not exist; the object has {len(sizes)} part(s)")
        return sum(sizes[: number - 1]), sizes[number - 1]


class Payload:
    """A body as it streams to disk, with its digests: the MD5 (the ETag), a checksum, and what the client vouched for.

    The client's claims (Content-MD5, an `x-amz-checksum-*` value, now or in a trailer, the
    signed SHA-256) are checked once the last chunk has passed; a mismatch raises S3Error
    there, inside the write, so nothing is stored.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        checksum: str | None = None,
        *,
        expected_checksum: Callable[[], str | None] | None = None,
        content_md5: str | None = None,
        sha256: str | None = None,
    ) -> None:
        self.chunks = chunks
        self.algorithm = checksum
        self.size = 0
        self._md5 = hashlib.md5()
        self._sum = checksums.hasher(checksum) if checksum else None
        self._expected = expected_checksum
        self._content_md5 = content_md5
        self._sha = hashlib.sha256() if sha256 else None
        self._sha_hex = sha256
        self.etag = ""
        self.digest: bytes | None = None

    def __iter__(self) -> Iterator[bytes]:
        md5, total, sha = self._md5, self._sum, self._sha
        for chunk in self.chunks:
            md5.update(chunk)
            if total is not None:
                total.update(chunk)
            if sha is not None:
                sha.update(chunk)
            self.size += len(chunk)
            yield chunk
        self._finish()

    def _finish(self) -> None:
        if self._sha is not None and self._sha.hexdigest() != self._sha_hex:
            raise S3Error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        md5 = self._md5.digest()
        if self._content_md5 is not None and checksums.decode(self._content_md5, "MD5") != md5:
            raise bad_digest("Content-MD5")
        self.etag = md5.hex()
        if self._sum is not None:
            self.digest = self._sum.digest()
            expected = self._expected() if self._expected else None
            if expected is not None and checksums.decode(expected, self.algorithm) != self.digest:
                raise bad_digest(self.algorithm)

    @property
    def checksum(self) -> dict | None:
        if self.digest is None:
            return None
        return {"algorithm": self.algorithm, "value": checksums.encode(self.digest), "type": checksums.FULL_OBJECT}


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
    return _info(json.loads(f.read(meta_len)), st.st_size - _FOOTER.size - meta_len, st.st_mtime, path)


def _info(trailer: dict, size: int, mtime: float, path: Path) -> ObjectInfo:
    return ObjectInfo(
        key=trailer["key"],
        size=size,
        etag=trailer["etag"],
        mtime=mtime,
        content_type=trailer.get("content_type", "binary/octet-stream"),
        metadata=trailer.get("metadata", {}),
        path=path,
        storage_class=trailer.get("storage_class", "STANDARD"),
        headers=trailer.get("headers", {}),
        checksum=trailer.get("checksum"),
        parts=trailer.get("parts"),
    )


def check_bucket_name(name: str) -> None:
    """S3's rules for a new bucket's name; raises InvalidBucketName."""
    if (
        not _BUCKET_RE.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_RE.match(name)
        or name.startswith(("xn--", "sthree-"))
        or name.endswith(("-s3alias", "--ol-s3"))
    ):
        raise S3Error(400, "InvalidBucketName", f"The specified bucket is not valid: {name[:80]}")


def check_key(key: str) -> None:
    """A key S3 can hold: 1 to 1024 bytes of UTF-8 without C1 control characters; raises S3Error."""
    if not key:
        raise invalid_argument("an object key must not be empty")
    if _C1.search(key):
        raise S3Error(400, "InvalidURI", "Couldn't parse the specified URI.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error(400, "KeyTooLongError", f"Your key is too long: at most {MAX_KEY_BYTES} bytes of UTF-8")


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
        self._locks = [threading.Lock() for _ in range(64)]
        self._keys: dict[str, list[str]] = {}  # bucket -> its keys in order, from its first listing on
        self._keys_lock = threading.Lock()
        self._arrivals: dict[tuple[str, str], tuple[threading.Event, int]] = {}  # (bucket, key) -> (event, waiters)
        self._arrivals_lock = threading.Lock()
        self._forget_old_completions()

    def _lock(self, name: str) -> threading.Lock:
        return self._locks[hash(name) % len(self._locks)]

    # buckets
    def _bucket(self, name: str) -> Path:
        path = self.buckets / name
        if not _BUCKET_RE.match(name) or not path.is_dir():
            raise no_bucket(name)
        return path

    def list_buckets(self) -> list[tuple[str, float]]:
        """(name, creation time) of every bucket, by name."""
        out = []
        for p in self.buckets.iterdir():
            if p.is_dir():
                out.append((p.name, self.bucket_info(p.name).get("created", p.stat().st_mtime)))
        return sorted(out)

    def bucket_info(self, name: str) -> dict:
        """{"created": time, "location": constraint or ""} (a bucket from before this file knows neither)."""
        path = self._bucket(name)
        try:
            return json.loads((path / BUCKET_FILE).read_bytes())
        except (OSError, ValueError):
            return {}

    def head_bucket(self, name: str) -> None:
        self._bucket(name)

    def create_bucket(self, name: str, location: str = "") -> bool:
        """True when created, False when it was there already (S3's us-east-1 answers the owner 200 either way)."""
        check_bucket_name(name)
        path = self.buckets / name
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._os_error(exc) from exc
        try:
            self._write_small(path / BUCKET_FILE, {"created": time.time(), "location": location})
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        fsync_dir(self.buckets)
        return True

    def delete_bucket(self, name: str) -> None:
        path = self._bucket(name)
        if any(n != BUCKET_FILE for n in os.listdir(path)):
            raise S3Error(409, "BucketNotEmpty", f"The bucket you tried to delete is not empty: {name}")
        info = self.bucket_info(name)
        (path / BUCKET_FILE).unlink(missing_ok=True)
        try:
            path.rmdir()
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:  # an object arrived meanwhile: the bucket stays, whole
                self._write_small(path / BUCKET_FILE, info)
                raise S3Error(409, "BucketNotEmpty", f"The bucket you tried to delete is not empty: {name}") from exc
            raise
        with self._keys_lock:
            self._keys.pop(name, None)
        fsync_dir(self.buckets)

    def _write_small(self, dest: Path, doc: dict) -> None:
        tmp = self.tmp / uuid.uuid4().hex
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as f:
                f.write(json.dumps(doc).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._os_error(exc) from exc

    # objects
    def _object_path(self, bucket: str, key: str) -> Path:
        check_key(key)
        return self._bucket(bucket) / _name(key)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self._object_path(bucket, key)
        try:
            return read_info(path)
        except FileNotFoundError:
            raise no_key(key) from None

    def find(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            return self.head(bucket, key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise

    def open(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The object's metadata and body from one open file: a PUT renamed over it meanwhile cannot mix in.

        The caller closes the file.
        """
        path = self._object_path(bucket, key)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise no_key(key) from None
        try:
            return _info_of(f, path), f
        except BaseException:
            f.close()
            raise

    def put(
        self,
        bucket: str,
        key: str,
        payload: Payload,
        meta: Meta,
        precondition: Callable[[ObjectInfo | None], None] | None = None,
        *,
        parts: list | None = None,
        etag: str | None = None,
        checksum: Callable[[], dict | None] | None = None,
    ) -> ObjectInfo:
        """Streams `payload` to disk; the object exists, durably, once this returns.

        `precondition(current or None)` runs under the key's lock just before the object
        replaces the current one, and refuses by raising. REDUCED_REDUNDANCY (S3's class for
        reproducible data) skips the two fsyncs, which are most of a small PUT's latency
        here: such an object survives a crash of any process, not a power loss. The rename
        still makes it appear whole or not at all to readers.
        """
        if meta.storage_class not in STORAGE_CLASSES:
            raise S3Error(
                400,
                "InvalidStorageClass",
                f"The storage class you specified is not valid: "
                f"{meta.storage_class} (this endpoint stores {', '.join(STORAGE_CLASSES)})",
            )
        dest = self._object_path(bucket, key)

        def trailer() -> dict:  # read once the body has streamed
            doc = {
                "key": key,
                "etag": etag or payload.etag,
                "content_type": meta.content_type or "binary/octet-stream",
                "metadata": meta.metadata,
            }
            if meta.storage_class != "STANDARD":
                doc["storage_class"] = meta.storage_class
            if meta.headers:
                doc["headers"] = meta.headers
            summary = checksum() if checksum else payload.checksum
            if summary:
                doc["checksum"] = summary
            if parts:
                doc["parts"] = parts
            return doc

        info = self._write(dest, payload, trailer, durable=meta.storage_class == "STANDARD", precondition=precondition)
        self._indexed(bucket, key)
        with self._arrivals_lock:
            waiting = self._arrivals.get((bucket, key))
        if waiting is not None:
            waiting[0].set()
        return info

    def wait_for(self, bucket: str, key: str, timeout_s: float) -> bool:
        """Waits up to `timeout_s` for an object at `key`; True once there is one.

        What a reader polling for a key that is not there yet would otherwise pay a request
        for each time: a put wakes every reader waiting for its key at once.
        """
        path = self._object_path(bucket, key)
        with self._arrivals_lock:
            event, count = self._arrivals.get((bucket, key)) or (threading.Event(), 0)
            self._arrivals[(bucket, key)] = (event, count + 1)
        try:
            # checked after registering, so a put that lands in between is not missed
            return path.exists() or (event.wait(timeout_s) and path.exists())
        finally:
            with self._arrivals_lock:
                event, count = self._arrivals[(bucket, key)]
                if count == 1:
                    del self._arrivals[(bucket, key)]
                else:
                    self._arrivals[(bucket, key)] = (event, count - 1)

    def _write(
        self,
        dest: Path,
        body: Iterable[bytes],
        trailer: Callable[[], dict],
        durable: bool = True,
        precondition: Callable[[ObjectInfo | None], None] | None = None,
    ) -> ObjectInfo:
        tmp = self.tmp / uuid.uuid4().hex
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb", buffering=0) as f:
                size = 0
                for chunk in body:
                    f.write(chunk)
                    size += len(chunk)
                doc = trailer()
                meta = json.dumps(doc).encode()
                f.write(meta + _FOOTER.pack(len(meta), _MAGIC))
                if durable:
                    os.fsync(f.fileno())
            if precondition is None:
                os.replace(tmp, dest)
            else:
                with self._lock(str(dest)):
                    try:
                        current = read_info(dest)
                    except FileNotFoundError:
                        current = None
                    precondition(current)
                    os.replace(tmp, dest)
            if durable:
                fsync_dir(dest.parent)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._os_error(exc) from exc
            raise
        return _info(doc, size, time.time(), dest)

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
        self._indexed(bucket, key)
        fsync_dir(path.parent)

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

    def keys(self, bucket: str, prefix: str = "", after: str = "") -> Iterator[tuple[str, str]]:
        """(key, file name) of the objects whose keys start with `prefix` and sort after `after`, in key order.

        A page costs what it lists, not what the bucket holds: the bucket's folder is read
        once, at its first listing, into a sorted index that every put and delete of this
        process (the folder's only writer) keeps up to date. Reading it in slices, each
        from where the last ended, lets writes go on while a listing walks.
        """
        folder = self._bucket(bucket)
        last = after
        while True:
            with self._keys_lock:
                index = self._keys.get(bucket)
                if index is None:
                    index = self._keys[bucket] = self._read_keys(folder)
                at = bisect.bisect_right(index, last) if last >= prefix else bisect.bisect_left(index, prefix)
                chunk = index[at : at + 1000]
            for key in chunk:
                if not key.startswith(prefix):  # past the prefix: every later key is too
                    return
                yield key, _name(key)
            if len(chunk) < 1000:
                return
            last = chunk[-1]

    @staticmethod
    def _read_keys(folder: Path) -> list[str]:
        keys = []
        for name in os.listdir(folder):
            if name == BUCKET_FILE:
                continue
            if name.startswith(_HASHED):
                try:
                    keys.append(read_info(folder / name).key)
                except (OSError, ValueError):
                    continue
            else:
                keys.append(urllib.parse.unquote(name))
        keys.sort()
        return keys

    def _indexed(self, bucket: str, key: str) -> None:
        """After a put or delete of `key`, its entry in a listed bucket's index says what the folder holds now.

        Looking at the folder under the index's lock, rather than trusting the caller's
        operation, keeps a put and a delete of one key that race from leaving the index wrong.
        """
        with self._keys_lock:
            index = self._keys.get(bucket)
            if index is None:
                return
            present = (self.buckets / bucket / _name(key)).exists()
            at = bisect.bisect_left(index, key)
            found = at < len(index) and index[at] == key
            if present and not found:
                index.insert(at, key)
            elif not present and found:
                del index[at]

    def info(self, bucket: str, name: str) -> ObjectInfo | None:
        """The object stored as `name` in `bucket` (from `keys`), or None when it went meanwhile."""
        try:
            return read_info(self.buckets / bucket / name)
        except (OSError, ValueError):
            return None

    def list(self, bucket: str, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose keys start with `prefix` and sort after `after`, in key order."""
        for _, name in self.keys(bucket, prefix, after):
            info = self.info(bucket, name)
            if info is not None:
                yield info

    # multipart uploads
    def create_upload(self, bucket: str, key: str, meta: Meta, checksum: str | None, checksum_type: str | None) -> str:
        self._object_path(bucket, key)
        if meta.storage_class not in STORAGE_CLASSES:
            raise S3Error(
                400, "InvalidStorageClass", f"The storage class you specified is not valid: {meta.storage_class}"
            )
        upload_id = uuid.uuid4().hex
        folder = self.uploads / upload_id
        doc = {
            "bucket": bucket,
            "key": key,
            "initiated": time.time(),
            "content_type": meta.content_type,
            "metadata": meta.metadata,
            "headers": meta.headers,
            "storage_class": meta.storage_class,
            "checksum": checksum,
            "checksum_type": checksum_type,
        }
        try:
            folder.mkdir(mode=0o700)
            self._write_small(folder / "upload.json", doc)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return upload_id

    def upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict]:
        """The folder and settings of an upload in progress; raises NoSuchUpload."""
        folder = self.uploads / upload_id
        try:
            doc = json.loads((folder / "upload.json").read_text()) if re.fullmatch(r"[0-9a-f]{32}", upload_id) else None
        except (OSError, ValueError):
            doc = None
        if doc is None or doc["bucket"] != bucket or doc["key"] != key:
            raise no_upload(upload_id)
        return folder, doc

    def put_part(self, bucket: str, key: str, upload_id: str, number: int, payload: Payload) -> ObjectInfo:
        folder, _ = self.upload(bucket, key, upload_id)
        if not 1 <= number <= MAX_PARTS:
            raise invalid_argument(f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive")
        return self._write(
            folder / f"part-{number:05d}",
            payload,
            lambda: {"key": key, "etag": payload.etag, "checksum": payload.checksum},
        )

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[tuple[int, ObjectInfo]]:
        folder, _ = self.upload(bucket, key, upload_id)
        out = []
        for name in sorted(os.listdir(folder)):
            if name.startswith("part-"):
                try:
                    out.append((int(name[5:]), read_info(folder / name)))
                except (OSError, ValueError):
                    continue
        return out

    def list_uploads(self, bucket: str) -> list[tuple[str, str, float, dict]]:
        """(key, upload id, initiated, settings) of the bucket's uploads in progress, by key then time."""
        self._bucket(bucket)
        out = []
        for folder in self.uploads.iterdir():
            try:
                doc = json.loads((folder / "upload.json").read_text())
            except (OSError, ValueError):
                continue
            if doc["bucket"] == bucket:
                out.append((doc["key"], folder.name, doc.get("initiated", 0.0), doc))
        return sorted(out, key=lambda u: (u[0], u[2], u[1]))

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str, str | None]],
        expected_checksum: str | None,
        precondition: Callable[[ObjectInfo | None], None] | None,
    ) -> tuple[ObjectInfo, dict | None]:
        """Assembles the listed parts (number, ETag, checksum the client saw) into the object.

        Returns the object and its checksum summary. A completion already done answers what it answered.
        """
        with self._lock(upload_id):
            done = self._completed(bucket, key, upload_id)
            if done is not None:
                return done
            folder, upload = self.upload(bucket, key, upload_id)
            chosen = self._chosen_parts(folder, upload, parts)
            algorithm, kind = upload.get("checksum"), upload.get("checksum_type")
            whole = algorithm if algorithm and kind == checksums.FULL_OBJECT else None
            if not algorithm and checksums.DEFAULT:
                whole, kind = checksums.DEFAULT, checksums.FULL_OBJECT
            body = (chunk for _, info in chosen for chunk in self.read_range(info, 0, info.size))
            payload = Payload(body, whole, expected_checksum=(lambda: expected_checksum) if whole else None)

            def summary() -> dict | None:
                if whole:
                    return {"algorithm": whole, "value": checksums.encode(payload.digest), "type": kind}
                if algorithm:
                    digests = [checksums.decode(i.checksum["value"], algorithm) for _, i in chosen]
                    value = checksums.composite(algorithm, digests)
                    if expected_checksum is not None and expected_checksum != value:
                        raise bad_digest(algorithm)
                    return {"algorithm": algorithm, "value": value, "type": checksums.COMPOSITE}
                return None

            etag = hashlib.md5(b"".join(bytes.fromhex(i.etag) for _, i in chosen)).hexdigest() + f"-{len(chosen)}"
            layout = [[i.size, i.checksum["value"] if algorithm and i.checksum else None] for _, i in chosen]
            meta = Meta(upload["content_type"], upload["metadata"] or {}, upload.get("headers") or {})
            meta.storage_class = upload.get("storage_class") or "STANDARD"
            info = self.put(bucket, key, payload, meta, precondition, parts=layout, etag=etag, checksum=summary)
            record = {"bucket": bucket, "key": key, "etag": info.etag, "checksum": info.checksum, "at": time.time()}
            self._write_small(folder / "completed.json", record)
            for name in os.listdir(folder):
                if name != "completed.json":
                    (folder / name).unlink(missing_ok=True)
            return info, info.checksum

    def _chosen_parts(self, folder: Path, upload: dict, parts: list[tuple[int, str, str | None]]):
        if not parts:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed: it lists no parts")
        numbers = [n for n, _, _ in parts]
        if numbers != sorted(numbers):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        listed = {n: (etag, cksum) for n, etag, cksum in parts}  # a part listed twice: the last mention counts
        algorithm = upload.get("checksum")
        chosen = []
        for number in sorted(listed):
            etag, claimed = listed[number]
            try:
                info = read_info(folder / f"part-{number:05d}")
            except (OSError, ValueError):
                raise S3Error(
                    400, "InvalidPart", f"One or more of the specified parts could not be found: part {number}"
                ) from None
            if info.etag != etag.strip().strip('"'):
                raise S3Error(400, "InvalidPart", f"part {number} has ETag {info.etag}, not {etag}")
            if algorithm and claimed is not None and claimed != (info.checksum or {}).get("value"):
                raise bad_digest(f"{algorithm} of part {number}")
            chosen.append((number, info))
        for number, info in chosen[:-1]:
            if info.size < MIN_PART_BYTES:
                raise S3Error(
                    400,
                    "EntityTooSmall",
                    f"Your proposed upload is smaller than the minimum allowed object size: part {number} has "
                    f"{info.size} bytes; every part but the last needs at least {MIN_PART_BYTES}",
                )
        return chosen

    def _completed(self, bucket: str, key: str, upload_id: str) -> tuple[ObjectInfo, dict | None] | None:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            return None
        try:
            record = json.loads((self.uploads / upload_id / "completed.json").read_text())
        except (OSError, ValueError):
            return None
        if record["bucket"] != bucket or record["key"] != key:
            raise no_upload(upload_id)
        info = self.find(bucket, key)
        if info is None or info.etag != record["etag"]:
            raise no_upload(upload_id)  # completed, then replaced or deleted: it answers no more
        return info, record["checksum"]

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with self._lock(upload_id):
            folder, _ = self.upload(bucket, key, upload_id)
            shutil.rmtree(folder, ignore_errors=True)

    def _forget_old_completions(self) -> None:
        cutoff = time.time() - COMPLETED_KEPT_S
        for folder in self.uploads.iterdir():
            record = folder / "completed.json"
            try:
                if record.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue
