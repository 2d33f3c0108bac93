"""The shapes tools written for OpenWhisk read, held to the controller's Scala code.

Each test names the upstream code it follows (apache/openwhisk core/controller and
common/scala); each failed against the platform before the platform was changed to pass it.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests
import schemathesis

from localwhisk.entities import kinds

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
