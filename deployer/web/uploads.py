"""The page's uploads in object storage, bounded: gone after classification unless kept, and kept ones expire.

The embedded S3 keeps objects in memory, so uploads that are never deleted grow the
platform (40 uploads cost 68 MB). An upload lives while its action fetches it; one the
user asked to keep lives until it is older than `max_age_s` or pushed out, oldest first,
by `max_count` / `max_bytes`. The index is this process's; objects found under the prefix
when it starts (a previous run's) are adopted with their sizes and ages, so the caps count
them and they expire as if this process had stored them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from mlcore.errors import ObjectNotFoundError, StorageError

UPLOAD_PREFIX = "web/uploads"
MAX_AGE_S = 3600.0
MAX_COUNT = 100
MAX_BYTES = 64 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    size: int
    stored_at: float
    in_use: bool


class Uploads:
    """`put` an upload while it is classified, then `release` it (deleted unless kept); `get` serves it back."""

    def __init__(
        self,
        storage,
        *,
        prefix: str = UPLOAD_PREFIX,
        max_age_s: float = MAX_AGE_S,
        max_count: int = MAX_COUNT,
        max_bytes: int = MAX_BYTES,
        clock=time.time,
    ) -> None:
        self.storage = storage
        self.prefix = prefix.rstrip("/")
        self.max_age_s = max_age_s
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._adopted = False
        self._lock = threading.Lock()

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def put(self, data: bytes, ext: str, content_type: str) -> str:
        """Stores one upload, in use until `release`; returns its name.

        Raises:
            StorageError: storage could not be reached.
        """
        self.sweep()
        name = f"{uuid.uuid4().hex}.{ext}"
        self.storage.put_bytes(self.key(name), data, content_type)
        with self._lock:
            self._entries[name] = _Entry(len(data), self.clock(), in_use=True)
        self.sweep()
        return name

    def release(self, name: str, keep: bool = False) -> None:
        """The action is done with it: delete it now, or keep it until it expires."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return
            entry.in_use = False
        if not keep:
            self._delete([name])

    def get(self, name: str) -> bytes:
        """Raises ObjectNotFoundError for an upload that is unknown, expired or deleted."""
        self.sweep()
        with self._lock:
            known = name in self._entries
        if not known:
            raise ObjectNotFoundError(f"upload {name} is not kept here")
        return self.storage.get_bytes(self.key(name))

    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def sweep(self) -> None:
        """Deletes what is too old, then the oldest idle uploads past the count and byte caps."""
        self._adopt()
        now = self.clock()
        with self._lock:
            idle = sorted((e.stored_at, n) for n, e in self._entries.items() if not e.in_use)
            victims = [n for stored_at, n in idle if now - stored_at > self.max_age_s]
            count = len(self._entries) - len(victims)
            size = sum(e.size for n, e in self._entries.items() if n not in victims)
            for _, n in idle:
                if n in victims:
                    continue
                if count <= self.max_count and size <= self.max_bytes:
                    break
                victims.append(n)
                count, size = count - 1, size - self._entries[n].size
        if victims:
            self._delete(victims)

    def _adopt(self) -> None:
        if self._adopted:
            return
        found = list(self.storage.list_objects(self.prefix + "/"))
        with self._lock:
            if self._adopted:
                return
            now, wall = self.clock(), time.time()
            for key, size, modified in found:
                age = max(0.0, wall - modified) if modified else 0.0
                self._entries.setdefault(key.rsplit("/", 1)[1], _Entry(size, now - age, in_use=False))
            self._adopted = True

    def _delete(self, names: list[str]) -> None:
        """Forgets them once storage has deleted them; a failed delete is retried by the next sweep."""
        try:
            self.storage.delete_keys([self.key(n) for n in names], what=f"{self.prefix}/")
        except StorageError as exc:
            log.warning("could not delete %d page upload(s), will retry: %s", len(names), exc)
            return
        with self._lock:
            for n in names:
                self._entries.pop(n, None)
