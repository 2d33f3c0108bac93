"""Durable state of the local platform: entities and activation records in SQLite (WAL).

An activation is written when it starts and again when it ends, so a record is never
lost: one that was in flight when the platform died is closed on the next start as a
whisk internal error instead of vanishing. The start is written before the activation
runs (a full disk refuses the invoke); the end goes to a writer thread that commits what
has queued up in one transaction, off the invoke's path, and every read of activations
and every stop waits for it first, so a caller never misses a record it was answered for.

Entities are read on every invoke; this process is the database's only writer, so their
parsed documents are cached and dropped on every write of the same key.

An entity list pages in SQL, newest first, from an index that also holds the path a package's
list filters on: a page parses its own documents only, not the namespace's. Every read of
activations is served by an index, so its cost follows what it returns, not
what is stored: the list and count (finished records only) by namespace, and by name, in
start order; the records left open, which every start looks for, by a partial index that
holds only those.

As in OpenWhisk's CouchDB, an entity's id is its namespace and path whatever its kind (an
action, a package, a trigger and a rule cannot share a name), and every write names the
revision it read: a write over a newer revision, or over another kind's document, is
refused instead of silently replacing it. Without the revision, 20 parallel overwrites
answered 20 x 200 and left fewer versions than that.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from localwhisk.errors import Conflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    namespace TEXT NOT NULL, collection TEXT NOT NULL, path TEXT NOT NULL,
    doc TEXT NOT NULL, updated INTEGER NOT NULL,
    PRIMARY KEY (namespace, collection, path)
);
CREATE TABLE IF NOT EXISTS activations (
    id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    start INTEGER NOT NULL, done INTEGER NOT NULL, doc TEXT NOT NULL
);
DROP INDEX IF EXISTS activations_by_start;
CREATE INDEX IF NOT EXISTS activations_listed ON activations (namespace, done, start DESC);
CREATE INDEX IF NOT EXISTS activations_by_name ON activations (namespace, path, done, start DESC);
CREATE INDEX IF NOT EXISTS activations_open ON activations (id) WHERE done=0;
CREATE INDEX IF NOT EXISTS entities_by_id ON entities (namespace, path);
CREATE INDEX IF NOT EXISTS entities_listed ON entities (namespace, collection, updated DESC, path DESC);
"""
_NAME_KEYS = 1  # user_version from which a record's `path` column holds its name_key
ABSENT = 0  # the revision of an entity that does not exist: a write naming it creates


class RevisionConflict(Conflict):
    """The entity changed (or appeared) since it was read: OpenWhisk's DocumentConflictException, a 409."""

    def __init__(self) -> None:
        super().__init__("Concurrent modification to resource detected.")


class KindConflict(Conflict):
    """The id holds another kind of entity: OpenWhisk's DocumentTypeMismatchException, a 409."""

    def __init__(self) -> None:
        super().__init__("Resource by this name exists but is not in this collection.")


log = logging.getLogger("store")
_SELECT_ENTITY = "SELECT doc FROM entities WHERE namespace=? AND collection=? AND path=?"


