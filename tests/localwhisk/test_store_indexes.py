"""The activation store answers every read from an index: its cost follows the records returned, not those stored.

The real queries are captured as the store runs them (SQLite's trace, values expanded) and
SQLite's own plan for each is checked, so a query changed without its index fails here.
"""

from __future__ import annotations

import sqlite3

import pytest

from localwhisk.store import Store


def _record(i: int, name: str) -> dict:
    return {
        "activationId": f"a{i}",
        "namespace": "guest",
        "name": name,
        "start": 1000 + i,
        "annotations": [{"key": "path", "value": f"guest/{name}"}],
    }


@pytest.fixture()
def store(tmp_path):
    store = Store(tmp_path / "platform.db")
    for i in range(20):
        doc = _record(i, f"n{i % 3}")
        store.begin_activation(doc)
        if i % 5:
            store.end_activation(doc)
    store.flush()
    yield store
    store.close()


def _plans(store: Store, run) -> list[tuple[str, str]]:
    """(statement, its query plan) of each read of activations `run` makes."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        run()
    finally:
        store._db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "activations" in s]
    assert reads, "the call ran no read of activations"
    with sqlite3.connect(store.path) as db:
        return [(s, " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + s))) for s in reads]


READS = {
    "list": lambda s: s.list_activations("guest", None, 200, 0),
    "list by name": lambda s: s.list_activations("guest", "n1", 200, 0),
    "list by name since": lambda s: s.list_activations("guest", "n1", 200, 5, since=1003, upto=1015),
    "count": lambda s: s.count_activations("guest", None),
    "count by name": lambda s: s.count_activations("guest", "n2", since=1002),
    "get": lambda s: s.get_activation("guest", "a3"),
    "open records (every start)": lambda s: s.close_interrupted(lambda doc: {**doc, "end": 1}),
}


@pytest.mark.parametrize("what", READS)
def test_activation_reads_search_an_index(store, what):
    for sql, plan in _plans(store, lambda: READS[what](store)):
        assert "USING" in plan and "INDEX" in plan, f"{what} scans the table: {sql} -> {plan}"
        assert "TEMP B-TREE" not in plan, f"{what} sorts what it read: {sql} -> {plan}"
        if "path=" in sql:
            assert "path=?" in plan, f"{what} filters the name outside the index: {sql} -> {plan}"
        if "COUNT(" in sql.upper():
            assert "COVERING INDEX" in plan, f"{what} reads each record to count it: {sql} -> {plan}"


def test_reads_still_answer_the_finished_records(store):
    # the indexes hold only finished records (done=1) and the open ones (done=0): nothing is lost between them
    listed = [r["activationId"] for r in store.list_activations("guest", "n1", 200, 0)]
    assert listed == ["a19", "a16", "a13", "a7", "a4", "a1"]
    assert store.count_activations("guest", None) == 16
    assert store.close_interrupted(lambda doc: {**doc, "end": 1}) == 4
    assert store.count_activations("guest", None) == 20
