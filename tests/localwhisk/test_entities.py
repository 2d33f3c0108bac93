"""Entity PUTs checked as apache/openwhisk's controller checks them (Actions.scala, Packages.scala,
Triggers.scala, Rules.scala, ApiUtils.putEntity, Parameter.scala): sequences, parameter shapes,
one document id per name whatever the kind, and overwrites that never lose an update.

Each test failed on the platform before its check was added.
"""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from localwhisk.core import Platform
from localwhisk.errors import BadRequest
from localwhisk.invoker.pool import Invoker
from localwhisk.store import ABSENT, KindConflict, RevisionConflict, Store

ECHO = {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}
CONFORMANCE = "Resource by this name exists but is not in this collection."


def _api(platform, method: str, path: str, body=None, **params) -> requests.Response:
    return requests.request(
        method,
        f"{platform.apihost}/api/v1/namespaces/_/{path}",
        auth=tuple(platform.auth.split(":", 1)),
        json=body,
        params=params,
        timeout=60,
    )


def _refused(resp: requests.Response, status: int, error: str | None = None) -> bool:
    """OpenWhisk's error answer: the status, a JSON body of exactly {error, code}."""
    body = resp.json()
    return (
        resp.status_code == status
        and resp.headers["Content-Type"] == "application/json"
        and set(body) == {"error", "code"}
        and (error is None or body["error"] == error)
    )


def _action(platform, name: str, exec_: dict | None = None, overwrite: bool = True) -> requests.Response:
    resp = _api(platform, "PUT", f"actions/{name}", {"exec": exec_ or ECHO}, overwrite=str(overwrite).lower())
    return resp


def _sequence(platform, name: str, components: list[str]) -> requests.Response:
    return _action(platform, name, {"kind": "sequence", "components": components})


# sequences
def test_a_sequence_may_not_contain_itself_directly_or_through_another(platform):
    assert _action(platform, "seq-a").status_code == 200
    # an atomic action turned into a sequence of itself
    assert _refused(_sequence(platform, "seq-a", ["/_/seq-a"]), 400, "Sequence may not refer to itself.")
    # A -> B -> A
    assert _sequence(platform, "seq-b", ["seq-a"]).status_code == 200
    assert _refused(_sequence(platform, "seq-a", ["seq-b"]), 400, "Sequence may not refer to itself.")
    # ... and deeper: C -> B -> A, then A -> C
    assert _sequence(platform, "seq-c", ["seq-b", "seq-b"]).status_code == 200
    assert _refused(_sequence(platform, "seq-a", ["seq-c"]), 400, "Sequence may not refer to itself.")
    # nothing was written: A is still the atomic action, and runs
    assert _api(platform, "GET", "actions/seq-a").json()["exec"]["kind"] == "python:3.11"
    record = _api(platform, "POST", "actions/seq-c", {"x": 1}, blocking="true").json()
    assert record["response"]["result"] == {"x": 1}


def test_a_cycle_through_a_package_binding_is_refused(platform):
    assert _api(platform, "PUT", "packages/seq-pkg", {}).status_code == 200
    assert _api(platform, "PUT", "packages/seq-bind", {"binding": {"name": "seq-pkg"}}).status_code == 200
    assert _action(platform, "seq-pkg/leaf").status_code == 200
    assert _sequence(platform, "seq-pkg/outer", ["seq-pkg/leaf"]).status_code == 200
    assert _sequence(platform, "seq-via-bind", ["seq-bind/outer"]).status_code == 200
    refused = _sequence(platform, "seq-pkg/outer", ["/_/seq-bind/outer"])
    assert _refused(refused, 400, "Sequence may not refer to itself.")
    refused = _sequence(platform, "seq-pkg/outer", ["seq-via-bind"])
    assert _refused(refused, 400, "Sequence may not refer to itself.")


def test_sequence_components_must_exist_and_be_named_properly(platform):
    assert _refused(_sequence(platform, "seq-missing", ["no-such-action"]), 400, "Sequence component does not exist.")
    assert _refused(_sequence(platform, "seq-empty", []), 400, "No component specified for the sequence.")
    assert _refused(_sequence(platform, "seq-badname", ["a/b/c/d"]), 400)
    assert _refused(_action(platform, "seq-shape", {"kind": "sequence", "components": "seq-a"}), 400)
    assert _api(platform, "GET", "actions/seq-missing").status_code == 404


