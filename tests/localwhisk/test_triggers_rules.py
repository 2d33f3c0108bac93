"""Triggers and rules through the REST API, as apache/openwhisk's Triggers.scala and Rules.scala define them."""

from __future__ import annotations

import json

import pytest

from deployer.errors import ConflictError, NotFoundError, OpenWhiskError

ECHO = {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}


def _rule_results(client, trigger_activation_id: str) -> list[dict]:
    record = client.get_activation(trigger_activation_id)
    return [json.loads(line) for line in record["logs"]]


def test_trigger_lifecycle_versions_and_fields(platform):
    c = platform.client
    created = c.create_trigger("t-life", parameters={"p": 1}, overwrite=False)
    assert (created["name"], created["namespace"], created["version"]) == ("t-life", "guest", "0.0.1")
    assert created["limits"] == {} and created["annotations"] == []
    with pytest.raises(ConflictError):
        c.create_trigger("t-life", overwrite=False)
    assert c.create_trigger("t-life", parameters={"p": 2}, annotations={"note": "x"})["version"] == "0.0.2"
    assert c.get_trigger("t-life")["parameters"] == [{"key": "p", "value": 2}]
    assert "t-life" in {t["name"] for t in c.list_triggers()}
    c.delete_trigger("t-life")
    with pytest.raises(NotFoundError):
        c.get_trigger("t-life")


def test_firing_runs_every_active_rule_with_merged_parameters(platform):
    c = platform.client
    c.create_action("t-echo", ECHO)
    c.create_trigger("t-fire", parameters={"from_trigger": "yes", "both": "trigger"})
    rule = c.create_rule("r-fire", "t-fire", "t-echo")
    assert rule["status"] == "active" and rule["action"] == {"path": "guest", "name": "t-echo"}
    assert rule["trigger"] == {"path": "guest", "name": "t-fire"}
    c.create_rule("r-fire-system", "/guest/t-fire", "/whisk.system/utils/echo")
    # Execute
    trigger_id = c.fire_trigger("t-fire", {"both": "payload", "n": 7})
    # Assert: the trigger's record holds the payload and one log line per rule, naming each activation
    trigger_record = c.get_activation(trigger_id)
    assert trigger_record["response"]["result"] == {"both": "payload", "n": 7}
    # as WhiskActivation writes a trigger's record (its end is the epoch): no end, no duration, in a list no status
    assert not {"end", "duration"} & set(trigger_record)
    [summary] = [a for a in c.list_activations("t-fire", limit=5) if a["activationId"] == trigger_id]
    assert not {"end", "duration", "statusCode"} & set(summary) and summary["start"] == trigger_record["start"]
    results = sorted(_rule_results(c, trigger_id), key=lambda r: r["rule"])
    assert [r["rule"] for r in results] == ["guest/r-fire", "guest/r-fire-system"]
    assert [r["action"] for r in results] == ["guest/t-echo", "whisk.system/utils/echo"]
    for line in results:
        assert line["success"] is True and line["statusCode"] == 0
        args = c.wait_activation(line["activationId"], timeout_s=60, result=True)
        assert {k: args[k] for k in ("from_trigger", "both", "n")} == {"from_trigger": "yes", "both": "payload", "n": 7}
        assert "authorization" not in args["__ow_headers"]
        assert c.get_activation(line["activationId"])["cause"] == trigger_id


def test_disabled_rules_do_not_fire_and_a_trigger_without_active_rules_records_nothing(platform):
    c = platform.client
    c.create_action("t-quiet-action", ECHO)
    c.create_trigger("t-quiet")
    assert c.fire_trigger("t-quiet", {}) is None  # no rule: 204, no record
    c.create_rule("r-quiet", "t-quiet", "t-quiet-action")
    c.set_rule_status("r-quiet", active=False)
    assert c.get_rule("r-quiet")["status"] == "inactive"
    assert c.fire_trigger("t-quiet", {}) is None
    c.set_rule_status("r-quiet", active=True)
    assert c.get_rule("r-quiet")["status"] == "active"
    assert c.fire_trigger("t-quiet", {}) is not None


def test_rules_update_delete_and_refuse_missing_ends(platform):
    c = platform.client
    c.create_action("t-one", ECHO)
    c.create_action("t-two", ECHO)
    c.create_trigger("t-upd")
    c.create_rule("r-upd", "t-upd", "t-one")
    c.set_rule_status("r-upd", active=False)
    updated = c.create_rule("r-upd", "t-upd", "t-two")
    assert updated["action"] == {"path": "guest", "name": "t-two"} and updated["version"] == "0.0.2"
    assert updated["status"] == "inactive"  # an update keeps the rule's status
    assert "r-upd" in {r["name"] for r in c.list_rules()}
    with pytest.raises(OpenWhiskError, match="does not exist") as info:
        c.create_rule("r-bad", "no-such-trigger", "t-one")
    assert info.value.status == 400
    with pytest.raises(OpenWhiskError, match="does not exist"):
        c.create_rule("r-bad", "t-upd", "no-such-action")
    with pytest.raises(OpenWhiskError, match="status must be"):
        c._request("POST", c._url("rules", "r-upd"), json_body={"status": "paused"})
    assert c.delete_rule("r-upd")["status"] == "inactive"
    assert "guest/r-upd" not in c.get_trigger("t-upd").get("rules", {})


def test_a_rule_whose_action_is_gone_is_reported_in_the_trigger_record(platform):
    c = platform.client
    c.create_action("t-gone", ECHO)
    c.create_trigger("t-dangling")
    c.create_rule("r-dangling", "t-dangling", "t-gone")
    c.delete_action("t-gone")
    trigger_id = c.fire_trigger("t-dangling", {})
    [line] = _rule_results(c, trigger_id)
    assert line["success"] is False and line["error"] == "The requested resource does not exist."


def test_triggers_and_rules_survive_a_restart(platform):
    c = platform.client
    c.create_action("t-keep-action", ECHO)
    c.create_trigger("t-keep", parameters={"kept": True})
    c.create_rule("r-keep", "t-keep", "t-keep-action")
    platform.restart()
    c = platform.client
    assert c.get_rule("r-keep")["status"] == "active"
    [line] = _rule_results(c, c.fire_trigger("t-keep", {}))
    assert c.wait_activation(line["activationId"], timeout_s=60, result=True)["kept"] is True


def test_feeds_are_refused_with_openwhisk_error_bodies(platform):
    c = platform.client
    with pytest.raises(OpenWhiskError, match="Feed name is not valid"):
        c.create_trigger("t-feed", annotations={"feed": 42})
    # a feed trigger is created by invoking its feed action: there is none here, as on a cluster without it
    with pytest.raises(NotFoundError):
        c.invoke("/whisk.system/alarms/alarm", {"lifecycleEvent": "CREATE"})
