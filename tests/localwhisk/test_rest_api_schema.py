"""The REST API against OpenWhisk's own OpenAPI description, with inputs schemathesis generates from it.

`data/apiv1swagger.json` is apache/openwhisk's `core/controller/src/main/resources/apiv1swagger.json`
(see data/README.md for the commit). Every operation it describes is sent generated requests,
with the platform's credentials, against a live local platform this module starts: names are
drawn partly from entities the module creates first (so generated PUTs, invokes, fires and
deletes reach real actions, packages, bindings, sequences, triggers and rules) and partly as
generated. Each answer must be no server error (an activation's own failure, 502 on an invoke or
any status a web action chose, is the action's answer, not the platform's) and valid against the
spec's schema for its status. After the run no container slot is left busy.

Where the spec and OpenWhisk's controller disagree, the controller decides: EXCLUDED names the
Scala file for each operation whose answers are not held to the spec (none at present), and
`_load_spec` says why the spec's object definitions are read as objects and a binding may be `false`.
Statuses the spec does not list are not a failure here: the controller answers 400 for an illegal name or query, 403 for
another namespace and 409 for a name another kind holds on routes whose description omits them.

The same operations, with generated inputs, are also sent in lockstep to two fresh platforms, one
naming the namespace plainly (`_`, `guest`) and one as the controller also reads it (`%2F_`,
`%2Fguest%2F`, ...): every answer must be the same, never the HTML redirect werkzeug would give.

A longer run: DEPLOYER_SCHEMATHESIS_EXAMPLES=300 (examples per operation; 25 by default), with
`-s` to see the numbers (DEPLOYER_SCHEMATHESIS_REPORT=PATH writes them as JSON):
    .venv/bin/python -m pytest -m schemathesis -s tests/deployer/test_rest_api_schema.py
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from localwhisk.supervisor import LocalPlatform

pytestmark = pytest.mark.schemathesis

SPEC = Path(__file__).parent / "data" / "apiv1swagger.json"
EXAMPLES = int(os.environ.get("DEPLOYER_SCHEMATHESIS_EXAMPLES", "25"))
TWIN_EXAMPLES = max(1, EXAMPLES // 3)
INVOKES = {"invokeAction", "invokeActionInPackage"}
ECHO = {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}
SEQUENCE = {"kind": "sequence", "components": ["st-echo", "st-pkg/st-echo"]}
WEB = [{"key": "web-export", "value": True}]
SEEDS = [
    ("actions/st-echo", {"exec": ECHO, "annotations": WEB}),
    ("packages/st-pkg", {"publish": True}),
    ("actions/st-pkg/st-echo", {"exec": ECHO, "annotations": WEB}),
    ("packages/st-bind", {"binding": {"name": "st-pkg"}}),
    ("actions/st-seq", {"exec": SEQUENCE}),
    ("triggers/st-trigger", {}),
    ("rules/st-rule", {"trigger": "st-trigger", "action": "st-echo"}),
]
# half of each generated value is replaced by one of these, so that answers past a 400 or 404 are checked too;
# each pool also names an entity of another kind
PATH_POOLS = {
    "namespace": ["_", "guest"],
    "actionName": ["st-echo", "st-seq", "st-rule"],
    "packageName": ["st-pkg", "st-bind", "st-echo"],
    "triggerName": ["st-trigger", "st-echo"],
    "ruleName": ["st-rule", "st-trigger"],
}
QUERY_POOLS = {
    "blocking": ["true"],
    "result": ["true", "false"],
    "timeout": [60000],
    "overwrite": ["true"],
    "limit": [0, 30],
    "skip": [0],
    "docs": ["true"],
}
WEB_POOLS = {
    "namespace": ["guest"],
    "packageName": ["default", "st-pkg", "st-bind"],
    "actionName": ["st-echo"],
    "extension": ["json", "http", "html", "text", "svg"],
}
BODY_POOLS = {
    "exec": [ECHO, SEQUENCE, {"kind": "nodejs:20", "code": "function main(a) { return a }"}],
    "trigger": ["st-trigger", "/_/st-trigger"],
    "action": ["st-echo", "st-seq", "/guest/st-pkg/st-echo"],
    "binding": [{"name": "st-pkg"}, {"namespace": "guest", "name": "st-pkg"}],
    "limits": [{}, {"timeout": 1000, "memory": 256}],
}
# "METHOD path" -> why its answers are not held to the spec's schemas, naming the Scala file that decides
EXCLUDED: dict[str, str] = {}


def _api(handle, method: str, path: str, body=None, **params) -> requests.Response:
    return requests.request(
        method,
        f"{handle.apihost}/api/v1/namespaces/_/{path}",
        auth=tuple(handle.auth.split(":", 1)),
        json=body,
        params=params,
        timeout=60,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory, running_platform):
    owner = LocalPlatform(tmp_path_factory.mktemp("schemathesis"), max_containers=4, idle_timeout_s=600)
    with running_platform(owner) as handle:
        yield handle


def _seed(handle) -> None:
    """(Re)creates the entities the pools name, whatever the run before did to them."""
    for path, body in SEEDS:
        resp = _api(handle, "PUT", path, body, overwrite="true")
        if resp.status_code == 409:  # the id holds another kind now, or a package holds an action
            for collection in ("actions", "packages", "triggers", "rules"):
                _api(handle, "DELETE", f"{collection}/{path.split('/', 1)[1]}")
            resp = _api(handle, "PUT", path, body, overwrite="true")
        assert resp.status_code == 200, (path, resp.text)
    assert _api(handle, "POST", "rules/st-rule", {"status": "active"}).status_code == 200


def _steer(case, data, activation_ids: list[str]) -> None:
    """Replaces about half of the generated path and body values by ones that name what exists."""
    params = case.path_parameters or {}
    for key, pool in (WEB_POOLS if case.operation.path.startswith("/web/") else PATH_POOLS).items():
        if key in params:
            params[key] = data.draw(st.one_of(st.sampled_from(pool), st.just(params[key])))
    if "activationid" in params and activation_ids:
        pool = activation_ids[-50:]
        params["activationid"] = data.draw(st.one_of(st.sampled_from(pool), st.just(params["activationid"])))
    declared = {p.get("name") for p in case.operation.definition.raw.get("parameters", []) if p.get("in") == "query"}
    if case.query is None:
        case.query = {}
    for key in declared & set(QUERY_POOLS):
        drawn = data.draw(st.one_of(st.sampled_from(QUERY_POOLS[key]), st.just(case.query.get(key))))
        if drawn is None:
            case.query.pop(key, None)
        else:
            case.query[key] = drawn
    if isinstance(case.body, dict):
        for key, pool in BODY_POOLS.items():
            if key in case.body:
                case.body[key] = data.draw(st.one_of(st.sampled_from(pool), st.just(case.body[key])))


class Tally:
    """What the run sent and what it found, per operation."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.server_errors: list[str] = []
        self.schema_violations: list[str] = []

    def summary(self) -> dict:
        return {
            "operations": len(self.requests),
            "requests": sum(self.requests.values()),
            "server_errors": len(self.server_errors),
            "schema_violations": len(self.schema_violations),
            "statuses": {f"{op} {status}": n for (op, status), n in sorted(self.statuses.items())},
        }


