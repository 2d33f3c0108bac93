"""triggers / rules / packages: OpenWhisk's event wiring and package bindings, as `wsk` offers them."""

from __future__ import annotations

import click

from .actions import param_option, parse_pairs, rule_outcomes
from .output import emit_json, list_docs, ms_time

_annotation = click.option(
    "-a",
    "--annotation",
    "annotations",
    nargs=2,
    multiple=True,
    metavar="KEY VALUE",
    help="Annotation (JSON values are parsed); repeatable.",
)
_as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def triggers() -> None:
    """Triggers: create, fire, list, get, delete."""


@triggers.command("create")
@click.argument("name")
@param_option
@_annotation
@click.pass_obj
def trigger_create(obj, name: str, params, annotations) -> None:
    """Create or update trigger NAME."""
    doc = obj.client.create_trigger(name, parse_pairs(params), parse_pairs(annotations))
    click.echo(f"ok: trigger {name} (version {doc['version']})")


@triggers.command("fire")
@click.argument("name")
@param_option
@click.pass_obj
def trigger_fire(obj, name: str, params) -> None:
    """Fire trigger NAME: every active rule starts its action with the merged parameters."""
    activation_id = obj.client.fire_trigger(name, parse_pairs(params))
    if activation_id is None:
        click.echo(f"ok: fired {name}; no active rule, so nothing ran and nothing was recorded")
        return
    click.echo(f"ok: fired {name} with id {activation_id}")
    for line in rule_outcomes(obj.client.activation_logs(activation_id)):
        click.echo(f"  {line}")


@triggers.command("list")
@_as_json
@click.pass_obj
def trigger_list(obj, as_json: bool) -> None:
    """List this namespace's triggers."""
    list_docs(
        obj.client.list_triggers(),
        as_json,
        ["name", "version", "updated"],
        lambda d: (d["name"], d.get("version"), ms_time(d.get("updated"))),
    )


@click.group()
def rules() -> None:
    """Rules: create, enable, disable, list, get, delete."""


@rules.command("create")
@click.argument("name")
@click.argument("trigger")
@click.argument("action")
@click.pass_obj
def rule_create(obj, name: str, trigger: str, action: str) -> None:
    """Create or update rule NAME: when TRIGGER fires, invoke ACTION."""
    doc = obj.client.create_rule(name, trigger, action)
    click.echo(f"ok: rule {name} ({doc['status']}): {trigger} -> {action}")


def _rule_switch(verb: str, active: bool) -> None:
    """`rules enable NAME` and `rules disable NAME` differ only in the status they set."""

    @rules.command(verb)
    @click.argument("name")
    @click.pass_obj
    def switch_command(obj, name: str) -> None:
        obj.client.set_rule_status(name, active=active)
        click.echo(f"ok: rule {name} is {'active' if active else 'inactive'}")


_rule_switch("enable", True)
_rule_switch("disable", False)


@rules.command("list")
@_as_json
@click.pass_obj
def rule_list(obj, as_json: bool) -> None:
    """List this namespace's rules and whether each is active."""
    list_docs(obj.client.list_rules(), as_json, ["name", "status", "trigger", "action"], _rule_row)


def _rule_row(d: dict) -> tuple:
    return (
        d["name"],
        d.get("status"),
        f"{d['trigger']['path']}/{d['trigger']['name']}",
        f"{d['action']['path']}/{d['action']['name']}",
    )


@click.group()
def packages() -> None:
    """Packages: list, get, bind, delete."""


@packages.command("list")
@_as_json
@click.pass_obj
def package_list(obj, as_json: bool) -> None:
    """List this namespace's packages and bindings."""
    list_docs(obj.client.list_packages(), as_json, ["name", "binding", "published", "updated"], _package_row)


def _package_row(d: dict) -> tuple:
    return (
        d["name"],
        "/{namespace}/{name}".format(**d["binding"]) if d.get("binding") else "",
        d.get("publish"),
        ms_time(d.get("updated")),
    )


@packages.command("bind")
@click.argument("source")
@click.argument("name")
@param_option
@click.pass_obj
def package_bind(obj, source: str, name: str, params) -> None:
    """Bind package SOURCE as NAME with parameters of its own (e.g. /whisk.system/utils myutils)."""
    obj.client.bind_package(name, source, parse_pairs(params))
    click.echo(f"ok: bound {source} as {name}")


def _get_and_delete(group: click.Group, noun: str, get, delete) -> None:
    """`get NAME` (JSON) and `delete NAME` for one kind of entity."""

    @group.command("get", help=f"Show {noun} NAME as JSON ('/ns/name' for another namespace's public one).")
    @click.argument("name")
    @click.pass_obj
    def get_command(obj, name: str) -> None:
        emit_json(get(obj.client, name))

    @group.command("delete", help=f"Delete {noun} NAME.")
    @click.argument("name")
    @click.pass_obj
    def delete_command(obj, name: str) -> None:
        delete(obj.client, name)
        click.echo(f"ok: deleted {noun} {name}")


_get_and_delete(triggers, "trigger", lambda c, n: c.get_trigger(n), lambda c, n: c.delete_trigger(n))
_get_and_delete(rules, "rule", lambda c, n: c.get_rule(n), lambda c, n: c.delete_rule(n))
_get_and_delete(packages, "package", lambda c, n: c.get_package(n), lambda c, n: c.delete_package(n))
