"""Triggers and rules as OpenWhisk keeps them: a rule's status lives in its trigger.

Firing a trigger with at least one active rule records a trigger activation whose result
is the payload and whose logs list, one JSON line per rule, the action activation it
started (or why it could not); each action gets the trigger's parameters merged with the
payload. Without an active rule nothing is recorded (OpenWhisk answers 204).
"""

from __future__ import annotations

import json
import secrets
import time

from localwhisk.entities import bodies, names
from localwhisk.entities.names import QualifiedName
from localwhisk.errors import BadRequest, Conflict, NotFound, PlatformError
from localwhisk.invoker.pool import APPLICATION_ERROR, INTERNAL_ERROR, SUCCESS
from localwhisk.store import KindConflict, RevisionConflict

ACTIVE, INACTIVE = "active", "inactive"
_LINK_TRIES = 20  # a rule's link is merged into its trigger; each try fails only if another write won


def _now_ms() -> int:
    return int(time.time() * 1000)


def _next_version(old: dict | None) -> str:
    if not old:
        return "0.0.1"
    major, minor, patch = (int(x) for x in old["version"].split("."))
    return f"{major}.{minor}.{patch + 1}"


def _qualified(path_name: dict) -> QualifiedName:
    """{path: 'ns' or 'ns/pkg', name} -> QualifiedName."""
    ns, _, pkg = path_name["path"].partition("/")
    return QualifiedName(ns, f"{pkg}/{path_name['name']}" if pkg else path_name["name"])