def _is_own_answer(operation, response) -> bool:
    """A 5xx that is the action's: a failed activation's 502 on an invoke, any status a web action chose."""
    if operation.definition.raw.get("operationId") in INVOKES:
        return response.status_code == 502
    return operation.path.startswith("/web/") and "x-openwhisk-activation-id" in response.headers


def _exercise(operation, handle, tally: Tally, activation_ids: list[str]) -> None:
    label = operation.label
    auth = tuple(handle.auth.split(":", 1))
    base_url = handle.apihost + "/api/v1"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), data=st.data())
    def run(case, data) -> None:
        _steer(case, data, activation_ids)
        response = case.call(base_url=base_url, auth=auth, timeout=120)
        tally.requests[label] += 1
        tally.statuses[(label, response.status_code)] += 1
        if response.status_code >= 500 and not _is_own_answer(operation, response):
            tally.server_errors.append(f"{label}: {response.status_code} {response.text[:300]}")
        found = response.headers.get("x-openwhisk-activation-id")
        if found:
            activation_ids.append(found)
        if response.status_code == 202 and "activationId" in response.text:
            activation_ids.append(response.json()["activationId"])
        if label in EXCLUDED:
            return
        try:
            case.validate_response(response, checks=[response_schema_conformance])
        except FailureGroup as exc:
            tally.schema_violations.append(f"{label} {response.status_code}: {str(exc)[:600]}")

    run()


