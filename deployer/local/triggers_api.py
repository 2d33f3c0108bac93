"""REST routes for triggers and rules (apache/openwhisk docs/rest_api.md)."""

from __future__ import annotations

from flask import Flask, Response, request

from . import api_common as api
from .triggers import Triggers


def _fire_headers() -> dict:
    """The request's headers as OpenWhisk passes them to rule actions (lower-case), without the credentials."""
    return {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}


def register(app: Flask, platform, authenticate) -> None:
    triggers = Triggers(platform)
    platform.triggers = triggers

    @app.get("/api/v1/namespaces/<ns>/triggers")
    def list_triggers(ns):
        caller = authenticate(ns, write=True)
        return api.json_response(triggers.list_triggers(caller.namespace, *api.list_window("triggers")))

    @app.route("/api/v1/namespaces/<ns>/triggers/<name>", methods=["GET", "PUT", "DELETE", "POST"])
    def trigger(ns, name):
        caller = authenticate(ns, write=True)
        if request.method == "PUT":
            return api.json_response(triggers.put_trigger(caller.namespace, name, api.json_body(),
                                                          api.flag("overwrite")))
        if request.method == "DELETE":
            return api.json_response(triggers.delete_trigger(caller.namespace, name))
        if request.method == "GET":
            return api.json_response(triggers.get_trigger(caller.namespace, name))
        api.check_payload_size()
        activation_id = triggers.fire(caller.namespace, name, api.json_body(), caller.key, _fire_headers())
        if activation_id is None:
            return Response(status=204)
        return api.json_response({"activationId": activation_id}, 202,
                                 {"x-openwhisk-activation-id": activation_id})

    @app.get("/api/v1/namespaces/<ns>/rules")
    def list_rules(ns):
        caller = authenticate(ns, write=True)
        return api.json_response(triggers.list_rules(caller.namespace, *api.list_window("rules")))

    @app.route("/api/v1/namespaces/<ns>/rules/<name>", methods=["GET", "PUT", "DELETE", "POST"])
    def rule(ns, name):
        caller = authenticate(ns, write=True)
        if request.method == "PUT":
            return api.json_response(triggers.put_rule(caller.namespace, name, api.json_body(), api.flag("overwrite")))
        if request.method == "DELETE":
            return api.json_response(triggers.delete_rule(caller.namespace, name))
        if request.method == "GET":
            return api.json_response(triggers.get_rule(caller.namespace, name))
        return api.json_response(triggers.set_rule_status(caller.namespace, name, api.json_body().get("status")))