def test_the_length_limit_counts_the_atomic_actions_of_nested_sequences(platform):
    assert _action(platform, "seq-atom").status_code == 200
    assert _refused(_sequence(platform, "seq-long", ["seq-atom"] * 51), 400, "Too many actions in the sequence.")
    assert _sequence(platform, "seq-30", ["seq-atom"] * 30).status_code == 200
    assert _sequence(platform, "seq-50", ["seq-atom"] * 20 + ["seq-30"]).status_code == 200  # 50 atomic: allowed
    refused = _sequence(platform, "seq-60", ["seq-30", "seq-30"])
    assert _refused(refused, 400, "Too many actions in the sequence.")


@pytest.fixture
def in_process(tmp_path):
    """A Platform without HTTP over a real store, for state a client could not build quickly."""
    store = Store(tmp_path / "platform.db")
    platform = Platform(store, Invoker(max_containers=1, work_root=tmp_path / "containers"))
    try:
        yield platform
    finally:
        platform.shutdown()
        store.close()


def _store_sequence(store: Store, name: str, components: list[str]) -> None:
    """A sequence written straight into the store, unchecked, as one written before the checks existed."""
    exec_ = {"kind": "sequence", "components": components}
    doc = {"namespace": "guest", "name": name, "version": "0.0.1", "exec": exec_, "parameters": [], "annotations": []}
    store.put("guest", "actions", name, {**doc, "limits": {}}, ABSENT)


def test_a_chain_of_nested_sequences_deeper_than_pythons_recursion_is_checked(in_process):
    in_process.put_action("guest", "leaf", {"exec": ECHO}, overwrite=False)
    _store_sequence(in_process.store, "chain-0", ["leaf"])
    for i in range(1, 1500):
        _store_sequence(in_process.store, f"chain-{i}", [f"chain-{i - 1}"])
    doc = in_process.put_action("guest", "top", {"exec": {"kind": "sequence", "components": ["chain-1499"]}}, False)
    assert doc["exec"]["components"] == ["chain-1499"]
    with pytest.raises(BadRequest, match="may not refer to itself"):
        in_process.put_action("guest", "leaf", {"exec": {"kind": "sequence", "components": ["top"]}}, True)


def test_a_chain_of_nested_sequences_deeper_than_pythons_recursion_runs(in_process):
    in_process.put_action("guest", "leaf", {"exec": ECHO}, overwrite=False)
    below = "leaf"
    for i in range(600):  # several frames a level: far past the interpreter's 1000 for a recursive walk
        in_process.put_action("guest", f"deep-{i}", {"exec": {"kind": "sequence", "components": [below]}}, False)
        below = f"deep-{i}"
    _, doc = in_process.invoke("guest", below, {"x": 1}, blocking=True, auth="test", wait_s=120)
    assert doc["response"]["success"] and doc["response"]["result"] == {"x": 1}
    assert len(doc["logs"]) == 1  # the top sequence's one component, itself a sequence with its own record
    inner = in_process.get_activation("guest", doc["logs"][0])
    assert inner["name"] == "deep-598" and inner["cause"] == doc["activationId"]


def test_a_cycle_stored_unchecked_is_refused_not_walked_forever(in_process):
    _store_sequence(in_process.store, "loop-b", ["loop-c"])
    _store_sequence(in_process.store, "loop-c", ["loop-b"])
    with pytest.raises(BadRequest, match="may not refer to itself"):
        in_process.put_action("guest", "loop-a", {"exec": {"kind": "sequence", "components": ["loop-b"]}}, False)


# parameters and annotations
MALFORMED_KVS = [
    pytest.param([{"key": ["a"], "value": 1}], id="list-key"),
    pytest.param([{"key": {"a": 1}, "value": 1}], id="object-key"),
    pytest.param([{"key": 7, "value": 1}], id="number-key"),
    pytest.param([{"key": "a"}], id="no-value"),
    pytest.param([{"value": 1}], id="no-key"),
    pytest.param([{"key": "a", "value": 1, "init": "yes"}], id="init-not-boolean"),
    pytest.param(["a"], id="item-not-object"),
    pytest.param({"a": 1}, id="object-not-list"),
    pytest.param("a=1", id="string-not-list"),
]


