"""Adobe's `aio runtime` CLI, an OpenWhisk CLI written by others, drives the local platform as wsk would.

Tool: npm @adobe/aio-cli-plugin-runtime 8.1.0 (the `aio runtime` commands of @adobe/aio-cli, OpenWhisk's CLI for
Adobe I/O Runtime), run by its own @oclif/core 2.16.0 through tests/tools/aio.js; configured as its README says
for a plain OpenWhisk host: AIO_RUNTIME_APIHOST, AIO_RUNTIME_AUTH, AIO_RUNTIME_NAMESPACE and USE_RUNTIME_AUTH=true.

Steps, once per container mode (process, docker):
  aio runtime deploy -m manifest.yaml                       package toolflow: Node.js action hello, trigger tick,
                                                            rule tick-hello (deploy -m takes Node.js kinds only)
  aio runtime action create toolflow/shout shout.py --kind python:3.11
  aio runtime package bind toolflow greeter -p greeting hi
  aio runtime action list / trigger list / rule get         what the manifest made
  aio runtime action invoke NAME -p ... --blocking --result  both kinds
  aio runtime trigger fire tick; activation get ID           the rule's activation named in the trigger's logs
  aio runtime activation list NAME / get ID / get ID --logs  (`activation logs` first asks Adobe's own
                                                            /runtime/namespaces/NS/logForwarding, not OpenWhisk's)
  aio runtime package get greeter; action invoke greeter/hello
Then the REST shapes the tool reads as the controller's Scala answers them: the runtime manifest at GET /,
build and buildno, a namespace spelled with its leading slash, `binding: false`, `count=true`, the name filter.
"""

from __future__ import annotations

import json

import pytest

from .nodecli import TOOLS, NodeTool, needs, tool_env

pytestmark = [pytest.mark.timeout(900), needs("@adobe/aio-cli-plugin-runtime", "@oclif/core")]

HELLO_JS = """\
function main(params) {
  console.log(`greeting ${params.name}`);
  return { message: `${params.greeting || "hello"}, ${params.name}` };
}
"""
SHOUT_PY = """\
def main(params):
    print("shouting", params["text"])
    return {"shout": params["text"].upper()}
"""
MANIFEST = """\
packages:
  toolflow:
    actions:
      hello:
        function: hello.js
        runtime: nodejs:20
    triggers:
      tick: {}
    rules:
      tick-hello:
        trigger: tick
        action: hello
"""


@pytest.fixture(scope="module")
def aio(tool_platform, tmp_path_factory) -> NodeTool:
    """The manifest deployed, the Python action created and the package bound, by the tool."""
    work = tmp_path_factory.mktemp("aio")
    (work / "hello.js").write_text(HELLO_JS)
    (work / "shout.py").write_text(SHOUT_PY)
    (work / "manifest.yaml").write_text(MANIFEST)
    env = tool_env(
        work / "home",
        AIO_RUNTIME_APIHOST=tool_platform.apihost,
        AIO_RUNTIME_AUTH=tool_platform.auth,
        AIO_RUNTIME_NAMESPACE=tool_platform.namespace,
        USE_RUNTIME_AUTH="true",
    )
    tool = NodeTool(["node", str(TOOLS / "aio.js"), "runtime"], env, work)
    tool.run("deploy", "-m", "manifest.yaml")
    tool.run("action", "create", "toolflow/shout", "shout.py", "--kind", "python:3.11")
    tool.run("package", "bind", "toolflow", "greeter", "-p", "greeting", "hi")
    return tool


def annotation(record: dict, key: str):
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def test_the_manifest_and_the_python_action_are_deployed(aio):
    actions = {(a["namespace"], a["name"]): annotation(a, "exec") for a in aio.json("action", "list", "--json")}
    assert actions == {("guest/toolflow", "hello"): "nodejs", ("guest/toolflow", "shout"): "python"}
    assert [t["name"] for t in aio.json("trigger", "list", "--json")] == ["tick"]
    rule = aio.json("rule", "get", "tick-hello")
    assert (rule["status"], rule["trigger"]["name"], rule["action"]) == (
        "active",
        "tick",
        {"path": "guest/toolflow", "name": "hello"},
    )


@pytest.mark.parametrize(
    ("action", "params", "result"),
    [
        ("toolflow/hello", ["name", "ann"], {"message": "hello, ann"}),
        ("toolflow/shout", ["text", "hey"], {"shout": "HEY"}),
    ],
    ids=["nodejs", "python"],
)
def test_a_blocking_invoke_prints_the_result(aio, action, params, result):
    assert aio.json("action", "invoke", action, "-p", *params, "--blocking", "--result") == result


