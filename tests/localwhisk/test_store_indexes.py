"""The store answers every list and activation read from an index: its cost follows what it returns, not what is stored.

The real queries are captured as the store runs them (SQLite's trace, values expanded) and
SQLite's own plan for each is checked, so a query changed without its index fails here.
"""

from __future__ import annotations

import base64
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from localwhisk.store import Store

KEY = "0a0b0c0d-0e0f-4000-8000-000000000001:" + "k" * 64
AUTH = {"Authorization": "Basic " + base64.b64encode(KEY.encode()).decode()}


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


COUNTED = {"actions": 5, "actions/cp/": 2, "actions/cb/": 2, "packages": 2, "triggers": 1, "rules": 1}


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """The controller's app over an in-process platform and its store, with two packages, actions, a rule."""
    from localwhisk.controller.app import create_app
    from localwhisk.core import Platform
    from localwhisk.invoker.pool import Invoker

    tmp = tmp_path_factory.mktemp("counts")
    store = Store(tmp / "platform.db")
    platform = Platform(store, Invoker(max_containers=1, work_root=tmp / "containers"), api_host="http://127.0.0.1:9")
    app = create_app(platform, {"guest": KEY})
    code = {"exec": {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}}
    platform.put_package("guest", "cp", {}, overwrite=False)
    platform.put_package("guest", "cb", {"binding": {"namespace": "guest", "name": "cp"}}, overwrite=False)
    for path in ("c0", "c1", "c2", "cp/c3", "cp/c4"):
        platform.put_action("guest", path, code, overwrite=False)
    client = Client(app)
    assert client.put("/api/v1/namespaces/_/triggers/ct", json={}, headers=AUTH).status_code == 200
    rule = {"trigger": "ct", "action": "c0"}
    assert client.put("/api/v1/namespaces/_/rules/cr", json=rule, headers=AUTH).status_code == 200
    yield client, store
    platform.shutdown()
    store.close()


@pytest.mark.parametrize("path", COUNTED)
def test_count_true_counts_in_the_index_without_reading_a_document(controller, path):
    # Prepare
    client, store = controller
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    # Execute
    try:
        got = client.get(f"/api/v1/namespaces/_/{path}", query_string={"count": "true", "skip": 1}, headers=AUTH)
    finally:
        store._db.set_trace_callback(None)
    # Assert: the count past skip, from COUNT(*) alone (a package's own document may be read, to follow a binding)
    collection = path.split("/")[0]
    assert got.status_code == 200 and got.get_json() == {collection: COUNTED[path] - 1}
    counted = [s for s in statements if "FROM entities" in s and f"collection='{collection}'" in s]
    assert counted and all("COUNT(*)" in s for s in counted), f"?count=true read the documents it counts: {counted}"