def _entity_bodies(field: str, kvs) -> list[tuple[str, dict]]:
    """(path, body) for every kind that carries `field`."""
    out = [
        ("actions/kv-action", {"exec": ECHO, field: kvs}),
        ("packages/kv-package", {field: kvs}),
        ("packages/kv-binding", {"binding": {"name": "kv-source"}, field: kvs}),
        ("triggers/kv-trigger", {field: kvs}),
    ]
    if field == "annotations":
        out.append(("rules/kv-rule", {"trigger": "kv-source-trigger", "action": "kv-source-action", field: kvs}))
    return out


@pytest.fixture(scope="module")
def kv_sources(platform):
    assert _api(platform, "PUT", "packages/kv-source", {}, overwrite="true").status_code == 200
    assert _api(platform, "PUT", "triggers/kv-source-trigger", {}, overwrite="true").status_code == 200
    assert _action(platform, "kv-source-action").status_code == 200


@pytest.mark.parametrize("field", ["parameters", "annotations"])
@pytest.mark.parametrize("kvs", MALFORMED_KVS)
def test_malformed_parameters_are_refused_for_every_kind_and_never_stored(platform, kv_sources, field, kvs):
    for path, body in _entity_bodies(field, kvs):
        resp = _api(platform, "PUT", path, body, overwrite="true")
        assert _refused(resp, 400), (path, resp.status_code, resp.text)
        assert "malformed" in resp.json()["error"] and field in resp.json()["error"]
        assert _api(platform, "GET", path).status_code == 404, path


def test_a_well_formed_parameter_list_keeps_the_last_value_of_a_repeated_key(platform, kv_sources):
    kvs = [{"key": "a", "value": 1}, {"key": "b", "value": None}, {"key": "a", "value": 2, "init": False}]
    for path, body in _entity_bodies("parameters", kvs):
        assert _api(platform, "PUT", path, body, overwrite="true").status_code == 200, path
        stored = _api(platform, "GET", path).json()["parameters"]
        assert stored == [{"key": "a", "value": 2}, {"key": "b", "value": None}]
    assert _api(platform, "POST", "actions/kv-action", {}, blocking="true", result="true").json() == {"a": 2, "b": None}
    for path, _ in _entity_bodies("parameters", kvs):
        assert _api(platform, "DELETE", path).status_code == 200, path


@pytest.mark.parametrize(
    "path, body",
    [
        ("actions/kv-typed", {"exec": ECHO, "publish": "false"}),
        ("actions/kv-typed", {"exec": ECHO, "limits": [1]}),
        ("actions/kv-typed", {"exec": ECHO, "version": "0.0.0"}),  # SemVer.scala: not 0.0.0, none negative
        ("actions/kv-typed", {"exec": ECHO, "version": "1.-2"}),
        ("actions/kv-typed", {"exec": ECHO, "version": "one"}),
        ("actions/kv-typed", {"exec": {"kind": "python:3.11", "code": "x", "main": ["m"]}}),
        ("packages/kv-typed", {"publish": 1}),
        ("packages/kv-typed", {"binding": "kv-source"}),
        ("packages/kv-typed", {"binding": {"name": ["kv-source"]}}),
        ("triggers/kv-typed", {"limits": "none"}),
        ("rules/kv-typed", {"trigger": ["t"], "action": "kv-source-action"}),
    ],
)
def test_fields_of_the_wrong_type_are_refused(platform, kv_sources, path, body):
    assert _refused(_api(platform, "PUT", path, body, overwrite="true"), 400)
    assert _api(platform, "GET", path).status_code == 404


def test_invoke_and_fire_bodies_that_are_not_objects_are_refused(platform, kv_sources):
    for path in ("actions/kv-source-action", "triggers/kv-source-trigger"):
        for body in ([1, 2], "text", 3):
            assert _refused(_api(platform, "POST", path, body), 400), (path, body)


