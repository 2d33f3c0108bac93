"""REST routes for triggers and rules (apache/openwhisk docs/rest_api.md)."""

from __future__ import annotations

from functools import partial

from flask import Flask, Response, request

from localwhisk.controller import common as api
from localwhisk.entities.triggers import Triggers


def _fire_headers() -> dict:
    """The request's headers as OpenWhisk passes them to rule actions (lower-case), without the credentials."""
    return {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}


def _crud(app: Flask, collection: str, authenticate, put, get, delete, post) -> None:
    """GET/PUT/DELETE/POST on /namespaces/<ns>/<collection>/<name>, in the caller's own namespace."""

    def handle(ns, name):
        caller = authenticate(ns, write=True)
        if request.method == "PUT":
            return api.json_response(put(caller.namespace, name, api.json_body(), api.flag("overwrite")))
        if request.method == "DELETE":
            return api.json_response(delete(caller.namespace, name))
        if request.method == "GET":
            return api.json_response(get(caller.namespace, name))
        return post(caller, name)

    app.add_url_rule(
        f"/api/v1/namespaces/<ns>/{collection}/<name>",
        f"{collection}_entity",
        handle,
        methods=["GET", "PUT", "DELETE", "POST"],
    )


def register(app: Flask, platform, authenticate) -> None:
    triggers = Triggers(platform)
    platform.triggers = triggers

    @app.get("/api/v1/namespaces/<ns>/triggers")
    def list_triggers(ns):
        caller = authenticate(ns, write=True)
        count = partial(triggers.count_triggers, caller.namespace)
        return api.list_or_count("triggers", partial(triggers.list_triggers, caller.namespace), count)

    @app.get("/api/v1/namespaces/<ns>/rules")
    def list_rules(ns):
        caller = authenticate(ns, write=True)
        return api.list_or_count(
            "rules", partial(triggers.list_rules, caller.namespace), partial(triggers.count_rules, caller.namespace)
        )

    def fire(caller, name):
        api.check_payload_size()
        activation_id = triggers.fire(caller.namespace, name, api.json_body(), caller.key, _fire_headers())
        if activation_id is None:
            return Response(status=204)
        return api.json_response({"activationId": activation_id}, 202, {"x-openwhisk-activation-id": activation_id})

    def set_status(caller, name):
        status = api.json_body().get("status")
        return api.json_response(triggers.set_rule_status(caller.namespace, name, status))

    _crud(app, "triggers", authenticate, triggers.put_trigger, triggers.get_trigger, triggers.delete_trigger, fire)
    _crud(app, "rules", authenticate, triggers.put_rule, triggers.get_rule, triggers.delete_rule, set_status)
