"""The store answers every list and activation read from an index: its cost follows what it returns, not what is stored.

The real queries are captured as the store runs them (SQLite's trace, values expanded) and
SQLite's own plan for each is checked, so a query changed without its index fails here.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _plans(store: Store, run, table: str = "activations") -> list[tuple[str, str]]:
    """(statement, its query plan) of each read of `table` that `run` makes."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        run()
    finally:
        store._db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and f"FROM {table}" in s]
    assert reads, f"the call ran no read of {table}"
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


ENTITY_READS = {
    "actions page": lambda s: s.list("guest", "actions", limit=30, skip=60),
    "a package's actions page": lambda s: s.list("guest", "actions", prefix="p1", limit=30, skip=2),
    "every trigger": lambda s: s.list("guest", "triggers"),
}


@pytest.fixture()
def entities(tmp_path):
    store = Store(tmp_path / "platform.db")
    for i in range(120):
        path = f"a{i}" if i % 4 else f"p{i % 3}/a{i}"
        store.put("guest", "actions", path, {"name": path.rsplit("/", 1)[-1], "i": i}, 0)
    store.put("guest", "packages", "p1", {"name": "p1"}, 0)
    yield store
    store.close()


@pytest.mark.parametrize("what", ENTITY_READS)
def test_entity_lists_page_from_an_index(entities, what):
    for sql, plan in _plans(entities, lambda: ENTITY_READS[what](entities), table="entities"):
        assert "USING" in plan and "INDEX" in plan, f"{what} scans the table: {sql} -> {plan}"
        if "path>" in sql:  # a package's actions: found by the path range, a sort of those only
            assert "path>? AND path<?" in plan, f"{what} reads the namespace to find a package: {sql} -> {plan}"
        else:
            assert "TEMP B-TREE" not in plan, f"{what} sorts the namespace to page it: {sql} -> {plan}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.one_of(st.none(), st.integers(1, 40)),
    skip=st.integers(0, 130),
    prefix=st.sampled_from([None, "p0", "p1", "p2", "p", "a1"]),
)
def test_entity_pages_are_the_slices_of_the_whole_list(entities, limit, skip, prefix):
    everything = entities.list("guest", "actions")  # written within a few ms: equal times, in one order still
    matching = [d for d in everything if prefix is None or f"p{d['i'] % 3}" == prefix and d["i"] % 4 == 0]
    end = None if limit is None else skip + limit
    assert entities.list("guest", "actions", prefix=prefix, limit=limit, skip=skip) == matching[skip:end]
    assert entities.count("guest", "actions", prefix=prefix) == len(matching)