def name_key(record: dict) -> str:
    """What the activation list's `name` filter matches a record by, as OpenWhisk's activations view derives it
    (whisks-filters.v2.1.1): `<binding>/<name>` for a run through a package binding, `<package>/<name>` for an
    action in a package, else the bare name (actions in the default package, triggers)."""
    annotations = {a.get("key"): a.get("value") for a in record.get("annotations", [])}
    binding, path = annotations.get("binding"), annotations.get("path")
    if isinstance(binding, str) and binding.count("/") == 1:
        return f"{binding.split('/')[1]}/{record['name']}"
    if isinstance(path, str) and path.count("/") == 2:
        return f"{path.split('/')[1]}/{record['name']}"
    return record["name"]


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if "rev" not in {row[1] for row in self._db.execute("PRAGMA table_info(entities)")}:
            self._db.execute("ALTER TABLE entities ADD COLUMN rev INTEGER NOT NULL DEFAULT 1")
        if self._db.execute("PRAGMA user_version").fetchone()[0] < _NAME_KEYS:
            self._rekey_bindings()
        self._cache: dict[tuple[str, str, str], dict] = {}
        self._ends: dict[str, str] = {}  # activation id -> its closed record as JSON, not yet committed
        self._queued = 0  # ends handed to the writer so far
        self._written = 0  # of those, committed (or given up on)
        self._write_error: sqlite3.Error | None = None
        self._wcond = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._write_ends, name="activation-writer", daemon=True)
        self._writer.start()

    def _rekey_bindings(self) -> None:
        """Records written before name_key kept a run through a binding under the bound package's path."""
        rows = self._db.execute("SELECT id, doc FROM activations WHERE doc LIKE '%\"binding\"%'").fetchall()
        keyed = [(name_key(json.loads(doc)), aid) for aid, doc in rows]
        self._db.execute("BEGIN")
        self._db.executemany("UPDATE activations SET path=? WHERE id=?", keyed)
        self._db.execute(f"PRAGMA user_version={_NAME_KEYS}")
        self._db.execute("COMMIT")

    def close(self) -> None:
        self.flush(raise_errors=False)
        with self._wcond:
            self._closed = True
            self._wcond.notify_all()
        self._writer.join(timeout=30)
        with self._lock:
            self._db.close()

    def _write_ends(self) -> None:
        while True:
            with self._wcond:
                while not self._ends and not self._closed:
                    self._wcond.wait()
                if not self._ends:
                    return
                batch, self._ends = self._ends, {}
                upto = self._queued
            error = self._commit_ends([(text, aid) for aid, text in batch.items()])
            with self._wcond:
                self._write_error = error
                self._written = upto
                self._wcond.notify_all()
                if error is None:
                    continue
                if self._closed:  # stopping on a broken disk: the starts are there and close as interrupted
                    log.error(
                        "gave up on %d activation record(s) at stop; the next start closes them as interrupted",
                        len(batch),
                    )
                    return
                for aid, doc in batch.items():
                    self._ends.setdefault(aid, doc)
                self._wcond.wait(1.0)  # a full disk: retry, but not in a spin

    def _commit_ends(self, rows: list[tuple[str, str]]) -> sqlite3.Error | None:
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany("UPDATE activations SET done=1, doc=? WHERE id=?", rows)
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            log.error("could not write %d activation record(s): %s", len(rows), exc)
            return exc
        return None

    def flush(self, raise_errors: bool = True) -> None:
        """Waits until every record closed so far is committed; raises the writer's error if it failed."""
        with self._wcond:
            target = self._queued
            while self._written < target and not self._closed:
                self._wcond.wait()
            if raise_errors and self._write_error is not None:
                raise self._write_error

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # entities
    def get(self, namespace: str, collection: str, path: str) -> dict | None:
        """The entity, or None where the id is free.

        Raises:
            KindConflict: the id holds another kind of entity (OpenWhisk reads the document and finds
            it is not of the collection asked for).
        """
        rows = self._exec(_SELECT_ENTITY, (namespace, collection, path))
        if rows:
            return json.loads(rows[0][0])
        self._check_free(namespace, path)
        return None

    def get_shared(self, namespace: str, collection: str, path: str) -> dict | None:
        """As `get`, from the cache: the document is shared between callers, who must not change it."""
        key = (namespace, collection, path)
        doc = self._cache.get(key)
        if doc is None:
            with self._lock:
                rows = self._db.execute(_SELECT_ENTITY, key).fetchall()
                doc = json.loads(rows[0][0]) if rows else None
                if doc is not None:
                    self._cache[key] = doc
            if doc is None:
                self._check_free(namespace, path)
        return doc

    def _check_free(self, namespace: str, path: str) -> None:
        if self._exec("SELECT 1 FROM entities WHERE namespace=? AND path=? LIMIT 1", (namespace, path)):
            raise KindConflict()

    def get_revision(self, namespace: str, collection: str, path: str) -> tuple[dict | None, int]:
        """(document, revision) for a read-modify-write; (None, ABSENT) where there is none.

        Raises:
            KindConflict: the id holds another kind of entity.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT collection, doc, rev FROM entities WHERE namespace=? AND path=?", (namespace, path)
            ).fetchall()
        for found, doc, rev in rows:
            if found == collection:
                return json.loads(doc), rev
        if rows:
            raise KindConflict()
        return None, ABSENT

    def put(self, namespace: str, collection: str, path: str, doc: dict, rev: int) -> int:
        """Writes `doc` over revision `rev` (ABSENT: creates it); returns the new revision.

        Raises:
            RevisionConflict: the entity is no longer at `rev`.
            KindConflict: the id holds another kind of entity.
        """
        text = json.dumps(doc)
        with self._lock:
            self._cache.pop((namespace, collection, path), None)
            rows = self._db.execute(
                "SELECT collection, rev FROM entities WHERE namespace=? AND path=?", (namespace, path)
            ).fetchall()
            if any(found != collection for found, _ in rows):
                raise KindConflict()
            current = rows[0][1] if rows else ABSENT
            if current != rev:
                raise RevisionConflict()
            self._db.execute(
                "INSERT OR REPLACE INTO entities (namespace, collection, path, doc, updated, rev) VALUES (?,?,?,?,?,?)",
                (namespace, collection, path, text, int(time.time() * 1000), current + 1),
            )
            return current + 1

    def delete(self, namespace: str, collection: str, path: str, rev: int | None = None) -> bool:
        """Deletes the entity (only at revision `rev`, where given).

        Raises:
            RevisionConflict: it is no longer at `rev`.
        """
        with self._lock:
            self._cache.pop((namespace, collection, path), None)
            sql = "DELETE FROM entities WHERE namespace=? AND collection=? AND path=?"
            args: tuple = (namespace, collection, path)
            if rev is not None:
                sql, args = sql + " AND rev=?", (*args, rev)
            cur = self._db.execute(sql, args)
            if rev is not None and cur.rowcount == 0:
                raise RevisionConflict()
            return cur.rowcount > 0

    def list(
        self, namespace: str, collection: str, prefix: str | None = None, limit: int | None = None, skip: int = 0
    ) -> list[dict]:
        """The newest first (then by path, so pages never overlap), `limit` (None: all) past `skip`; `prefix` a
        package: its actions only."""
        where, args = self._entities_in(namespace, collection, prefix)
        rows = self._exec(
            f"SELECT doc FROM entities {where} ORDER BY updated DESC, path DESC LIMIT ? OFFSET ?",
            (*args, -1 if limit is None else limit, skip),
        )
        return [json.loads(doc) for (doc,) in rows]

    def count(self, namespace: str, collection: str, prefix: str | None = None) -> int:
        where, args = self._entities_in(namespace, collection, prefix)
        return self._exec(f"SELECT COUNT(*) FROM entities {where}", args)[0][0]

    @staticmethod
    def _entities_in(namespace: str, collection: str, prefix: str | None) -> tuple[str, tuple]:
        if prefix is None:
            return "WHERE namespace=? AND collection=?", (namespace, collection)
        # paths under `prefix/`: '0' is the character after '/'
        return "WHERE namespace=? AND collection=? AND path>? AND path<?", (
            namespace,
            collection,
            prefix + "/",
            prefix + "0",
        )

    # activations
    def begin_activation(self, doc: dict) -> None:
        self._exec(
            "INSERT INTO activations VALUES (?,?,?,?,?,0,?)",
            (doc["activationId"], doc["namespace"], doc["name"], name_key(doc), doc["start"], json.dumps(doc)),
        )

    def end_activation(self, doc: dict) -> None:
        """Queues the closed record; raises (TypeError, ValueError) here, in the caller, for one JSON cannot carry,
        so the writer thread only ever sees text."""
        text = json.dumps(doc, allow_nan=False)
        with self._wcond:
            self._ends[doc["activationId"]] = text
            self._queued += 1
            self._wcond.notify_all()

    def get_activation(self, namespace: str, activation_id: str) -> dict | None:
        self.flush()
        rows = self._exec("SELECT doc FROM activations WHERE id=? AND namespace=?", (activation_id, namespace))
        return json.loads(rows[0][0]) if rows else None

    def list_activations(
        self,
        namespace: str,
        name: str | None,
        limit: int,
        skip: int,
        since: int | None = None,
        upto: int | None = None,
    ) -> list[dict]:
        """The newest first; `name` is a record's name_key."""
        where, args = self._matching(namespace, name, since, upto)
        sql = f"SELECT doc FROM activations {where} ORDER BY start DESC LIMIT ? OFFSET ?"
        rows = self._exec(sql, (*args, limit, skip))
        return [json.loads(r[0]) for r in rows]

    def count_activations(
        self, namespace: str, name: str | None, since: int | None = None, upto: int | None = None
    ) -> int:
        where, args = self._matching(namespace, name, since, upto)
        return self._exec(f"SELECT COUNT(*) FROM activations {where}", args)[0][0]

    def _matching(self, namespace: str, name: str | None, since: int | None, upto: int | None) -> tuple[str, tuple]:
        """The WHERE clause (and its arguments) of the records a list or count is about, once the writer is done."""
        self.flush()
        where, args = "WHERE namespace=? AND done=1", [namespace]
        for clause, value in (("path=?", name), ("start>=?", since), ("start<=?", upto)):
            if value is not None:
                where += f" AND {clause}"
                args.append(value)
        return where, tuple(args)

    def close_interrupted(self, make_doc) -> int:
        """Closes the records left in flight by a platform that died; returns how many."""
        self.flush(raise_errors=False)
        rows = self._exec("SELECT doc FROM activations WHERE done=0")
        for (doc,) in rows:
            self.end_activation(make_doc(json.loads(doc)))
        self.flush()
        return len(rows)