def _load_spec() -> schemathesis.BaseSchema:
    """The spec, with `"type": "object"` on the definitions that describe objects but do not say so: without
    it any JSON value would match them, and OpenWhisk reads every body and answer they describe as an object
    (Actions.scala et al.: `entity(as[WhiskActionPut])`), so a number as a PUT body would only ever test the
    controller's "malformed" answer, and a number as an answer would pass as a valid Action."""
    spec = json.loads(SPEC.read_text())
    for definition in spec["definitions"].values():
        if "properties" in definition and "type" not in definition:
            definition["type"] = "object"
    # a package list says `binding: false` for a package (the packages view, WhisksHandler.computePackageView),
    # which the spec's PackageBinding does not allow for
    binding = spec["definitions"]["PackageBinding"]
    spec["definitions"]["PackageBinding"] = {"anyOf": [binding, {"type": "boolean", "enum": [False]}]}
    return schemathesis.openapi.from_dict(spec)


def test_the_rest_api_answers_as_openwhisks_own_openapi_description_says(live):
    schema = _load_spec()
    tally, activation_ids = Tally(), []
    for result in schema.get_all_operations():
        _seed(live)
        _exercise(result.ok(), live, tally, activation_ids)
    summary = tally.summary()
    print("\nschemathesis:", json.dumps({k: v for k, v in summary.items() if k != "statuses"}))
    print(json.dumps(summary["statuses"], indent=1))
    if os.environ.get("DEPLOYER_SCHEMATHESIS_REPORT"):
        Path(os.environ["DEPLOYER_SCHEMATHESIS_REPORT"]).write_text(json.dumps(summary, indent=1))
    assert summary["operations"] == len(list(schema.get_all_operations()))
    assert not tally.server_errors, "\n".join(tally.server_errors[:10])
    assert not tally.schema_violations, "\n\n".join(tally.schema_violations[:5])


def test_every_container_slot_is_free_after_the_run(live):
    deadline = time.monotonic() + 120  # a non-blocking invoke of the run may still be running
    while True:
        invoker = requests.get(live.apihost + "/api/v1", timeout=30).json()["invoker"]
        if invoker["busy"] == 0 and invoker["queued"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (invoker["busy"], invoker["queued"]) == (0, 0), invoker


def test_limits_report_the_ranges_a_put_enforces(live):
    resp = _api(live, "GET", "limits")
    assert resp.status_code == 200, resp.text
    limits = resp.json()
    assert limits["maxParameterSize"] == "1 MB"
    too_much = {"exec": ECHO, "limits": {"memory": limits["maxActionMemory"] + 1}}
    assert _api(live, "PUT", "actions/st-limits", too_much).status_code == 400
    enough = {"exec": ECHO, "limits": {"memory": limits["maxActionMemory"], "timeout": limits["minActionTimeout"]}}
    assert _api(live, "PUT", "actions/st-limits", enough).status_code == 200


# %2F-spelled namespaces, over every operation
SLASHES = st.lists(st.sampled_from(["%2F", "%2f"]), min_size=1, max_size=2).map("".join)
MARKER = "nsmarker0"


def _spelled(namespace: str, web: bool):
    """The namespace with slashes around it, as EntityPath reads it; a web path takes a prefix only (WebActions
    match the segment as an entity name, so OpenWhisk answers 404 however it is spelled)."""
    suffix = st.just("") if web else st.one_of(st.just(""), SLASHES)
    return st.tuples(SLASHES, suffix).map(lambda t: t[0] + namespace + t[1])


def _answer(response: requests.Response):
    """What two platforms in the same state must answer alike: the status, and the body up to what differs
    between any two runs (ids, times): an error's message, an object's keys, a list's length."""
    if not response.content:
        return response.status_code, None
    if "json" not in response.headers.get("Content-Type", ""):
        return response.status_code, response.headers.get("Content-Type")
    body = response.json()
    if isinstance(body, dict) and set(body) == {"error", "code"}:
        return response.status_code, body["error"]
    if isinstance(body, dict):
        return response.status_code, sorted(body)
    return response.status_code, len(body) if isinstance(body, list) else type(body).__name__


def _send(case, handle, namespace: str, activation_id: str | None) -> requests.Response:
    kwargs = case.as_transport_kwargs(base_url=handle.apihost + "/api/v1")
    kwargs["headers"].pop("Authorization", None)
    kwargs["url"] = kwargs["url"].replace(f"/{MARKER}/", f"/{namespace}/", 1)
    if activation_id is not None:
        kwargs["url"] = kwargs["url"].replace("/activations/activationmarker0", f"/activations/{activation_id}", 1)
    return requests.request(**kwargs, auth=tuple(handle.auth.split(":", 1)), timeout=120, allow_redirects=False)


@pytest.fixture
def twins(tmp_path_factory, running_platform):
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                running_platform(LocalPlatform(tmp_path_factory.mktemp(side), max_containers=2, idle_timeout_s=600))
            )
            for side in ("plain", "slashed")
        ]


