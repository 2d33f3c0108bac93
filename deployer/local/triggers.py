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

from . import names
from .errors import BadRequest, Conflict, NotFound, PlatformError
from .invoker import APPLICATION_ERROR, INTERNAL_ERROR, SUCCESS
from .names import QualifiedName

ACTIVE, INACTIVE = "active", "inactive"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _kv(params, what: str) -> list[dict]:
    if params is None:
        return []
    if not isinstance(params, list) or not all(isinstance(p, dict) and "key" in p for p in params):
        raise BadRequest(f"The request content was malformed: {what} must be a list of {{key, value}} objects.")
    return [{"key": p["key"], "value": p.get("value")} for p in params]


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
    def put_trigger(self, ns: str, name: str, body: dict, overwrite: bool) -> dict:
        names.check_segment(name)
        old = self.store.get(ns, "triggers", name)
        if old and not overwrite:
            raise Conflict("resource already exists")
        annotations = _kv(body.get("annotations", old.get("annotations") if old else []), "annotations")
        feed = next((a["value"] for a in annotations if a["key"] == "feed"), None)
        if feed is not None and not (isinstance(feed, str) and _valid_entity_path(feed)):
            raise BadRequest("Feed name is not valid")
        doc = {
            "namespace": ns,
            "name": name,
            "version": _next_version(old),
            "parameters": _kv(body.get("parameters", old.get("parameters") if old else []), "parameters"),
            "limits": {},
            "annotations": annotations,
            "publish": bool(body.get("publish", old.get("publish", False) if old else False)),
            "updated": _now_ms(),
            "rules": old.get("rules", {}) if old else {},
        }
        self.store.put(ns, "triggers", name, doc)
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
        doc = self.store.get(ns, "triggers", names.check_segment(name))
        if doc is None:
            raise NotFound()
        return doc

    def list_triggers(self, ns: str, limit: int, skip: int) -> list[dict]:
        docs = self.store.list(ns, "triggers")[skip : skip + limit]
        return [{k: v for k, v in self._public(d).items() if k not in ("parameters", "rules")} for d in docs]

    def delete_trigger(self, ns: str, name: str) -> dict:
        doc = self._trigger(ns, name)
        self.store.delete(ns, "triggers", name)
        return self._public(doc)

    # rules
    def put_rule(self, ns: str, name: str, body: dict, overwrite: bool) -> dict:
        names.check_segment(name)
        old = self.store.get(ns, "rules", name)
        if old and not overwrite:
            raise Conflict("resource already exists")
        if old is None and not (body.get("trigger") and body.get("action")):
            raise BadRequest("rule requires a valid trigger and a valid action")
        trigger = names.resolve(body["trigger"], ns).as_path_name() if body.get("trigger") else old["trigger"]
        action = names.resolve(body["action"], ns).as_path_name() if body.get("action") else old["action"]
        trigger_doc = self._rule_trigger(ns, _qualified(trigger))
        try:
            self.platform.resolve_action(ns, _qualified(action))
        except NotFound as exc:
            raise BadRequest(f"Action {_qualified(action)} does not exist.") from exc
        status = self._status(ns, name, old) if old else ACTIVE
        if old and old["trigger"] != trigger:
            self._unlink(ns, name, _qualified(old["trigger"]))
        doc = {
            "namespace": ns,
            "name": name,
            "version": _next_version(old),
            "publish": bool(body.get("publish", False)),
            "annotations": _kv(body.get("annotations", old.get("annotations") if old else []), "annotations"),
            "trigger": trigger,
            "action": action,
            "updated": _now_ms(),
        }
        self.store.put(ns, "rules", name, doc)
        self._link(trigger_doc, ns, name, action, status)
        return {**doc, "status": status}

    def _rule_trigger(self, ns: str, trigger: QualifiedName) -> dict:
        doc = self.store.get(trigger.namespace, "triggers", trigger.path) if trigger.namespace == ns else None
        if doc is None:
            raise BadRequest(f"Trigger {trigger} does not exist.")
        return doc

    def _link(self, trigger_doc: dict, ns: str, rule: str, action: dict, status: str) -> None:
        trigger_doc.setdefault("rules", {})[f"{ns}/{rule}"] = {"action": action, "status": status}
        self.store.put(trigger_doc["namespace"], "triggers", trigger_doc["name"], trigger_doc)

    def _unlink(self, ns: str, rule: str, trigger: QualifiedName) -> None:
        doc = self.store.get(trigger.namespace, "triggers", trigger.path)
        if doc and doc.get("rules", {}).pop(f"{ns}/{rule}", None) is not None:
            self.store.put(trigger.namespace, "triggers", trigger.path, doc)

    def _status(self, ns: str, name: str, rule: dict) -> str:
        trigger = _qualified(rule["trigger"])
        doc = self.store.get(trigger.namespace, "triggers", trigger.path)
        link = (doc or {}).get("rules", {}).get(f"{ns}/{name}")
        return link["status"] if link else INACTIVE

    def _rule(self, ns: str, name: str) -> dict:
        doc = self.store.get(ns, "rules", names.check_segment(name))
        if doc is None:
            raise NotFound()
        return doc

    def get_rule(self, ns: str, name: str) -> dict:
        doc = self._rule(ns, name)
        return {**doc, "status": self._status(ns, name, doc)}

    def list_rules(self, ns: str, limit: int, skip: int) -> list[dict]:
        return [
            {**d, "status": self._status(ns, d["name"], d)} for d in self.store.list(ns, "rules")[skip : skip + limit]
        ]

    def set_rule_status(self, ns: str, name: str, status) -> dict:
        if status not in (ACTIVE, INACTIVE):
            raise BadRequest("status must be 'active' or 'inactive'")
        doc = self._rule(ns, name)
        trigger = _qualified(doc["trigger"])
        trigger_doc = self.store.get(trigger.namespace, "triggers", trigger.path)
        if trigger_doc is None:
            raise NotFound("Only rules with existing triggers can be activated")
        self._link(trigger_doc, ns, name, doc["action"], status)
        return {}

    def delete_rule(self, ns: str, name: str) -> dict:
        doc = self._rule(ns, name)
        self._unlink(ns, name, _qualified(doc["trigger"]))
        self.store.delete(ns, "rules", name)
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
            "start": started,
            "end": started,
            "duration": 0,
            "statusCode": SUCCESS,
            "response": {"status": "success", "statusCode": SUCCESS, "success": True, "result": payload},
            "logs": [json.dumps(r, separators=(",", ":")) for r in results],
            "publish": False,
            "annotations": [{"key": "path", "value": f"{ns}/{name}"}, {"key": "kind", "value": "trigger"}],
        }
        self.store.begin_activation(doc, name)
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