# one document id per name
@pytest.mark.parametrize("first", ["actions", "packages", "triggers", "rules"])
def test_a_name_is_taken_whatever_the_kind(platform, kv_sources, first):
    name = f"id-{first}"
    bodies = {
        "actions": {"exec": ECHO},
        "packages": {},
        "triggers": {},
        "rules": {"trigger": "kv-source-trigger", "action": "kv-source-action"},
    }
    assert _api(platform, "PUT", f"{first}/{name}", bodies[first]).status_code == 200
    for other in set(bodies) - {first}:
        for overwrite in ("false", "true"):
            resp = _api(platform, "PUT", f"{other}/{name}", bodies[other], overwrite=overwrite)
            assert _refused(resp, 409, CONFORMANCE), (other, resp.text)
        assert _refused(_api(platform, "GET", f"{other}/{name}"), 409, CONFORMANCE), other  # read: the same answer
    if first != "actions":
        assert _refused(_api(platform, "POST", f"actions/{name}", {}), 409, CONFORMANCE)  # nor invoked as one
    assert _api(platform, "GET", f"{first}/{name}").json()["version"] == "0.0.1"
    assert _api(platform, "DELETE", f"{first}/{name}").status_code == 200
    assert _api(platform, "PUT", f"triggers/{name}", {}).status_code == 200  # the name is free again
    assert _api(platform, "DELETE", f"triggers/{name}").status_code == 200


def test_an_action_in_a_package_has_its_own_id_but_the_package_name_is_taken(platform):
    assert _api(platform, "PUT", "packages/id-pkg", {}).status_code == 200
    assert _action(platform, "id-pkg/id-member").status_code == 200
    assert _api(platform, "PUT", "triggers/id-member", {}).status_code == 200  # /guest/id-member: another id
    assert _refused(_api(platform, "PUT", "triggers/id-pkg", {}), 409, CONFORMANCE)
    assert _refused(_action(platform, "id-pkg"), 409, CONFORMANCE)
    assert _refused(_api(platform, "PUT", "packages/id-member", {}), 409, CONFORMANCE)


# overwrites
def test_parallel_overwrites_each_get_their_own_version_or_a_conflict(platform):
    assert _action(platform, "ow-race").status_code == 200
    barrier, answers = threading.Barrier(20), []

    def overwrite(i: int) -> None:
        barrier.wait()
        code = {"kind": "python:3.11", "code": f"def main(a):\n    return {{'writer': {i}}}\n"}
        resp = _action(platform, "ow-race", code)
        answers.append((resp.status_code, resp.json()))

    threads = [threading.Thread(target=overwrite, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == 20
    ok = [body["version"] for status, body in answers if status == 200]
    conflicts = [body for status, body in answers if status == 409]
    assert len(ok) + len(conflicts) == 20 and ok
    assert all(body["error"] == "Concurrent modification to resource detected." for body in conflicts)
    assert len(set(ok)) == len(ok)  # no two writers were told they made the same version
    final = _api(platform, "GET", "actions/ow-race").json()["version"]
    assert final == f"0.0.{1 + len(ok)}"  # every 200 is a version: none was written over unseen


def test_the_store_refuses_a_write_over_a_revision_it_was_not_given(tmp_path):
    store = Store(tmp_path / "p.db")
    try:
        rev = store.put("guest", "actions", "a", {"v": 1}, ABSENT)
        with pytest.raises(RevisionConflict):
            store.put("guest", "actions", "a", {"v": 2}, ABSENT)  # a second create
        assert store.put("guest", "actions", "a", {"v": 2}, rev) == rev + 1
        with pytest.raises(RevisionConflict):
            store.put("guest", "actions", "a", {"v": 3}, rev)  # a stale read
        with pytest.raises(KindConflict):
            store.put("guest", "triggers", "a", {}, ABSENT)
        with pytest.raises(KindConflict):
            store.get_revision("guest", "rules", "a")
        assert store.get_revision("guest", "actions", "a") == ({"v": 2}, rev + 1)
        with pytest.raises(RevisionConflict):
            store.delete("guest", "actions", "a", rev)
        assert store.delete("guest", "actions", "a", rev + 1)
    finally:
        store.close()


# generated inputs: whatever the body or name, an answer OpenWhisk could give, never a 500
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_KV_ITEMS = st.one_of(
    st.fixed_dictionaries({"key": st.text(max_size=12), "value": _JSON}),
    st.fixed_dictionaries({"key": _JSON, "value": _JSON}, optional={"init": _JSON}),
    st.fixed_dictionaries({}, optional={"key": st.text(max_size=5), "value": _JSON}),
    _JSON,
)
_KV_LISTS = st.one_of(st.lists(_KV_ITEMS, max_size=4), _JSON)
_NAMES = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_@ .&-]{0,20}\Z"),
    st.text(min_size=1, max_size=20),
    st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=250, max_size=300),
)


