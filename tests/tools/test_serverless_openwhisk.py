"""The Serverless Framework with its OpenWhisk provider, a deploy tool written by others, drives the local platform.

Tool: npm serverless 3.40.0 with serverless-openwhisk 0.18.4 (the provider plugin from the apache/openwhisk
family), configured as the plugin's README says: OW_APIHOST and OW_AUTH; telemetry, notifications and the
interactive set-up off (SLS_TELEMETRY_DISABLED, SLS_NOTIFICATIONS_MODE=off, SLS_INTERACTIVE_SETUP_DISABLE).
Where `aio runtime deploy -m` takes Node.js kinds only, serverless.yml deploys both kinds in one file.

Steps, once per container mode (process, docker):
  serverless deploy                          package slspkg (parameter greeting) with the Node.js function hello
                                             and the Python function shout, trigger ping with a rule to hello
  serverless invoke -f hello|shout -d JSON   blocking, the result printed
  (trigger ping fired through the REST API: the tool has no command for it)
  serverless logs -f hello|shout             what each function printed, the rule's activation included
  serverless remove                          and nothing it made is left
(`serverless info` needs an API gateway, which neither this platform nor a bare OpenWhisk has. Bindings are
test_aio_runtime's: the plugin deploys a service's packages all at once, so a binding of the service's own
package races its creation, and OpenWhisk refuses a binding of a package that does not exist yet.)
"""

from __future__ import annotations

import json

import pytest

from .nodecli import MODULES, NodeTool, needs, tool_env

pytestmark = [pytest.mark.timeout(900), needs("serverless", "serverless-openwhisk")]

HELLO_JS = """\
function main(params) {
  console.log(`greeting ${params.name}`);
  return { message: `${params.greeting}, ${params.name}` };
}
exports.main = main;
"""
SHOUT_PY = """\
def main(params):
    print("shouting", params["text"])
    return {"shout": params["text"].upper()}
"""
SERVICE = """\
service: slsflow
frameworkVersion: "3"
configValidationMode: off
provider:
  name: openwhisk
functions:
  hello:
    name: slspkg/hello
    handler: hello.main
    runtime: nodejs:20
    events:
      - trigger: ping
  shout:
    name: slspkg/shout
    handler: shout.main
    runtime: python:3.11
resources:
  packages:
    slspkg:
      parameters:
        greeting: hey
plugins:
  - serverless-openwhisk
"""


@pytest.fixture(scope="module")
def sls(tool_platform, tmp_path_factory) -> NodeTool:
    """The service deployed by the tool."""
    work = tmp_path_factory.mktemp("sls")
    service = work / "service"  # everything in it is packaged: the home lies beside it
    service.mkdir()
    (service / "hello.js").write_text(HELLO_JS)
    (service / "shout.py").write_text(SHOUT_PY)
    (service / "serverless.yml").write_text(SERVICE)
    env = tool_env(
        work / "home",
        OW_APIHOST=tool_platform.apihost,
        OW_AUTH=tool_platform.auth,
        SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off",
        SLS_INTERACTIVE_SETUP_DISABLE="1",
    )
    tool = NodeTool(["node", str(MODULES / "serverless" / "bin" / "serverless.js")], env, service)
    tool.run("deploy")
    return tool


def test_deploy_makes_both_kinds_their_package_a_trigger_and_its_rule(sls, client):
    kinds = {a["name"]: a["exec"]["kind"] for a in (client.get_action(f"slspkg/{n}") for n in ("hello", "shout"))}
    assert kinds == {"hello": "nodejs:20", "shout": "python:3.11"}
    assert client.get_package("slspkg")["parameters"] == [{"key": "greeting", "value": "hey"}]
    rule = client.get_rule("slsflow_ping_to_hello")
    assert (rule["status"], rule["trigger"]["name"], rule["action"]) == (
        "active",
        "ping",
        {"path": "guest/slspkg", "name": "hello"},
    )


@pytest.mark.parametrize(
    ("function", "data", "result"),
    [("hello", {"name": "ann"}, {"message": "hey, ann"}), ("shout", {"text": "hey"}, {"shout": "HEY"})],
    ids=["nodejs", "python"],
)
def test_invoke_prints_the_result(sls, function, data, result):
    assert json.loads(sls.run("invoke", "-f", function, "-d", json.dumps(data)).stdout) == result


def test_logs_show_what_a_rule_fired_function_printed(sls, client):
    fired = client.fire_trigger("ping", {"name": "trig"})
    [rule_log] = [json.loads(line) for line in client.wait_activation(fired, timeout_s=120)["logs"]]
    client.wait_activation(rule_log["activationId"], timeout_s=120)
    logs = sls.run("logs", "-f", "hello").stdout
    assert f"activation ({rule_log['activationId']})" in logs
    assert "greeting trig" in logs


def test_logs_show_what_an_invoked_python_function_printed(sls):
    sls.run("invoke", "-f", "shout", "-d", '{"text": "for the log"}')
    assert "shouting for the log" in sls.run("logs", "-f", "shout").stdout


def test_remove_leaves_nothing_it_made(sls, client):
    sls.run("remove")
    assert client.list_actions() == []
    assert client.list_packages() == []
    assert client.list_triggers() == []
    assert client.list_rules() == []