def _exercise_twins(operation, twins, pairs: list[tuple[str, str]], sent: Counter) -> None:
    """Sends each generated request to both twins, the second with the namespace spelled with slashes."""
    plain, slashed = twins
    web = operation.path.startswith("/web/")

    @settings(
        max_examples=TWIN_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), data=st.data())
    def run(case, data) -> None:
        _steer(case, data, [])
        namespace = data.draw(st.sampled_from(WEB_POOLS["namespace"] if web else PATH_POOLS["namespace"]))
        spelling = data.draw(_spelled(namespace, web))
        case.path_parameters["namespace"] = MARKER
        ids = (None, None)
        if "activationid" in case.path_parameters and pairs:
            case.path_parameters["activationid"] = "activationmarker0"
            ids = data.draw(st.sampled_from(pairs[-50:]))
        timeout = (case.query or {}).get("timeout")
        if isinstance(timeout, int) and 0 < timeout <= 300000:
            case.query["timeout"] = 60000  # a shorter blocking wait would race the action on each side
        first = _send(case, plain, namespace, ids[0])
        second = _send(case, slashed, spelling, ids[1])
        sent[operation.label] += 1
        assert not 300 <= second.status_code < 400, (spelling, second.status_code, second.text[:200])
        if web:
            assert second.status_code == 404 and "json" in second.headers["Content-Type"], second.text[:200]
            second = _send(case, slashed, namespace, ids[1])  # the twin runs what the plain one ran
        assert _answer(second) == _answer(first), (operation.label, spelling, case.query, case.body)
        found = first.headers.get("x-openwhisk-activation-id"), second.headers.get("x-openwhisk-activation-id")
        if all(found):
            pairs.append(found)

    run()


def test_every_operation_answers_a_slashed_namespace_as_the_plain_one(twins):
    schema = _load_spec()
    pairs: list[tuple[str, str]] = []  # (plain, slashed) ids of the same finished activation
    sent: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in [op for op in operations if "{namespace}" in op.path]:
        for handle in twins:
            _seed(handle)
        _exercise_twins(operation, twins, pairs, sent)
    assert set(sent) == {op.label for op in operations if "{namespace}" in op.path}
    print("\nslashed namespaces:", json.dumps({"operations": len(sent), "requests": 2 * sum(sent.values())}))


@pytest.mark.parametrize(
    ("segment", "status"),
    [("%2F", 400), ("%2F%2F", 400), ("guest%2Fst-pkg", 400), ("%2Fwhisk.system", 200), ("whisk.system%2F", 200)],
)
def test_a_namespace_segment_is_one_name_between_slashes(live, segment, status):
    """AuthorizedRouteDispatcher.namespace reads the segment as an EntityPath; one without a name is illegal.
    (A segment of two names, an EntityPath with a package in it, is refused here rather than read as one.)"""
    response = requests.get(
        f"{live.apihost}/api/v1/namespaces/{segment}/packages",
        auth=tuple(live.auth.split(":", 1)),
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"] == "The namespace contains illegal characters."
    else:
        assert "utils" in {p["name"] for p in response.json()}
