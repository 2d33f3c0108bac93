"""The shapes tools written for OpenWhisk read, held to the controller's Scala code.

Each test names the upstream code it follows (apache/openwhisk core/controller and
common/scala); each failed against the platform before the platform was changed to pass it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localwhisk.entities import kinds
from localwhisk.store import Store

DATA = Path(__file__).parent / "data"
ECHO = {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}
MB = 1024 * 1024


def _api(handle, method: str, path: str, body=None, ns: str = "_", **params) -> requests.Response:
    return requests.request(
        method,
        f"{handle.apihost}/api/v1/namespaces/{ns}/{path}",
        auth=tuple(handle.auth.split(":", 1)),
        json=body,
        params=params,
        timeout=60,
    )


def _ok(resp: requests.Response):
    assert resp.status_code == 200, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    return resp.json()


# GET / and GET /api/v1
def test_the_info_route_answers_as_openwhisks_info_description_says(platform):
    """Controller.info, held to core/controller/src/main/resources/infoswagger.json."""
    schema = schemathesis.openapi.from_dict(json.loads((DATA / "infoswagger.json").read_text()))
    operation = next(result.ok() for result in schema.get_all_operations())
    response = requests.get(platform.apihost + "/", timeout=30)
    assert response.status_code == 200
    case = operation.Case()
    case.validate_response(response)  # raises on a body the schema refuses


def test_the_info_route_lists_every_accepted_kind_with_its_image(platform):
    """ExecManifest.Runtimes.toJson: per family a list of {kind, image, deprecated, default, attached,
    requireMain}; one default per family; every kind listed is accepted, and a kind not listed is not."""
    runtimes = requests.get(platform.apihost + "/", timeout=30).json()["runtimes"]
    listed = {rt["kind"]: (family, rt) for family, rts in runtimes.items() for rt in rts}
    assert set(listed) == {rt.kind for rt in kinds.MANIFEST}
    for row in kinds.MANIFEST:
        family, rendered = listed[row.kind]
        assert family == row.family
        assert rendered == {
            "kind": row.kind,
            "image": row.image,
            "deprecated": row.deprecated,
            "default": row.default,
            "attached": row.attached,
            "requireMain": row.require_main,
        }
    for family, rts in runtimes.items():
        assert sum(rt["default"] for rt in rts) == 1, family
    for kind in listed:
        created = _ok(_api(platform, "PUT", f"actions/kind-{kind.replace(':', '-')}", {"exec": {**ECHO, "kind": kind}}))
        assert created["exec"]["kind"] == kind
    refused = _api(platform, "PUT", "actions/kind-unlisted", {"exec": {**ECHO, "kind": "python:2.7"}})
    assert refused.status_code == 400 and "python:2.7" in refused.json()["error"]


def test_the_info_limits_are_the_ones_a_put_enforces(platform):
    """Controller.info's limits: durations in ms, memory and logs in bytes, the sequence length."""
    limits = requests.get(platform.apihost + "/", timeout=30).json()["limits"]
    for what in ("duration", "memory", "logs"):
        assert limits[f"default_min_action_{what}"] == limits[f"min_action_{what}"]
        assert limits[f"default_max_action_{what}"] == limits[f"max_action_{what}"]
    too_long = {"exec": ECHO, "limits": {"timeout": limits["max_action_duration"] + 1}}
    assert _api(platform, "PUT", "actions/limits-probe", too_long).status_code == 400
    largest = {"memory": limits["max_action_memory"] // MB, "timeout": limits["min_action_duration"]}
    assert _ok(_api(platform, "PUT", "actions/limits-probe", {"exec": ECHO, "limits": largest}))
    too_big = {"exec": ECHO, "limits": {"memory": limits["max_action_memory"] // MB + 1}}
    assert _api(platform, "PUT", "actions/limits-probe", too_big, overwrite="true").status_code == 400
    steps = [f"limits-probe-{i}" for i in range(limits["sequence_length"] + 1)]
    for step in steps:
        _ok(_api(platform, "PUT", f"actions/{step}", {"exec": ECHO}, overwrite="true"))
    longest = {"exec": {"kind": "sequence", "components": steps[:-1]}}
    assert _ok(_api(platform, "PUT", "actions/limits-seq", longest))
    too_many = {"exec": {"kind": "sequence", "components": steps}}
    assert _api(platform, "PUT", "actions/limits-seq", too_many, overwrite="true").status_code == 400


def test_the_api_path_names_its_version_and_build(platform):
    """RestAPIVersion.info: description, api_version, api_version_path, build, buildno."""
    info = requests.get(platform.apihost + "/api/v1", timeout=30).json()
    assert info["description"] == "OpenWhisk API"
    assert info["api_version"] == "1.0.0" and info["api_version_path"] == "v1"
    assert isinstance(info["build"], str) and info["build"]
    assert isinstance(info["buildno"], str) and info["buildno"]
    assert {"busy", "queued"} <= set(info["invoker"])  # the platform's own field, read by its tools


# the activation list's name filter
def _ids(handle, **params) -> set[str]:
    return {a["activationId"] for a in _ok(_api(handle, "GET", "activations", limit=200, **params))}


def _run(handle, path: str) -> str:
    return _ok(_api(handle, "POST", f"actions/{path}", {}, blocking="true"))["activationId"]


def test_the_name_filter_finds_runs_by_the_path_they_were_run_through(platform):
    """Activations.scala with the whisks-filters activations view: a run through a binding is found by
    `binding/action`, one of a package's action by `package/action`, and a bare name finds only actions in
    the default package."""
    _ok(_api(platform, "PUT", "actions/nf-act", {"exec": ECHO}))
    _ok(_api(platform, "PUT", "packages/nf-pkg", {}))
    _ok(_api(platform, "PUT", "actions/nf-pkg/nf-act", {"exec": ECHO}))
    _ok(_api(platform, "PUT", "packages/nf-bind", {"binding": {"name": "nf-pkg"}}))
    _ok(_api(platform, "PUT", "packages/nf-utils", {"binding": {"namespace": "whisk.system", "name": "utils"}}))
    bare, packaged, bound = _run(platform, "nf-act"), _run(platform, "nf-pkg/nf-act"), _run(platform, "nf-bind/nf-act")
    catalog = _ok(_api(platform, "POST", "actions/nf-utils/echo", {}, blocking="true"))["activationId"]
    assert _ids(platform, name="nf-act") == {bare}
    assert _ids(platform, name="nf-pkg/nf-act") == _ids(platform, name="/nf-pkg//nf-act/") == {packaged}
    assert _ids(platform, name="nf-bind/nf-act") == {bound}
    assert catalog in _ids(platform, name="nf-utils/echo")
    assert catalog not in _ids(platform, name="utils/echo") | _ids(platform, name="echo")
    assert {bare, packaged, bound} <= _ids(platform, name=" ")  # a blank filter is none


def test_a_name_filter_of_more_than_two_names_is_refused(platform):
    for name in ("a/b/c", "/guest/nf-pkg/nf-act", "nf act!"):
        resp = _api(platform, "GET", "activations", name=name)
        assert resp.status_code == 400, (name, resp.text)
        assert resp.json()["error"] == f"Parameter may be a 'simple' name or 'package-name/simple' name: {name}"


def test_records_through_a_binding_from_before_the_filter_are_found_by_it(tmp_path):
    """A state folder written when records were keyed by the bound package's path is rekeyed once."""
    record = {
        "activationId": "a1",
        "namespace": "guest",
        "name": "echo",
        "start": 1,
        "annotations": [{"key": "path", "value": "whisk.system/utils/echo"}, {"key": "binding", "value": "guest/mine"}],
    }
    old = Store(tmp_path / "p.db")
    old.begin_activation(record)
    old.end_activation(record)
    old.close()
    with sqlite3.connect(tmp_path / "p.db") as db:  # as the record was keyed then
        db.execute("UPDATE activations SET path='utils/echo'")
        db.execute("PRAGMA user_version=0")
    store = Store(tmp_path / "p.db")
    try:
        assert [r["activationId"] for r in store.list_activations("guest", "mine/echo", 10, 0)] == ["a1"]
        assert store.list_activations("guest", "utils/echo", 10, 0) == []
    finally:
        store.close()


# packages and bindings
def _kv(pairs: dict) -> list[dict]:
    return [{"key": k, "value": v} for k, v in pairs.items()]


def test_a_package_list_says_binding_false_for_a_package(platform):
    """The packages view (whisks.v2.1.0, WhisksHandler.computePackageView): common fields, no parameters, and
    `binding` false for a package or the bound package for a binding; another namespace's list holds its
    published packages only (packages-public)."""
    _ok(_api(platform, "PUT", "packages/pl-pkg", {"parameters": _kv({"a": 1})}))
    _ok(_api(platform, "PUT", "packages/pl-bind", {"binding": {"name": "pl-pkg"}}))
    listed = {p["name"]: p for p in _ok(_api(platform, "GET", "packages", limit=200))}
    assert listed["pl-pkg"]["binding"] is False
    assert listed["pl-bind"]["binding"] == {"namespace": "guest", "name": "pl-pkg"}
    assert set(listed["pl-pkg"]) == {"namespace", "name", "version", "publish", "annotations", "updated", "binding"}
    catalog = _ok(_api(platform, "GET", "packages", ns="whisk.system"))
    assert catalog and all(p["binding"] is False and p["publish"] for p in catalog)


def test_a_package_reads_with_its_actions_and_feeds(platform):
    """WhiskPackage serdes (binding {} for a package) and WhiskPackageWithActions (feed actions apart)."""
    _ok(_api(platform, "PUT", "packages/pg-pkg", {"annotations": _kv({"binding": "forged"})}))
    _ok(_api(platform, "PUT", "actions/pg-pkg/plain", {"exec": ECHO}))
    _ok(_api(platform, "PUT", "actions/pg-pkg/changes", {"exec": ECHO, "annotations": _kv({"feed": True})}))
    package = _ok(_api(platform, "GET", "packages/pg-pkg"))
    assert package["binding"] == {}
    assert [a["name"] for a in package["actions"]] == ["plain"]
    assert [a["name"] for a in package["feeds"]] == ["changes"]
    assert all(set(a) == {"name", "version", "annotations"} for a in package["actions"] + package["feeds"])
    assert not any(a["key"] == "binding" for a in package["annotations"])  # set by the controller only


def test_a_binding_reads_as_itself_with_the_bound_packages_parameters_and_actions(platform):
    """Packages.scala mergePackageWithBinding: the binding, its parameters over the bound package's, the bound
    package's actions; its `binding` annotation names the bound package."""
    _ok(_api(platform, "PUT", "packages/pb-pkg", {"parameters": _kv({"a": "A", "b": "B"})}))
    _ok(_api(platform, "PUT", "actions/pb-pkg/act", {"exec": ECHO}))
    bound = {"binding": {"name": "pb-pkg"}, "parameters": _kv({"b": "b", "c": "C"})}
    created = _ok(_api(platform, "PUT", "packages/pb-bind", bound))
    target = {"namespace": "guest", "name": "pb-pkg"}
    assert {"key": "binding", "value": target} in created["annotations"]
    binding = _ok(_api(platform, "GET", "packages/pb-bind"))
    assert (binding["name"], binding["binding"]) == ("pb-bind", target)
    assert {p["key"]: p["value"] for p in binding["parameters"]} == {"a": "A", "b": "b", "c": "C"}
    assert [a["name"] for a in binding["actions"]] == ["act"] and binding["feeds"] == []
    _ok(_api(platform, "PUT", "packages/pb-bind", {"parameters": _kv({"c": "D"})}, overwrite="true"))
    assert {"key": "binding", "value": target} in _ok(_api(platform, "GET", "packages/pb-bind"))["annotations"]


# count=true
LISTS = {"actions": "actions", "actions/ct-pkg/": "actions", "packages": "packages", "triggers": "triggers"}
LISTS.update({"rules": "rules", "activations": "activations"})


@pytest.fixture(scope="module")
def counted(platform) -> dict:
    """Entities and activations of every kind to count, and the start times of the activations."""
    _ok(_api(platform, "PUT", "packages/ct-pkg", {}, overwrite="true"))
    _ok(_api(platform, "PUT", "packages/ct-bind", {"binding": {"name": "ct-pkg"}}, overwrite="true"))
    for path in ("actions/ct-a", "actions/ct-pkg/ct-a", "actions/ct-pkg/ct-b"):
        _ok(_api(platform, "PUT", path, {"exec": ECHO}, overwrite="true"))
    _ok(_api(platform, "PUT", "triggers/ct-t", {}, overwrite="true"))
    _ok(_api(platform, "PUT", "rules/ct-r", {"trigger": "ct-t", "action": "ct-a"}, overwrite="true"))
    runs = [_run(platform, path) for path in ("ct-a", "ct-pkg/ct-a", "ct-bind/ct-a", "ct-a", "ct-pkg/ct-b")]
    return {"starts": sorted(_ok(_api(platform, "GET", f"activations/{aid}"))["start"] for aid in runs)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_count_answers_how_many_the_list_holds_past_skip(platform, counted, data):
    """Every list route with ?count=true (Actions, Packages, Triggers, Rules, Activations.scala): the collection's
    name and the number of matches past `skip` (CouchDbRestStore.count), with the list's filters applied."""
    path = data.draw(st.sampled_from(sorted(LISTS)))
    query = {"skip": data.draw(st.integers(0, 8))}
    if path == "activations":
        starts = counted["starts"]
        names = st.sampled_from(["ct-a", "ct-pkg/ct-a", "ct-bind/ct-a", "ct-pkg/ct-b", "/ct-pkg/ct-b", " "])
        query["name"] = data.draw(st.one_of(st.none(), names))
        query["since"] = data.draw(st.one_of(st.none(), st.sampled_from(starts)))
        query["upto"] = data.draw(st.one_of(st.none(), st.sampled_from(starts)))
        query["docs"] = data.draw(st.sampled_from(["false", None]))
    query = {k: v for k, v in query.items() if v is not None}
    count = _ok(_api(platform, "GET", path, count="true", limit=1, **query))
    listed = _ok(_api(platform, "GET", path, limit=200, **query))
    assert list(count) == [LISTS[path]]
    assert min(count[LISTS[path]], 200) == len(listed)


def test_counted_activations_by_name_are_the_runs_of_that_path(platform, counted):
    assert _ok(_api(platform, "GET", "activations", count="true", name="ct-a")) == {"activations": 2}
    assert _ok(_api(platform, "GET", "activations", count="true", name="ct-bind/ct-a", skip=1)) == {"activations": 0}
    refused = _api(platform, "GET", "activations", count="true", docs="true")
    assert refused.status_code == 400
    assert refused.json()["error"] == "The parameter 'docs' is not permitted with 'count'."
    assert _api(platform, "GET", "activations", count="true", limit=201).status_code == 400


def test_an_activation_in_flight_is_neither_listed_nor_counted_until_its_record_is_written(platform):
    """OpenWhisk stores an activation once it ends: a list naming one that GET would answer 404 for is a lie."""
    code = "import time\ndef main(a):\n    time.sleep(3)\n    return {'done': True}\n"
    _ok(_api(platform, "PUT", "actions/inflight", {"exec": {"kind": "python:3.11", "code": code}}, overwrite="true"))
    activation_id = platform.client.invoke("inflight", {}, blocking=False)["activationId"]
    listed = _ok(_api(platform, "GET", "activations", name="inflight"))
    assert [a["activationId"] for a in listed] == []
    assert _ok(_api(platform, "GET", "activations", name="inflight", count="true")) == {"activations": 0}
    assert platform.client.wait_activation(activation_id)["response"]["result"] == {"done": True}
    listed = _ok(_api(platform, "GET", "activations", name="inflight"))
    assert [a["activationId"] for a in listed] == [activation_id]


def test_a_package_with_actions_is_deleted_only_with_force_and_its_actions_with_it(platform):
    """Packages.remove: a 409 naming the force parameter, else the actions first, then the package."""
    _ok(_api(platform, "PUT", "packages/full-pkg", {}, overwrite="true"))
    for action in ("a1", "a2"):
        _ok(_api(platform, "PUT", f"actions/full-pkg/{action}", {"exec": ECHO}, overwrite="true"))
    refused = _api(platform, "DELETE", "packages/full-pkg")
    assert refused.status_code == 409
    assert (
        refused.json()["error"]
        == "Package not empty (contains 2 entities). Set force param or delete package contents."
    )
    assert _ok(_api(platform, "DELETE", "packages/full-pkg", force="true"))["name"] == "full-pkg"
    assert _api(platform, "GET", "packages/full-pkg").status_code == 404
    assert _api(platform, "GET", "actions/full-pkg/a1").status_code == 404
