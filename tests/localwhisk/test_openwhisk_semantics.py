"""Where the local platform used to differ from Apache OpenWhisk, checked against the upstream rules.

Each test names the upstream behaviour it holds the platform to (apache/openwhisk
controller and invoker code); each failed on the platform before it was fixed.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import zipfile
from urllib.parse import urlsplit

import pytest

from deployer.errors import ActivationFailedError, AuthError, NotFoundError, OpenWhiskError


def _annotation(record: dict, key: str):
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def _zip(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


def _raw(platform, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A request with the path sent byte for byte (no client-side normalisation of '..' or '%00')."""
    url = urlsplit(platform.apihost)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    token = base64.b64encode(platform.auth.encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    conn.request(
        method, path, body=data, headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    )
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, json.loads(payload) if payload else {}


# nodejs actions
def test_nodejs_single_file_action_runs_with_logs(platform):
    c = platform.client
    c.create_action(
        "js-hello",
        {
            "kind": "nodejs:default",
            "code": "function main(p) { console.log('hi ' + p.name); return {greeting: 'Hello ' + p.name} }",
        },
    )
    record = c.invoke("js-hello", {"name": "Ada"})
    assert record["response"]["result"] == {"greeting": "Hello Ada"}
    assert len(record["logs"]) == 1 and record["logs"][0].endswith("stdout: hi Ada")
    assert _annotation(record, "kind") == "nodejs:20"


def test_nodejs_zip_with_package_main_and_a_named_async_entry(platform):
    c = platform.client
    code = _zip(
        {
            "package.json": json.dumps({"main": "lib/app.js"}),
            "lib/app.js": "exports.handler = async p => { await new Promise(r => setTimeout(r, 5)); "
            "return {doubled: p.n * 2, name: process.env.__OW_ACTION_NAME} }",
        }
    )
    created = c.create_action("js-zip", {"kind": "nodejs:20", "code": code, "main": "handler"})  # no exec.binary
    assert created["exec"]["binary"] is True
    assert c.invoke("js-zip", {"n": 21}, result=True) == {"doubled": 42, "name": "/guest/js-zip"}


def test_nodejs_failures_are_classified_as_openwhisk_does(platform):
    c = platform.client
    c.create_action(
        "js-reject", {"kind": "nodejs:20", "code": "function main() { return Promise.reject({reason: 'no digit'}) }"}
    )
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("js-reject", {})
    assert info.value.activation["response"]["status"] == "application error"
    assert info.value.result == {"error": {"reason": "no digit"}}
    c.create_action("js-throw", {"kind": "nodejs:20", "code": "function main() { throw new Error('boom') }"})
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("js-throw", {})
    assert info.value.activation["response"]["status"] == "action developer error"
    assert "boom" in info.value.result["error"]
    c.create_action(
        "js-slow",
        {"kind": "nodejs:20", "code": "function main() { return new Promise(() => {}) }"},
        limits={"timeout": 500},
    )
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("js-slow", {})
    assert "exceeded its time limits of 500 milliseconds" in info.value.result["error"]
    assert _annotation(info.value.activation, "timeout") is True


# kinds and code
def test_default_kinds_are_stored_as_the_kind_they_resolve_to(platform):
    c = platform.client
    assert (
        c.create_action("py-default", {"kind": "python:default", "code": "def main(a):\n    return a\n"})["exec"][
            "kind"
        ]
        == "python:3.11"
    )
    assert c.get_action("py-default")["exec"]["kind"] == "python:3.11"


def test_a_zip_sent_without_the_binary_flag_is_detected_as_binary(platform):
    c = platform.client
    code = _zip({"__main__.py": "def main(args):\n    return {'zipped': True}\n"})
    created = c.create_action("py-zip", {"kind": "python:3.11", "code": code})
    assert created["exec"]["binary"] is True
    assert c.invoke("py-zip", {}, result=True) == {"zipped": True}


# activation records
def test_activations_carry_the_timeout_annotation(platform):
    c = platform.client
    c.create_action("quick", {"kind": "python:3.11", "code": "def main(a):\n    return {}\n"})
    assert _annotation(c.invoke("quick", {}), "timeout") is False


def test_sequence_components_are_marked_caused_by_the_sequence(platform):
    c = platform.client
    c.create_action("seq-a", {"kind": "python:3.11", "code": "def main(a):\n    return {'n': a.get('n', 0) + 1}\n"})
    c.create_action("seq-ab", {"kind": "sequence", "components": ["/_/seq-a", "seq-a"]})
    record = c.invoke("seq-ab", {"n": 1})
    assert record["response"]["result"] == {"n": 3} and _annotation(record, "causedBy") is None
    for child_id in record["logs"]:
        child = c.get_activation(child_id)
        assert _annotation(child, "causedBy") == "sequence" and child["cause"] == record["activationId"]


def test_head_on_an_action_reads_it_and_never_invokes(platform):
    c = platform.client
    c.create_action("headless", {"kind": "python:3.11", "code": "def main(a):\n    return {}\n"})
    before = len(c.list_activations("headless", limit=200))
    status, _ = _raw(platform, "HEAD", "/api/v1/namespaces/_/actions/headless")
    assert status == 200
    assert len(c.list_activations("headless", limit=200)) == before


@pytest.mark.parametrize(
    "name,message",
    [
        ("..", "The name of the entity contains illegal characters."),
        (".", "The name of the entity contains illegal characters."),
        ("a%00b", "The name of the entity contains illegal characters."),
        ("two%20words%20", "The name of the entity contains illegal characters."),
        (" lead", "The name of the entity contains illegal characters."),
        ("x" * 5000, "Name segement longer than allowed: 5000 > 256."),
    ],
)
def test_entity_names_are_checked_with_openwhisk_rules(platform, name, message):
    body = {"exec": {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}}
    status, reply = _raw(platform, "PUT", f"/api/v1/namespaces/_/actions/{name.replace(' ', '%20')}", body)
    assert status == 400 and reply["error"] == message and reply["code"]
    for kind in ("packages", "triggers", "rules"):
        status, reply = _raw(platform, "PUT", f"/api/v1/namespaces/_/{kind}/{name.replace(' ', '%20')}", {})
        assert status == 400 and reply["error"] == message


def test_legal_odd_names_are_accepted(platform):
    c = platform.client
    name = "a@b.c&d-e f_1"
    c.create_action(name, {"kind": "python:3.11", "code": "def main(a):\n    return {'ok': 1}\n"})
    assert c.invoke(name, {}, result=True) == {"ok": 1}


def test_unknown_collections_answer_404_for_list_and_get_alike(platform):
    for path in ("/api/v1/namespaces/_/apis", "/api/v1/namespaces/_/apis/x", "/api/v1/namespaces/_/nothing"):
        status, reply = _raw(platform, "GET", path)
        assert status == 404 and reply["error"] == "The requested resource does not exist."


def test_api_gateway_routes_are_refused_as_on_a_cluster_without_the_gateway(platform):
    # the clients create routes through /whisk.system/apimgmt web actions: absent here, as without a gateway
    status, reply = _raw(platform, "POST", "/api/v1/web/whisk.system/apimgmt/createApi.http", {})
    assert status == 404 and reply["error"] == "The requested resource does not exist."


# the whisk.system catalog and package bindings
def test_the_utils_catalog_is_shared_by_every_namespace(platform):
    c = platform.client
    assert c.invoke("/whisk.system/utils/echo", {"x": 1}, result=True) == {"x": 1}
    assert c.invoke("/whisk.system/utils/sort", {"lines": ["b", "c", "a"]}, result=True) == {
        "lines": ["a", "b", "c"],
        "length": 3,
    }
    assert c.invoke("/whisk.system/utils/head", {"lines": ["a", "b"], "num": 1}, result=True)["lines"] == ["a"]
    assert c.invoke("/whisk.system/utils/split", {"payload": "a,b", "separator": ","}, result=True)["lines"] == [
        "a",
        "b",
    ]
    assert c.invoke("/whisk.system/utils/cat", {"lines": ["a", "b"]}, result=True)["payload"] == "a\nb"
    package = c.get_package("/whisk.system/utils")
    assert package["publish"] is True and {"cat", "echo", "head", "sort", "split"} <= {
        a["name"] for a in package["actions"]
    }
    c.create_action(
        "lines", {"kind": "sequence", "components": ["/whisk.system/utils/split", "/whisk.system/utils/sort"]}
    )
    assert c.invoke("lines", {"payload": "z\ny"}, result=True)["lines"] == ["y", "z"]
    with pytest.raises(AuthError):
        c.create_action("/whisk.system/utils/mine", {"kind": "python:3.11", "code": "def main(a):\n    return a\n"})


def test_a_binding_reaches_the_bound_packages_actions_with_its_parameters(platform):
    c = platform.client
    binding = c.bind_package("myutils", "/whisk.system/utils", parameters={"greeting": "hi", "lines": ["x"]})
    assert binding["binding"] == {"namespace": "whisk.system", "name": "utils"}
    record = c.invoke("myutils/echo", {"lines": ["mine"]})
    assert record["response"]["result"] == {"greeting": "hi", "lines": ["mine"]}
    assert _annotation(record, "binding") == "guest/myutils"
    assert _annotation(record, "path") == "whisk.system/utils/echo"
    assert {a["name"] for a in c.list_actions("myutils")} >= {"echo", "sort"}
    with pytest.raises(OpenWhiskError, match="Binding references a package that does not exist"):
        c.bind_package("nothing-there", "/whisk.system/no-such-package")
    with pytest.raises(NotFoundError):
        c.invoke("myutils/no-such-action", {})


KEY_PROBE = (
    "import os\n"
    "AT_IMPORT = os.environ.get('__OW_API_KEY')\n"
    "def main(a):\n"
    "    return {'import': AT_IMPORT, 'run': os.environ.get('__OW_API_KEY'),\n"
    "            'host': os.environ.get('__OW_API_HOST'), 'ns': os.environ.get('__OW_NAMESPACE')}\n"
)


def test_a_new_action_gets_provide_api_key_false_and_no_key(platform):
    """Controller Actions.amendAnnotations (requireApiKeyAnnotation, on in OpenWhisk's deployments) and
    ContainerProxy's authEnvironment: an absent annotation means the key is provided, but a create adds false."""
    c = platform.client
    created = c.create_action("keyless", {"kind": "python:3.11", "code": KEY_PROBE})
    assert _annotation(created, "provide-api-key") is False
    seen = c.invoke("keyless", {}, result=True)
    assert seen["import"] is None and seen["run"] is None
    assert seen["host"] == platform.apihost and seen["ns"]  # the rest of the context is there, at import too

    c.create_action("keyed", {"kind": "python:3.11", "code": KEY_PROBE}, annotations={"provide-api-key": True})
    seen = c.invoke("keyed", {}, result=True)
    assert seen["import"] == platform.auth and seen["run"] == platform.auth


def test_an_update_never_adds_the_annotation(platform):
    c = platform.client
    body = {"exec": {"kind": "python:3.11", "code": KEY_PROBE}, "annotations": []}
    status, _ = _raw(platform, "PUT", "/api/v1/namespaces/_/actions/legacy?overwrite=true", body)
    assert status == 200
    status, updated = _raw(platform, "PUT", "/api/v1/namespaces/_/actions/legacy?overwrite=true", body)
    assert status == 200 and _annotation(updated, "provide-api-key") is None  # an update replaces annotations
    assert c.invoke("legacy", {}, result=True)["run"] == platform.auth  # absent: provided, as upstream


def test_the_official_python_kind_has_no_torch_but_the_project_image_does(platform):
    """openwhisk/action-python-v3.11 ships no torch and no project code: an action that works here must not
    lean on the platform's own Python; on the project's image (docker:) torch is there, as on a cluster."""
    c = platform.client
    code = "import torch\ndef main(a):\n    return {'torch': torch.__version__}\n"
    c.create_action("plain-torch", {"kind": "python:3.11", "code": code})
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("plain-torch", {})
    assert "No module named 'torch'" in info.value.result["error"] and "docker:" in info.value.result["error"]
    c.create_action(
        "image-torch",
        {"kind": "blackbox", "image": "deployer/action-python-ml:0.1.0", "code": code},
        limits={"memory": 1024},
    )  # the CUDA build of torch is ~520 MB resident
    assert c.invoke("image-torch", {}, result=True)["torch"].startswith("2.")
    c.create_action("plain-mlcore", {"kind": "python:3.11", "code": "import deployer\ndef main(a):\n    return {}\n"})
    with pytest.raises(ActivationFailedError, match="No module named 'deployer'"):
        c.invoke("plain-mlcore", {})