class Triggers:
    """Trigger and rule entities of a Platform, and trigger firing."""

    def __init__(self, platform) -> None:
        self.platform = platform
        self.store = platform.store

    # triggers
    def put_trigger(self, ns: str, name: str, body, overwrite: bool) -> dict:
        names.check_segment(name)
        body = bodies.check_put("trigger", body)
        old, rev = self.store.get_revision(ns, "triggers", name)
        if old and not overwrite:
            raise Conflict("resource already exists")
        annotations = body.get("annotations", old.get("annotations", []) if old else [])
        feed = next((a["value"] for a in annotations if a["key"] == "feed"), None)
        if feed is not None and not (isinstance(feed, str) and _valid_entity_path(feed)):
            raise BadRequest("Feed name is not valid")
        doc = {
            "namespace": ns,
            "name": name,
            "version": _next_version(old),
            "parameters": body.get("parameters", old.get("parameters", []) if old else []),
            "limits": {},
            "annotations": annotations,
            "publish": body.get("publish", old.get("publish", False) if old else False),
            "updated": _now_ms(),
            "rules": old.get("rules", {}) if old else {},
        }
        self.store.put(ns, "triggers", name, doc, rev)
        return self._public(doc)

    @staticmethod
    def _public(doc: dict) -> dict:
        doc = dict(doc)
        if not doc.get("rules"):
            doc.pop("rules", None)
        return doc

    def get_trigger(self, ns: str, name: str) -> dict:
        return self._public(self._trigger(ns, name))

    def _trigger(self, ns: str, name: str) -> dict:
        return self._trigger_revision(ns, name)[0]

    def _trigger_revision(self, ns: str, name: str) -> tuple[dict, int]:
        doc, rev = self.store.get_revision(ns, "triggers", names.check_segment(name))
        if doc is None:
            raise NotFound()
        return doc, rev

    def list_triggers(self, ns: str, limit: int | None, skip: int) -> list[dict]:
        docs = self.store.list(ns, "triggers", limit=limit, skip=skip)
        return [{k: v for k, v in self._public(d).items() if k not in ("parameters", "rules")} for d in docs]

    def count_triggers(self, ns: str) -> int:
        return self.store.count(ns, "triggers")

    def delete_trigger(self, ns: str, name: str) -> dict:
        doc, rev = self._trigger_revision(ns, name)
        self.store.delete(ns, "triggers", name, rev)
        return self._public(doc)

    # rules
    def put_rule(self, ns: str, name: str, body, overwrite: bool) -> dict:
        names.check_segment(name)
        body = bodies.check_put("rule", body)
        old, rev = self.store.get_revision(ns, "rules", name)
        if old and not overwrite:
            raise Conflict("resource already exists")
        if old is None and not (body.get("trigger") and body.get("action")):
            raise BadRequest("rule requires a valid trigger and a valid action")
        trigger = names.resolve(body["trigger"], ns).as_path_name() if body.get("trigger") else old["trigger"]
        action = names.resolve(body["action"], ns).as_path_name() if body.get("action") else old["action"]
        self._rule_trigger(ns, _qualified(trigger))
        try:
            self.platform.resolve_action(ns, _qualified(action))
        except NotFound as exc:
            raise BadRequest(f"Action {_qualified(action)} does not exist.") from exc
        status = self._status(ns, name, old) if old else ACTIVE
        if old and old["trigger"] != trigger:
            self._link(_qualified(old["trigger"]), ns, name, None)
        doc = {
            "namespace": ns,
            "name": name,
            "version": _next_version(old),
            "publish": body.get("publish", old.get("publish", False) if old else False),
            "annotations": body.get("annotations", old.get("annotations", []) if old else []),
            "trigger": trigger,
            "action": action,
            "updated": _now_ms(),
        }
        self.store.put(ns, "rules", name, doc, rev)
        self._link(_qualified(trigger), ns, name, {"action": action, "status": status})
        return {**doc, "status": status}

    def _get(self, ns: str, collection: str, path: str) -> dict | None:
        """The entity, or None where there is none or the id holds another kind."""
        try:
            return self.store.get_revision(ns, collection, path)[0]
        except KindConflict:
            return None

    def _rule_trigger(self, ns: str, trigger: QualifiedName) -> dict:
        doc = self._get(trigger.namespace, "triggers", trigger.path) if trigger.namespace == ns else None
        if doc is None:
            raise BadRequest(f"Trigger {trigger} does not exist.")
        return doc

    def _link(self, trigger: QualifiedName, ns: str, rule: str, link: dict | None) -> bool:
        """Sets (None: removes) the rule's link in its trigger, merged into whatever the trigger holds now;
        False where the trigger is gone."""
        for _ in range(_LINK_TRIES):
            doc, rev = self.store.get_revision(trigger.namespace, "triggers", trigger.path)
            if doc is None:
                return False
            rules = doc.setdefault("rules", {})
            if link is None and rules.pop(f"{ns}/{rule}", None) is None:
                return True
            if link is not None:
                rules[f"{ns}/{rule}"] = link
            try:
                self.store.put(trigger.namespace, "triggers", trigger.path, doc, rev)
                return True
            except RevisionConflict:
                continue
        raise RevisionConflict()

    def _status(self, ns: str, name: str, rule: dict) -> str:
        trigger = _qualified(rule["trigger"])
        doc = self._get(trigger.namespace, "triggers", trigger.path)
        link = (doc or {}).get("rules", {}).get(f"{ns}/{name}")
        return link["status"] if link else INACTIVE

    def _rule(self, ns: str, name: str) -> dict:
        return self._rule_revision(ns, name)[0]

    def _rule_revision(self, ns: str, name: str) -> tuple[dict, int]:
        doc, rev = self.store.get_revision(ns, "rules", names.check_segment(name))
        if doc is None:
            raise NotFound()
        return doc, rev

    def get_rule(self, ns: str, name: str) -> dict:
        doc = self._rule(ns, name)
        return {**doc, "status": self._status(ns, name, doc)}

    def list_rules(self, ns: str, limit: int | None, skip: int) -> list[dict]:
        docs = self.store.list(ns, "rules", limit=limit, skip=skip)
        return [{**d, "status": self._status(ns, d["name"], d)} for d in docs]

    def count_rules(self, ns: str) -> int:
        return self.store.count(ns, "rules")

    def set_rule_status(self, ns: str, name: str, status) -> dict:
        if status not in (ACTIVE, INACTIVE):
            raise BadRequest("status must be 'active' or 'inactive'")
        doc = self._rule(ns, name)
        if not self._link(_qualified(doc["trigger"]), ns, name, {"action": doc["action"], "status": status}):
            raise NotFound("Only rules with existing triggers can be activated")
        return {}

    def delete_rule(self, ns: str, name: str) -> dict:
        doc, rev = self._rule_revision(ns, name)
        self._link(_qualified(doc["trigger"]), ns, name, None)
        self.store.delete(ns, "rules", name, rev)
        return {**doc, "status": INACTIVE}

    # firing
    def fire(self, ns: str, name: str, payload: dict, auth: str, headers: dict) -> str | None:
        """Starts every active rule's action; returns the trigger activation id, None without active rules."""
        trigger = self._trigger(ns, name)
        active = {rule: link for rule, link in trigger.get("rules", {}).items() if link["status"] == ACTIVE}
        if not active:
            return None
        activation_id = secrets.token_hex(16)
        args = {**{p["key"]: p.get("value") for p in trigger["parameters"]}, "__ow_headers": headers, **payload}
        started = _now_ms()
        results = [self._start_rule(ns, rule, link, args, auth, activation_id) for rule, link in sorted(active.items())]
        doc = {
            "activationId": activation_id,
            "namespace": ns,
            "name": name,
            "version": trigger["version"],
            "subject": ns,
            "start": started,  # no end, duration or statusCode: a trigger's record has none (WhiskActivation)
            "response": {"status": "success", "statusCode": SUCCESS, "success": True, "result": payload},
            "logs": [json.dumps(r, separators=(",", ":")) for r in results],
            "publish": False,
            "annotations": [{"key": "path", "value": f"{ns}/{name}"}, {"key": "kind", "value": "trigger"}],
        }
        self.store.begin_activation(doc)
        self.store.end_activation(doc)
        return activation_id

    def _start_rule(self, ns: str, rule: str, link: dict, args: dict, auth: str, cause: str) -> dict:
        action = _qualified(link["action"])
        out = {"rule": rule, "action": f"{action.namespace}/{action.path}"}
        try:
            activation_id, _ = self.platform.invoke(
                action.namespace, action.path, args, False, auth, subject=ns, cause=cause
            )
        except PlatformError as exc:
            code = INTERNAL_ERROR if exc.status >= 500 else APPLICATION_ERROR
            return {**out, "statusCode": code, "success": False, "error": exc.message}
        return {**out, "statusCode": SUCCESS, "success": True, "activationId": activation_id}


def _valid_entity_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return bool(parts) and all(names.is_valid(p) for p in parts)