def test_a_fired_trigger_runs_its_rule_and_names_the_activation(aio, client):
    fired = aio.json("trigger", "fire", "tick", "-p", "name", "trig")["activationId"]
    client.wait_activation(fired, timeout_s=120)  # OpenWhisk writes a trigger's record after its rules fired
    record = aio.json("activation", "get", fired)
    assert (record["name"], annotation(record, "kind")) == ("tick", "trigger")
    [rule_log] = [json.loads(line) for line in record["logs"]]
    assert (rule_log["rule"], rule_log["action"], rule_log["success"]) == (
        "guest/tick-hello",
        "guest/toolflow/hello",
        True,
    )
    client.wait_activation(rule_log["activationId"], timeout_s=120)
    assert aio.json("activation", "result", rule_log["activationId"])["result"] == {"message": "hello, trig"}


@pytest.mark.parametrize(
    ("action", "params", "line"),
    [("toolflow/hello", ["name", "log"], "greeting log"), ("toolflow/shout", ["text", "log"], "shouting log")],
    ids=["nodejs", "python"],
)
def test_activations_are_listed_by_name_and_read_with_their_logs(aio, action, params, line):
    started = aio.json("action", "invoke", action, "-p", *params, "--blocking")
    listed = aio.json("activation", "list", action, "--json")
    assert started["activationId"] in [a["activationId"] for a in listed]
    record = aio.json("activation", "get", started["activationId"])
    assert (record["name"], annotation(record, "path")) == (action.split("/")[1], "guest/" + action)
    assert record["response"] == started["response"]
    logs = aio.run("activation", "get", started["activationId"], "--logs").stdout
    assert line in logs


def test_a_binding_passes_its_parameters_to_the_packages_actions(aio):
    binding = aio.json("package", "get", "greeter")
    assert binding["binding"] == {"namespace": "guest", "name": "toolflow"}
    assert {a["name"] for a in binding["actions"]} == {"hello", "shout"}
    assert aio.json("action", "invoke", "greeter/hello", "-p", "name", "bo", "-b", "-r") == {"message": "hi, bo"}


def test_package_list_tells_a_binding_from_a_package(aio):
    packages = {p["name"]: p["binding"] for p in aio.json("package", "list", "--json")}
    assert packages == {"toolflow": False, "greeter": {"namespace": "guest", "name": "toolflow"}}


def test_activation_list_finds_an_activation_by_the_path_it_was_invoked_through(aio):
    # OpenWhisk's activations view keys a record by its binding's name when it ran through one, else its package's
    started = aio.json("action", "invoke", "greeter/hello", "-p", "name", "via", "--blocking")["activationId"]
    by_name = {
        name: [a["activationId"] for a in aio.json("activation", "list", name, "--json")]
        for name in ("greeter/hello", "toolflow/hello", "hello")
    }
    assert started in by_name["greeter/hello"]
    assert started not in by_name["toolflow/hello"]
    assert by_name["hello"] == []  # no action `hello` outside a package


def test_action_list_counts(aio):
    assert aio.run("action", "list", "--count").stdout.strip() == "You have 2 actions in this namespace."


def test_a_namespace_written_with_its_leading_slash(aio):
    listed = aio.json("package", "list", "/guest", "--json")
    assert isinstance(listed, list), listed
    assert {p["name"] for p in listed} == {"toolflow", "greeter"}


def test_property_get_shows_the_api_build(aio):
    out = aio.run("property", "get", "--apibuild", "--apibuildno").stdout
    labels = ("whisk API build version", "whisk API build number")
    values = {label: line.split(label, 1)[1].strip() for line in out.splitlines() for label in labels if label in line}
    assert set(values) == set(labels) and all(values.values()), out


def test_deploy_names_the_platforms_nodejs_kinds_when_it_refuses_a_kind(aio):
    # deploy -m takes only Node.js kinds, and for any other asks GET / which ones the host runs
    (aio.cwd / "py.yaml").write_text(
        "packages:\n  pyonly:\n    actions:\n      shout:\n        function: shout.py\n        runtime: python:3.11\n"
    )
    done = aio.run("deploy", "-m", "py.yaml", check=False)
    assert done.returncode != 0
    for kind in ("nodejs:18", "nodejs:20", "nodejs:22"):
        assert kind in done.stderr
