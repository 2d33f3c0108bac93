"""Durable state of the local platform: entities and activation records in SQLite (WAL).

An activation is written when it starts and again when it ends, so a record is never
lost: one that was in flight when the platform died is closed on the next start as a
whisk internal error instead of vanishing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

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
CREATE INDEX IF NOT EXISTS activations_by_start ON activations (namespace, start DESC);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # entities
    def get(self, namespace: str, collection: str, path: str) -> dict | None:
        rows = self._exec("SELECT doc FROM entities WHERE namespace=? AND collection=? AND path=?",
                          (namespace, collection, path))
        return json.loads(rows[0][0]) if rows else None

    def put(self, namespace: str, collection: str, path: str, doc: dict) -> None:
        self._exec("INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?)",
                   (namespace, collection, path, json.dumps(doc), int(time.time() * 1000)))

    def delete(self, namespace: str, collection: str, path: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM entities WHERE namespace=? AND collection=? AND path=?",
                                   (namespace, collection, path))
            return cur.rowcount > 0

    def list(self, namespace: str, collection: str, prefix: str | None = None) -> list[dict]:
        rows = self._exec("SELECT path, doc FROM entities WHERE namespace=? AND collection=? ORDER BY updated DESC",
                          (namespace, collection))
        return [json.loads(doc) for path, doc in rows if prefix is None or path.startswith(prefix + "/")]

    # activations
    def begin_activation(self, doc: dict, path: str) -> None:
        self._exec("INSERT INTO activations VALUES (?,?,?,?,?,0,?)",
                   (doc["activationId"], doc["namespace"], doc["name"], path, doc["start"], json.dumps(doc)))

    def end_activation(self, doc: dict) -> None:
        self._exec("UPDATE activations SET done=1, doc=? WHERE id=?", (json.dumps(doc), doc["activationId"]))

    def get_activation(self, namespace: str, activation_id: str) -> dict | None:
        rows = self._exec("SELECT doc FROM activations WHERE id=? AND namespace=?", (activation_id, namespace))
        return json.loads(rows[0][0]) if rows else None

    def list_activations(self, namespace: str, name: str | None, limit: int, skip: int,
                         since: int | None = None, upto: int | None = None) -> list[dict]:
        sql = "SELECT doc FROM activations WHERE namespace=?"
        args: list = [namespace]
        if name:
            sql += " AND (path=? OR name=?)"
            args += [name, name]
        if since is not None:
            sql += " AND start>=?"
            args.append(since)
        if upto is not None:
            sql += " AND start<=?"
            args.append(upto)
        sql += " ORDER BY start DESC LIMIT ? OFFSET ?"
        args += [limit, skip]
        return [json.loads(r[0]) for r in self._exec(sql, tuple(args))]

    def count_activations(self) -> int:
        return self._exec("SELECT COUNT(*) FROM activations")[0][0]

    def close_interrupted(self, make_doc) -> int:
        """Closes the records left in flight by a platform that died; returns how many."""
        rows = self._exec("SELECT doc FROM activations WHERE done=0")
        for (doc,) in rows:
            self.end_activation(make_doc(json.loads(doc)))
        return len(rows)