def _answered_as_openwhisk(resp: requests.Response, allowed: set[int]) -> None:
    assert resp.status_code in allowed, (resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        assert set(resp.json()) == {"error", "code"}, resp.text[:300]


@settings(max_examples=40, deadline=None)
@given(parameters=_KV_LISTS, annotations=_KV_LISTS, payload=st.dictionaries(st.text(max_size=6), _JSON, max_size=3))
def test_generated_parameter_shapes_are_stored_and_run_or_refused(
    platform, kv_sources, parameters, annotations, payload
):
    body = {"exec": ECHO, "parameters": parameters, "annotations": annotations}
    resp = _api(platform, "PUT", "actions/hyp-kv", body, overwrite="true")
    _answered_as_openwhisk(resp, {200, 400})
    if resp.status_code == 200:
        _answered_as_openwhisk(_api(platform, "POST", "actions/hyp-kv", payload, blocking="true"), {200})
    resp = _api(platform, "PUT", "triggers/hyp-kv-trigger", {"parameters": parameters}, overwrite="true")
    _answered_as_openwhisk(resp, {200, 400})
    if resp.status_code == 200:
        rule = {"trigger": "hyp-kv-trigger", "action": "kv-source-action", "annotations": annotations}
        _answered_as_openwhisk(_api(platform, "PUT", "rules/hyp-kv-rule", rule, overwrite="true"), {200, 400})
        _answered_as_openwhisk(_api(platform, "POST", "triggers/hyp-kv-trigger", payload), {202, 204})
    pkg = {"parameters": parameters, "annotations": annotations, "binding": {"name": "kv-source"}}
    _answered_as_openwhisk(_api(platform, "PUT", "packages/hyp-kv-binding", pkg, overwrite="true"), {200, 400})


@settings(max_examples=40, deadline=None)
@given(name=_NAMES, collection=st.sampled_from(["actions", "packages", "triggers", "rules"]))
def test_generated_entity_names_are_stored_or_refused(platform, kv_sources, name, collection):
    body = {
        "actions": {"exec": ECHO},
        "packages": {},
        "triggers": {},
        "rules": {"trigger": "kv-source-trigger", "action": "kv-source-action"},
    }[collection]
    path = f"{collection}/{quote(name, safe='')}"
    resp = _api(platform, "PUT", path, body, overwrite="true")
    _answered_as_openwhisk(resp, {200, 400, 404, 409})
    if resp.status_code == 200:
        _answered_as_openwhisk(_api(platform, "GET", path), {200})
        _answered_as_openwhisk(_api(platform, "DELETE", path), {200})


def test_a_record_json_cannot_carry_is_refused_to_its_writer_and_later_records_still_land(tmp_path):
    import threading

    store = Store(tmp_path / "p.db")
    try:
        docs = [{"activationId": f"a{i}", "namespace": "guest", "name": "x", "start": i} for i in range(2)]
        for doc in docs:
            store.begin_activation(doc)
        with pytest.raises((TypeError, ValueError)):
            store.end_activation({**docs[0], "response": {"result": {1, 2}}})
        with pytest.raises(ValueError):
            store.end_activation({**docs[0], "response": {"result": float("nan")}})
        store.end_activation({**docs[1], "end": 5})
        got = []
        reader = threading.Thread(target=lambda: got.append(store.get_activation("guest", "a1")))
        reader.start()
        reader.join(30)  # a dead writer thread would leave this waiting for good
        assert got and got[0]["end"] == 5
    finally:
        store.close()
