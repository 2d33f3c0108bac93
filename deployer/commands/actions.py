"""deploy / undeploy / invoke / actions / activations: the everyday OpenWhisk verbs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import manifest as manifest_mod
from ..errors import ActivationFailedError
from .output import emit_json, list_docs, ms_time
from .params import JsonObjectFile, integer


def _parse_value(raw: str):
    """Like wsk -p: JSON when it parses, else the plain string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_pairs(pairs) -> dict:
    """KEY VALUE pairs of -p/-a as a dict, values parsed like wsk's."""
    return {k: _parse_value(v) for k, v in pairs}


param_option = click.option(
    "-p",
    "--param",
    "params",
    nargs=2,
    multiple=True,
    metavar="KEY VALUE",
    help="Parameter (JSON values are parsed); repeatable.",
)


@click.command()
@click.option(
    "-m",
    "--manifest",
    "manifest_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="wskdeploy manifest (YAML).",
)
@click.option("-d", "--deployment", type=click.Path(exists=True, dir_okay=False), help="wskdeploy deployment file.")
@click.pass_obj
def deploy(obj, manifest_path: str, deployment: str | None) -> None:
    """Deploy the packages, actions, sequences, triggers and rules of a wskdeploy manifest."""
    manifest_mod.check(Path(manifest_path), Path(deployment) if deployment else None)  # before starting anything
    target = obj.target
    env = target.storage.manifest_env()
    names = manifest_mod.deploy(target.client(), Path(manifest_path), Path(deployment) if deployment else None, env)
    click.echo(f"deployed to {target.apihost} ({target.source}): {', '.join(names)}")


@click.command()
@click.option("-m", "--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def undeploy(obj, manifest_path: str) -> None:
    """Delete what a manifest deploys."""
    manifest_mod.check(Path(manifest_path))
    removed = manifest_mod.undeploy(obj.client, Path(manifest_path))
    click.echo(f"removed: {', '.join(removed) if removed else 'nothing'}")


@click.command()
@click.argument("name")
@param_option
@click.option("-P", "--param-file", type=JsonObjectFile(), help="JSON file of parameters (one object; '-': stdin).")
@click.option("-r", "--result", is_flag=True, help="Print only the result (implies --blocking).")
@click.option("-b", "--blocking", is_flag=True, help="Wait for the activation.")
@click.pass_obj
def invoke(obj, name: str, params, param_file, result: bool, blocking: bool) -> None:
    """Invoke action NAME (package/action)."""
    payload = dict(param_file or {})
    payload.update(parse_pairs(params))
    blocking = blocking or result
    try:
        out = obj.client.invoke(name, payload, blocking=blocking, result=result)
    except ActivationFailedError as exc:
        if result:
            emit_json(exc.result)
        elif exc.activation:
            emit_json(exc.activation)
        raise click.ClickException(str(exc)) from exc
    if not blocking:
        click.echo(f"ok: invoked {name} with id {out['activationId']}")
        return
    emit_json(out)


@click.group()
def actions() -> None:
    """Actions: list, get, delete."""


@actions.command("list")
@click.argument("package", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def actions_list(obj, package: str | None, as_json: bool) -> None:
    list_docs(obj.client.list_actions(package), as_json, ["name", "kind", "version", "updated"], _action_row)


def _action_row(d: dict) -> tuple:
    return (
        f"{d['namespace'].split('/', 1)[1] + '/' if '/' in d['namespace'] else ''}{d['name']}",
        d.get("exec", {}).get("kind"),
        d.get("version"),
        ms_time(d.get("updated")),
    )


@actions.command("get")
@click.argument("name")
@click.option("--code", is_flag=True, help="Include the code.")
@click.pass_obj
def actions_get(obj, name: str, code: bool) -> None:
    emit_json(obj.client.get_action(name, code=code))


@actions.command("delete")
@click.argument("name")
@click.pass_obj
def actions_delete(obj, name: str) -> None:
    obj.client.delete_action(name)
    click.echo(f"ok: deleted {name}")


@click.group()
def activations() -> None:
    """Activations: list, get, logs, result."""


@activations.command("list")
@click.argument("name", required=False)
@click.option(
    "-l",
    "--limit",
    default=30,
    show_default=True,
    type=integer(0, 200),
    help="At most this many (0: OpenWhisk's most, 200).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def activations_list(obj, name: str | None, limit: int, as_json: bool) -> None:
    list_docs(
        obj.client.list_activations(name, limit=limit),
        as_json,
        ["start", "activation id", "kind", "name", "status", "duration ms", "init ms", "wait ms", "caused by"],
        _activation_row,
    )


STATUS = {0: "success", 1: "application error", 2: "developer error", 3: "internal error"}


def _activation_row(d: dict) -> tuple:
    return (
        ms_time(d.get("start")),
        d["activationId"],
        _ann(d, "kind"),
        _ann(d, "path") or d["name"],
        STATUS.get(d.get("statusCode"), "?") if "statusCode" in d else "",  # a trigger's has none
        d.get("duration"),
        _ann(d, "initTime"),
        _ann(d, "waitTime"),
        d.get("cause", ""),
    )


def _ann(doc: dict, key: str):
    return next((a["value"] for a in doc.get("annotations", []) if a["key"] == key), None)


@activations.command("get")
@click.argument("activation_id")
@click.pass_obj
def activations_get(obj, activation_id: str) -> None:
    emit_json(obj.client.get_activation(activation_id))


@activations.command("logs")
@click.argument("activation_id")
@click.pass_obj
def activations_logs(obj, activation_id: str) -> None:
    """The activation's log lines; for a trigger, the rule activations it started."""
    record = obj.client.get_activation(activation_id)
    lines = record.get("logs", [])
    for line in rule_outcomes(lines) if _ann(record, "kind") == "trigger" else lines:
        click.echo(line)


def rule_outcomes(logs: list[str]) -> list[str]:
    """A trigger activation's logs (one JSON object per rule) as lines a person reads."""
    out = []
    for line in logs:
        rule = json.loads(line)
        outcome = rule.get("activationId") or f"not started: {rule.get('error')}"
        out.append(f"rule {rule['rule']} -> {rule['action']}: {outcome}")
    return out


@activations.command("result")
@click.argument("activation_id")
@click.pass_obj
def activations_result(obj, activation_id: str) -> None:
    emit_json(obj.client.activation_result(activation_id))
