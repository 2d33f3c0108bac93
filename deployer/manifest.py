"""wskdeploy manifests: read the real format, check it with line numbers, deploy and undeploy.

Only what the format defines is accepted, so a manifest that deploys here also deploys
with `wskdeploy -m`; anything unknown or malformed is an error naming file and line.
"""

from __future__ import annotations

import ast
import base64
import io
import os
import re
import zipfile
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localwhisk.invoker.docker_cli import RUNTIME_IMAGE

from .errors import ManifestError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Project packages bundled into an action zip when its code imports them (real OpenWhisk has no other way to see them).
BUNDLEABLE = ("mlcore", "fedavg")
# The project's action runtime image (runtimes/Dockerfile): `docker: $DEPLOYER_RUNTIME_IMAGE` in the
# manifests. wskdeploy needs the variable exported; deployer falls back to this tag.
DEFAULT_RUNTIME_IMAGE = RUNTIME_IMAGE

TOP_KEYS = {"project", "packages", "package"}
PROJECT_KEYS = {"name", "namespace", "credential", "apiHost", "version", "packages", "inputs", "config"}
PACKAGE_KEYS = {
    "version",
    "license",
    "namespace",
    "credential",
    "apiHost",
    "dependencies",
    "inputs",
    "actions",
    "sequences",
    "triggers",
    "rules",
    "apis",
    "feeds",
    "annotations",
    "public",
}
ACTION_KEYS = {
    "function",
    "code",
    "runtime",
    "docker",
    "native",
    "main",
    "inputs",
    "outputs",
    "limits",
    "annotations",
    "web",
    "web-export",
    "raw",
    "version",
    "license",
    "include",
    "exclude",
    "conductor",
}
SEQUENCE_KEYS = {"actions", "web", "web-export", "annotations", "inputs"}
LIMIT_KEYS = {
    "timeout": "timeout",
    "memorySize": "memory",
    "logSize": "logs",
    "concurrentActivations": "concurrency",
    "userInvocationRate": None,
    "codeSize": None,
    "parameterSize": None,
}
TYPED_INPUT_KEYS = {"type", "value", "default", "description", "required"}
TRIGGER_KEYS = {"inputs", "annotations", "feed", "source"}
RULE_KEYS = {"trigger", "action", "annotations", "rule"}
UNSUPPORTED = {"apis", "feeds", "dependencies"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class _Doc:
    """A YAML document as plain Python plus the line of every mapping key and value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[tuple, int] = {}
        try:
            node = yaml.compose(path.read_text())
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ManifestError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
        self.data = self._convert(node, ()) if node is not None else {}

    def _convert(self, node, where: tuple):
        self.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = key_node.value
                if key in out:
                    raise ManifestError(f"{self.path}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
                out[key] = self._convert(value_node, where + (key,))
                self.lines[where + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(v, where + (i,)) for i, v in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value

    def fail(self, where: tuple, message: str) -> ManifestError:
        line = None
        for i in range(len(where), -1, -1):
            line = self.lines.get(where[:i])
            if line:
                break
        return ManifestError(f"{self.path}:{line or 1}: {message}")


@dataclass
class ActionSpec:
    package: str
    name: str
    exec_: dict
    inputs: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.package}/{self.name}"


@dataclass
class TriggerSpec:
    name: str
    inputs: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)


@dataclass
class RuleSpec:
    name: str
    trigger: str
    action: str


@dataclass
class PackageSpec:
    name: str
    inputs: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    actions: list[ActionSpec] = field(default_factory=list)
    sequences: list[ActionSpec] = field(default_factory=list)
    triggers: list[TriggerSpec] = field(default_factory=list)
    rules: list[RuleSpec] = field(default_factory=list)


def _interpolate(doc: _Doc, where: tuple, value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(doc, where + (k,), v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(doc, where + (i,), v, env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in env:
            raise doc.fail(where, f"${name} is not set in the environment (needed by {'.'.join(map(str, where))})")
        return env[name]

    return _VAR.sub(sub, value)


def _check_keys(doc: _Doc, where: tuple, value: Any, allowed: set[str], what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.fail(where, f"{what} must be a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise doc.fail(where + (key,), f"unknown key {key!r} in {what}; allowed: {', '.join(sorted(allowed))}")
    return value


def _inputs(doc: _Doc, where: tuple, raw: Any, env: Mapping[str, str]) -> dict:
    raw = _check_keys(doc, where, raw, set(raw) if isinstance(raw, dict) else set(), "inputs")
    out = {}
    for key, val in raw.items():
        if (
            isinstance(val, dict)
            and val
            and set(val) <= TYPED_INPUT_KEYS
            and ("value" in val or "default" in val or "type" in val)
        ):
            val = val.get("value", val.get("default"))
        out[key] = _interpolate(doc, where + (key,), val, env)
    return out


def _limits(doc: _Doc, where: tuple, raw: Any) -> dict:
    raw = _check_keys(doc, where, raw, set(LIMIT_KEYS), "limits")
    out = {}
    for key, val in raw.items():
        if not isinstance(val, int) or isinstance(val, bool):
            raise doc.fail(where + (key,), f"limit {key} must be an integer, got {val!r}")
        if LIMIT_KEYS[key]:
            out[LIMIT_KEYS[key]] = val
    return out


def _imports(folder: Path) -> set[str]:
    found = set()
    for py in folder.rglob("*.py"):
        try:
            tree = ast.parse(py.read_text(), str(py))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def zip_action(folder: Path) -> bytes:
    """The folder plus the project packages its code imports, as OpenWhisk's zip action format."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                zf.write(f, f.relative_to(folder).as_posix())
        wanted = _imports(folder)
        for pkg in BUNDLEABLE:
            if pkg in wanted and not (folder / pkg).exists():
                for f in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
                    if "__pycache__" not in f.parts:
                        zf.write(f, f.relative_to(PROJECT_ROOT).as_posix())
    return buf.getvalue()


def _exec_for(doc: _Doc, where: tuple, spec: dict, base: Path, env: Mapping[str, str]) -> dict:
    runtime, docker, function = spec.get("runtime"), spec.get("docker"), spec.get("function")
    exec_: dict[str, Any] = {}
    if docker:
        exec_ = {"kind": "blackbox", "image": _interpolate(doc, where + ("docker",), str(docker), env)}
    elif runtime:
        exec_ = {"kind": runtime if ":" in str(runtime) else f"{runtime}:default"}
    if function is None and "code" not in spec:
        raise doc.fail(where, "an action needs `function` (a file or folder) or `code`")
    if "code" in spec:
        exec_.setdefault("kind", "python:default")
        exec_.update(code=str(spec["code"]), binary=False)
    else:
        exec_.update(_function_code(doc, where + ("function",), base, str(function), exec_.get("kind")))
    if spec.get("main"):
        exec_["main"] = str(spec["main"])
    return exec_


def _function_code(doc: _Doc, where: tuple, base: Path, function: str, kind: str | None) -> dict:
    """kind, code and binary for `function:` — a .py or .js file, a .zip, or a folder (zipped here)."""
    path = (base / function).resolve()
    if path.is_dir():
        nodejs = (path / "package.json").is_file() or (path / "index.js").is_file()
        if not nodejs and not (path / "__main__.py").is_file():
            raise doc.fail(
                where,
                f"folder {function} has no __main__.py (a Python zip action needs one) nor "
                "package.json or index.js (a Node.js one needs either)",
            )
        return {
            "kind": kind or ("nodejs:default" if nodejs else "python:default"),
            "code": base64.b64encode(zip_action(path)).decode(),
            "binary": True,
        }
    if not path.is_file():
        raise doc.fail(where, f"function {function} does not exist (relative to {base})")
    if path.suffix == ".zip":
        return {"kind": kind or "python:default", "code": base64.b64encode(path.read_bytes()).decode(), "binary": True}
    if path.suffix in (".py", ".js"):
        default = "python:default" if path.suffix == ".py" else "nodejs:default"
        return {"kind": kind or default, "code": path.read_text(), "binary": False}
    raise doc.fail(where, f"{function}: actions are .py or .js files, .zip files or folders")


def _events(doc: _Doc, pw: tuple, pspec: dict, env: Mapping[str, str]) -> tuple[list, list]:
    """The package's `triggers:` and `rules:`; rule actions are relative to the package, as in wskdeploy."""
    triggers, rules = [], []
    for tname, tspec in (
        _check_keys(doc, pw + ("triggers",), pspec.get("triggers"), set(pspec.get("triggers") or {}), "triggers")
    ).items():
        tw = pw + ("triggers", tname)
        tspec = _check_keys(doc, tw, tspec, TRIGGER_KEYS, f"trigger {tname}")
        if tspec.get("feed") or tspec.get("source"):
            raise doc.fail(
                tw,
                f"trigger {tname} has a feed: feeds are valid wskdeploy but not supported by "
                "deployer (no feed providers here); deploy it with wskdeploy",
            )
        triggers.append(
            TriggerSpec(
                tname, _inputs(doc, tw + ("inputs",), tspec.get("inputs"), env), dict(tspec.get("annotations") or {})
            )
        )
    for rname, rspec in (
        _check_keys(doc, pw + ("rules",), pspec.get("rules"), set(pspec.get("rules") or {}), "rules")
    ).items():
        rw = pw + ("rules", rname)
        rspec = _check_keys(doc, rw, rspec, RULE_KEYS, f"rule {rname}")
        if not rspec.get("trigger") or not rspec.get("action"):
            raise doc.fail(rw, f"rule {rname} needs `trigger:` and `action:`")
        action = str(rspec["action"])
        action = action if action.startswith("/") else f"/_/{action}" if "/" in action else f"/_/{pw[-1]}/{action}"
        rules.append(RuleSpec(rname, str(rspec["trigger"]), action))
    return triggers, rules


def _annotations(spec: dict) -> dict:
    ann = dict(spec.get("annotations") or {})
    web = spec.get("web", spec.get("web-export"))
    if web is not None:
        raw = str(web).lower() == "raw"
        ann.setdefault("web-export", raw or str(web).lower() in ("true", "yes"))
        ann.setdefault("raw-http", raw)
        ann.setdefault("final", True)
    return ann


def load(manifest: Path, deployment: Path | None = None, env: Mapping[str, str] | None = None) -> list[PackageSpec]:
    """Raises ManifestError naming file and line for anything malformed."""
    env = ChainMap(os.environ if env is None else env, {"DEPLOYER_RUNTIME_IMAGE": DEFAULT_RUNTIME_IMAGE})
    doc = _Doc(Path(manifest))
    data = _check_keys(doc, (), doc.data, TOP_KEYS, "the manifest")
    packages, where = _packages(doc, data)
    overrides = _deployment_inputs(Path(deployment), env) if deployment else {}
    return [_package(doc, where + (pname,), pname, pspec, env, overrides) for pname, pspec in packages.items()]


def _packages(doc: _Doc, data: dict) -> tuple[dict, tuple]:
    """The packages and where they sit: wskdeploy takes `project.packages`, `packages` or a single `package`."""
    where: tuple = ()
    if "project" in data:
        project = _check_keys(doc, ("project",), data["project"], PROJECT_KEYS, "project")
        packages, where = project.get("packages"), ("project", "packages")
    elif "packages" in data:
        packages, where = data["packages"], ("packages",)
    elif "package" in data:
        pkg = _check_keys(doc, ("package",), data["package"], PACKAGE_KEYS | {"name"}, "package")
        if "name" not in pkg:
            raise doc.fail(("package",), "package needs a name")
        packages, where = {pkg["name"]: {k: v for k, v in pkg.items() if k != "name"}}, ("package",)
    else:
        raise doc.fail((), "a manifest needs `project:`, `packages:` or `package:`")
    if not isinstance(packages, dict) or not packages:
        raise doc.fail(where, "packages must be a non-empty mapping of package name to package")
    return packages, where


def _package(
    doc: _Doc, pw: tuple, pname: str, pspec, env: Mapping[str, str], overrides: dict[tuple, dict]
) -> PackageSpec:
    """One package with its actions, sequences, triggers and rules; the deployment file's inputs win."""
    pspec = _check_keys(doc, pw, pspec, PACKAGE_KEYS, f"package {pname}")
    for key in UNSUPPORTED & set(pspec):
        raise doc.fail(
            pw + (key,), f"{key} are valid wskdeploy but not supported by deployer; deploy them with wskdeploy"
        )
    pkg = PackageSpec(
        pname,
        {**_inputs(doc, pw + ("inputs",), pspec.get("inputs"), env), **overrides.get((pname, None), {})},
        dict(pspec.get("annotations") or {}),
    )
    actions = _check_keys(doc, pw + ("actions",), pspec.get("actions"), set(pspec.get("actions") or {}), "actions")
    for aname, aspec in actions.items():
        aw = pw + ("actions", aname)
        aspec = _check_keys(doc, aw, aspec, ACTION_KEYS, f"action {pname}/{aname}")
        pkg.actions.append(
            ActionSpec(
                pname,
                aname,
                _exec_for(doc, aw, aspec, doc.path.parent, env),
                {**_inputs(doc, aw + ("inputs",), aspec.get("inputs"), env), **overrides.get((pname, aname), {})},
                _limits(doc, aw + ("limits",), aspec.get("limits")),
                _annotations(aspec),
            )
        )
    pkg.sequences = _sequences(doc, pw, pname, pspec.get("sequences") or {}, env)
    pkg.triggers, pkg.rules = _events(doc, pw, pspec, env)
    return pkg


def _sequences(doc: _Doc, pw: tuple, pname: str, sequences: dict, env: Mapping[str, str]) -> list[ActionSpec]:
    """A sequence's components are actions of this package unless named with theirs (`pkg/action`)."""
    out = []
    for sname, sspec in sequences.items():
        sw = pw + ("sequences", sname)
        sspec = _check_keys(doc, sw, sspec, SEQUENCE_KEYS, f"sequence {pname}/{sname}")
        names = [a.strip() for a in str(sspec.get("actions", "")).split(",") if a.strip()]
        if not names:
            raise doc.fail(sw, "a sequence needs `actions: a, b, ...`")
        comps = [f"/_/{n}" if "/" in n else f"/_/{pname}/{n}" for n in names]
        out.append(
            ActionSpec(
                pname,
                sname,
                {"kind": "sequence", "components": comps},
                _inputs(doc, sw + ("inputs",), sspec.get("inputs"), env),
                {},
                _annotations(sspec),
            )
        )
    return out


def _deployment_inputs(path: Path, env: Mapping[str, str]) -> dict[tuple, dict]:
    doc = _Doc(path)
    data = _check_keys(doc, (), doc.data, {"project", "application"}, "the deployment file")
    project = data.get("project") or data.get("application") or {}
    key = "project" if "project" in data else "application"
    project = _check_keys(doc, (key,), project, PROJECT_KEYS | {"namespace", "credential"}, key)
    out: dict[tuple, dict] = {}
    for pname, pspec in (project.get("packages") or {}).items():
        pw = (key, "packages", pname)
        pspec = _check_keys(doc, pw, pspec, PACKAGE_KEYS, f"package {pname}")
        out[(pname, None)] = _inputs(doc, pw + ("inputs",), pspec.get("inputs"), env)
        for aname, aspec in (pspec.get("actions") or {}).items():
            aw = pw + ("actions", aname)
            aspec = _check_keys(doc, aw, aspec, {"inputs", "annotations"}, f"action {pname}/{aname}")
            out[(pname, aname)] = _inputs(doc, aw + ("inputs",), aspec.get("inputs"), env)
    return out


def deploy(
    client, manifest_path: Path, deployment: Path | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Creates or updates every package, action and sequence; returns their names."""
    packages = load(Path(manifest_path), deployment, env)
    names = []
    for pkg in packages:
        client.create_package(pkg.name, pkg.inputs, pkg.annotations, overwrite=True)
        names.append(pkg.name)
        for spec in pkg.actions + pkg.sequences:
            client.create_action(spec.qualified, spec.exec_, spec.inputs, spec.limits, spec.annotations, overwrite=True)
            names.append(spec.qualified)
        for trigger in pkg.triggers:
            client.create_trigger(trigger.name, trigger.inputs, trigger.annotations, overwrite=True)
            names.append(f"trigger {trigger.name}")
        for rule in pkg.rules:
            client.create_rule(rule.name, rule.trigger, rule.action, overwrite=True)
            names.append(f"rule {rule.name}")
    return names


def check(manifest_path: Path, deployment: Path | None = None) -> list[PackageSpec]:
    """Reads and checks a manifest before any platform is reached; `$VAR`s are resolved at deploy.

    Raises:
        ManifestError: missing, unreadable or malformed, naming file and line.
    """
    return load(Path(manifest_path), deployment, _Permissive(os.environ))


def undeploy(client, manifest_path: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Deletes what the manifest names (sequences first); missing entities are skipped."""
    from .errors import NotFoundError

    packages = load(Path(manifest_path), None, _Permissive(os.environ if env is None else env))
    removed = []
    for pkg in packages:
        for kind, items, delete in (
            ("rule", pkg.rules, client.delete_rule),
            ("trigger", pkg.triggers, client.delete_trigger),
        ):
            for item in items:
                try:
                    delete(item.name)
                    removed.append(f"{kind} {item.name}")
                except NotFoundError:
                    pass
        for spec in pkg.sequences + pkg.actions:
            try:
                client.delete_action(spec.qualified)
                removed.append(spec.qualified)
            except NotFoundError:
                pass
        try:
            client.delete_package(pkg.name)
            removed.append(pkg.name)
        except NotFoundError:
            pass
    return removed


class _Permissive(dict):
    """Undeploy needs names only, so unset `$VAR`s must not stop it."""

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key):
        return dict.get(self, key, "")
