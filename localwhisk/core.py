"""The platform's behaviour without HTTP: entities, invocation, sequences, activation records.

The controller maps HTTP onto these methods; tests and the bench can call them directly.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from localwhisk import catalog
from localwhisk.entities import bodies, kinds, names
from localwhisk.entities.names import QualifiedName
from localwhisk.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from localwhisk.invoker.container import MAX_JSON_DEPTH, json_depth
from localwhisk.invoker.pool import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    INTERNAL_ERROR,
    STATUS_NAMES,
    SUCCESS,
    Invoker,
    RunResult,
    WouldQueue,
)
from localwhisk.settings import Settings
from localwhisk.store import KindConflict, Store

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_CODE_BYTES = 48 * 1024 * 1024
MAX_SEQUENCE_LENGTH = 50  # OpenWhisk's actionSequenceMaxLimit: atomic actions, nested sequences inlined
DEFAULT_LIMITS = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
LIMIT_RANGES = {"timeout": (100, 300000), "memory": (128, 2048), "logs": (0, 10), "concurrency": (1, 1)}
PROVIDE_API_KEY = "provide-api-key"
log = logging.getLogger("platform")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _kv_dict(kv: list[dict]) -> dict:
    return {p["key"]: p.get("value") for p in kv}


def _truthy(annotations: list[dict], key: str, missing: bool) -> bool:
    """OpenWhisk's Parameters.isTruthy: false, 0, "" and null are false; an absent key is `missing`."""
    for a in annotations:
        if a["key"] == key:
            val = a.get("value")
            return bool(val) if isinstance(val, (bool, int, float, str)) or val is None else True
    return missing


def _as_json(params: dict) -> str:
    """The parameters as the JSON an action receives; what JSON cannot carry, or carries too deep, is refused here
    (a parameter from a trigger or a client that no action could return unchanged)."""
    malformed = "The request content was malformed: parameters"
    try:
        text = json.dumps(params, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise BadRequest(f"{malformed} nest deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError as exc:
        raise BadRequest(f"{malformed} hold a value JSON cannot carry ({exc}).") from None
    # a value cannot nest deeper than it has brackets: most parameters are cleared without a walk
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth(params) > MAX_JSON_DEPTH:
        raise BadRequest(f"{malformed} nest deeper than {MAX_JSON_DEPTH} levels.")
    return text


def _page(docs: list[dict], limit: int | None, skip: int) -> list[dict]:
    return docs[skip : skip + limit if limit else None]


def split_path(path: str) -> tuple[str | None, str]:
    names.check_path(path)
    parts = path.split("/")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


@dataclass
class Resolved:
    """An action found for an invoke: who owns it, the document, and the parameters bound around it."""

    qname: QualifiedName
    doc: dict
    package_params: dict
    binding: str | None = None  # 'ns/binding' when reached through a package binding

    @property
    def key(self) -> str:
        return f"{self.qname.namespace}/{self.qname.path}@{self.doc['version']}:{self.doc['updated']}"


@dataclass
class _Level:
    """One sequence being run: what it has produced so far and which component comes next."""

    target: Resolved
    doc: dict
    result: dict
    next: int = 0
    status: int = SUCCESS
    ids: list = field(default_factory=list)

    def take(self, child: dict) -> None:
        self.ids.append(child["activationId"])
        self.result = child["response"]["result"]
        self.status = child["response"]["statusCode"]


class Platform:
    """One namespace per auth subject; entities and activations live in the Store."""

    def __init__(
        self,
        store: Store,
        invoker: Invoker,
        api_host: str = "",
        blocking_timeout_s: float = Settings.blocking_timeout_s,
        workers: int = 64,
        require_api_key_annotation: bool = True,
        any_image: bool = False,
    ) -> None:
        self.store = store
        self.invoker = invoker
        self.api_host = api_host
        # OpenWhisk's feature flag, on by default in its deployments: a new action without the
        # annotation gets provide-api-key=false, and its activations get no __OW_API_KEY
        self.require_api_key_annotation = require_api_key_annotation
        self.any_image = any_image  # docker mode runs any image; process mode only stands in for ours
        self.blocking_timeout_s = blocking_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="activation")
        self._stopping = False
        self.interrupted_on_start = store.close_interrupted(self._interrupted_doc)
        catalog.install(self)

    @staticmethod
    def _interrupted_doc(doc: dict) -> dict:
        end = _now_ms()
        doc.update(end=end, duration=end - doc["start"], statusCode=INTERNAL_ERROR)
        doc["response"] = {
            "status": STATUS_NAMES[INTERNAL_ERROR],
            "statusCode": INTERNAL_ERROR,
            "success": False,
            "result": {
                "error": "The platform stopped before this activation completed; it did not finish and may be retried."
            },
        }
        return doc

    def shutdown(self) -> None:
        """Kills every container; records still open are closed as interrupted, never dropped."""
        self._stopping = True
        self.invoker.shutdown()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close_interrupted(self._interrupted_doc)

    # packages
    def put_package(self, ns: str, name: str, body: Any, overwrite: bool) -> dict:
        names.check_segment(name)
        body = bodies.check_put("package", body)
        old, rev = self.store.get_revision(ns, "packages", name)
        if old and not overwrite:
            raise Conflict("resource already exists")
        binding = self._check_binding(ns, body.get("binding"), old)
        doc = {
            "namespace": ns,
            "name": name,
            "version": self._next_version(old),
            "publish": body.get("publish", old.get("publish", False) if old else False),
            "parameters": body.get("parameters", old.get("parameters", []) if old else []),
            "annotations": body.get("annotations", old.get("annotations", []) if old else []),
            "binding": binding,
            "updated": _now_ms(),
        }
        self.store.put(ns, "packages", name, doc, rev)
        return doc

    def _check_binding(self, ns: str, binding: Any, old: dict | None) -> dict:
        """{} for a package, {namespace, name} for a binding; OpenWhisk's rules and messages."""
        if old is not None and bool(old.get("binding")) != bool(binding) and binding is not None:
            raise Conflict(
                "Resource is a package and cannot be converted into a binding."
                if not old.get("binding")
                else "Operation not permitted on package binding."
            )
        if not binding:
            return old.get("binding", {}) if old and binding is None else {}
        if not isinstance(binding.get("name"), str) or not isinstance(binding.get("namespace", ""), (str, type(None))):
            raise BadRequest("The request content was malformed: binding must name a package.")
        owner = ns if binding.get("namespace") in (None, "", "_") else binding["namespace"]
        target = QualifiedName(names.check_namespace(owner), names.check_segment(binding["name"]))
        try:
            package, _ = self.store.get_revision(target.namespace, "packages", target.path)
        except KindConflict as exc:
            raise BadRequest("Cannot bind to a resource that is not a package.") from exc
        if package is None or (target.namespace != ns and not package.get("publish")):
            raise BadRequest("Binding references a package that does not exist.")
        if package.get("binding"):
            raise BadRequest("Cannot bind to another package binding.")
        return {"namespace": target.namespace, "name": target.path}

    def get_package(self, ns: str, name: str, subject: str | None = None) -> dict:
        doc = self._readable_package(ns, name, subject or ns)
        doc = dict(doc)
        source = doc["binding"] and QualifiedName(doc["binding"]["namespace"], doc["binding"]["name"])
        owner, pkg = (source.namespace, source.path) if source else (ns, name)
        doc["actions"] = [
            {"name": a["name"], "version": a["version"], "annotations": a["annotations"]}
            for a in self.store.list(owner, "actions", prefix=pkg)
        ]
        return doc

    def _readable_package(self, ns: str, name: str, subject: str) -> dict:
        names.check_segment(name)
        doc = self.store.get_shared(ns, "packages", name)
        if doc is None or (ns != subject and not doc.get("publish")):
            raise NotFound()
        return doc

    def list_packages(self, ns: str, subject: str | None = None, limit: int = 30, skip: int = 0) -> list[dict]:
        docs = [d for d in self.store.list(ns, "packages") if ns == (subject or ns) or d.get("publish")]
        return _page(docs, limit, skip)

    def delete_package(self, ns: str, name: str) -> dict:
        names.check_segment(name)
        doc, rev = self.store.get_revision(ns, "packages", name)
        if doc is None:
            raise NotFound()
        inside = self.store.list(ns, "actions", prefix=name)
        if inside:
            raise Conflict(f"Package not empty (contains {len(inside)} entit{'y' if len(inside) == 1 else 'ies'})")
        self.store.delete(ns, "packages", name, rev)
        return doc

    # actions
    @staticmethod
    def _next_version(old: dict | None) -> str:
        if not old:
            return "0.0.1"
        major, minor, patch = (int(x) for x in old["version"].split("."))
        return f"{major}.{minor}.{patch + 1}"

    def _validate_exec(self, ns: str, path: str, exec_: Any) -> dict:
        if not isinstance(exec_, dict) or "kind" not in exec_:
            raise BadRequest("The request content was malformed: exec with a kind is required.")
        kind = exec_["kind"]
        if kind == "sequence":
            return self._validate_sequence(QualifiedName(ns, path), exec_.get("components"))
        if kind == "blackbox":
            image = exec_.get("image")
            if not isinstance(image, str) or not image:
                raise BadRequest("The request content was malformed: a blackbox action needs an image.")
            if not self.any_image and not kinds.is_local_image(image):
                raise BadRequest(
                    f"The docker image {image!r} cannot run on the local platform in process mode; "
                    f"use kind python:3.11, an image based on {', '.join(kinds.LOCAL_IMAGES)}, or "
                    f"start it with `deployer up --containers docker`."
                )
        else:
            kind = kinds.resolve(kind)
        code = exec_.get("code")
        if not isinstance(code, str):  # empty code is stored; its /init then fails, as on OpenWhisk
            raise BadRequest(
                f"The request content was malformed: 'code' must be a string defined in 'exec' for '{kind}' actions"
            )
        if len(code) > MAX_CODE_BYTES:
            raise TooLarge(f"The action code is too large ({len(code)} bytes); the limit is {MAX_CODE_BYTES} bytes.")
        out = {"kind": kind, "code": code, "binary": kinds.is_binary_code(code)}
        main = exec_.get("main")
        if main is not None and not isinstance(main, str):
            raise BadRequest("The request content was malformed: 'main' must be a string in 'exec'.")
        if main:
            out["main"] = main
        if kind == "blackbox":
            out["image"] = exec_["image"]
        return out

    def _validate_sequence(self, sequence: QualifiedName, comps: Any) -> dict:
        """As OpenWhisk's checkSequenceActionLimits: components given, each existing, no path back to `sequence`
        (directly, through other sequences, packages or bindings), at most MAX_SEQUENCE_LENGTH atomic actions with
        nested sequences inlined: a sequence that contains itself would run until the platform gives up."""
        if not isinstance(comps, list) or not all(isinstance(c, str) for c in comps):
            raise BadRequest("The request content was malformed: 'components' must be a list of action names.")
        if not comps:
            raise BadRequest("No component specified for the sequence.")
        for c in comps:
            names.resolve(c, sequence.namespace)  # a malformed name is a 400 of its own, as in OpenWhisk
        self._check_nested(sequence, comps)
        return {"kind": "sequence", "components": comps}

    def _check_nested(self, sequence: QualifiedName, comps: list) -> None:
        """Walks the sequences nested in `comps` (with a stack of its own: a chain of nested sequences may be
        deeper than Python's recursion), counting atomic actions.

        Raises:
            BadRequest: OpenWhisk's message for a cycle, a missing component or a sequence too long.
        """
        atomic = 0
        pending = [(c, sequence.namespace, ()) for c in reversed(comps)]  # (name, its owner, sequences above it)
        while pending:
            component, owner, above = pending.pop()
            try:
                found = self.resolve_action(owner, names.resolve(component, owner))
            except (NotFound, Forbidden, BadRequest) as exc:
                raise BadRequest("Sequence component does not exist.") from exc
            if found.qname == sequence or found.qname in above:  # `above`: a cycle stored before it was checked
                raise BadRequest("Sequence may not refer to itself.")
            exec_ = found.doc["exec"]
            if exec_["kind"] != "sequence":
                atomic += 1
            elif len(exec_["components"]) > MAX_SEQUENCE_LENGTH:
                atomic = MAX_SEQUENCE_LENGTH + 1
            else:
                inner = (*above, found.qname)
                pending.extend((c, found.qname.namespace, inner) for c in reversed(exec_["components"]))
            if atomic > MAX_SEQUENCE_LENGTH:
                raise BadRequest("Too many actions in the sequence.")

    def _validate_limits(self, limits: Any, old: dict | None) -> dict:
        out = dict(old or DEFAULT_LIMITS)
        if limits is None:
            return out
        if not isinstance(limits, dict):
            raise BadRequest("The request content was malformed: limits must be an object.")
        for key, val in limits.items():
            if key not in LIMIT_RANGES:
                raise BadRequest(f"Unknown limit {key!r}; known: {', '.join(LIMIT_RANGES)}.")
            lo, hi = LIMIT_RANGES[key]
            if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
                raise BadRequest(f"{key} limit {val!r} is out of range [{lo}, {hi}].")
            out[key] = val
        return out

    def put_action(self, ns: str, path: str, body: Any, overwrite: bool) -> dict:
        pkg, name = split_path(path)
        body = bodies.check_put("action", body)
        if pkg is not None:
            try:
                package, _ = self.store.get_revision(ns, "packages", pkg)
            except KindConflict:
                package = None
            if package is None:
                raise NotFound(f"Package {pkg!r} does not exist; create it before adding actions to it.")
            if package.get("binding"):
                raise BadRequest("Operation not permitted on package binding.")
        old, rev = self.store.get_revision(ns, "actions", path)
        if old and not overwrite:
            raise Conflict("resource already exists")
        exec_ = old["exec"] if "exec" not in body and old else self._validate_exec(ns, path, body.get("exec"))
        annotations = body.get("annotations", old.get("annotations", []) if old else [])
        annotations = [a for a in annotations if a["key"] != "exec"]
        if (
            old is None
            and self.require_api_key_annotation
            and not any(a["key"] == PROVIDE_API_KEY for a in annotations)
        ):
            annotations.append({"key": PROVIDE_API_KEY, "value": False})
        annotations.append({"key": "exec", "value": kinds.annotation(exec_["kind"])})
        doc = {
            "namespace": f"{ns}/{pkg}" if pkg else ns,
            "name": name,
            "version": self._next_version(old),
            "exec": exec_,
            "parameters": body.get("parameters", old.get("parameters", []) if old else []),
            "limits": self._validate_limits(body.get("limits"), old.get("limits") if old else None),
            "annotations": annotations,
            "publish": body.get("publish", old.get("publish", False) if old else False),
            "updated": _now_ms(),
        }
        self.store.put(ns, "actions", path, doc, rev)
        return doc

    def get_action(self, ns: str, path: str, code: bool = True, subject: str | None = None) -> dict:
        split_path(path)
        doc = dict(self.resolve_action(subject or ns, QualifiedName(ns, path)).doc)
        if not code and "code" in doc["exec"]:
            doc["exec"] = {k: v for k, v in doc["exec"].items() if k != "code"}
        return doc

    def list_actions(
        self, ns: str, pkg: str | None = None, limit: int = 30, skip: int = 0, subject: str | None = None
    ) -> list[dict]:
        owner = ns
        if pkg is not None:
            package = self._readable_package(ns, pkg, subject or ns)
            if package.get("binding"):
                owner, pkg = package["binding"]["namespace"], package["binding"]["name"]
        elif ns != (subject or ns):
            return []
        out = []
        for d in _page(self.store.list(owner, "actions", prefix=pkg), limit, skip):
            d = dict(d)
            d["exec"] = {k: v for k, v in d["exec"].items() if k in ("kind", "binary")}
            d.pop("parameters", None)
            out.append(d)
        return out

    def delete_action(self, ns: str, path: str) -> dict:
        split_path(path)
        doc, rev = self.store.get_revision(ns, "actions", path)
        if doc is None:
            raise NotFound()
        self.store.delete(ns, "actions", path, rev)
        return doc

    # resolution
    def resolve_action(self, subject: str, qname: QualifiedName) -> Resolved:
        """The action `qname` as `subject` may reach it: its own, or published (the /whisk.system catalog).

        A package binding stands for the package it binds: its actions are the bound package's,
        its parameters merge over the bound package's and under the action's.

        Raises:
            NotFound: no such action, or one `subject` may not see.
        """
        if qname.package is None:
            doc = self.store.get_shared(qname.namespace, "actions", qname.path) if qname.namespace == subject else None
            if doc is None:
                raise NotFound()
            return Resolved(qname, doc, {})
        package = self._readable_package(qname.namespace, qname.package, subject)
        params, binding, owner = _kv_dict(package["parameters"]), None, qname
        if package.get("binding"):
            bound = package["binding"]
            source = self._readable_package(bound["namespace"], bound["name"], qname.namespace)
            params = {**_kv_dict(source["parameters"]), **params}
            binding = f"{qname.namespace}/{qname.package}"
            owner = QualifiedName(bound["namespace"], f"{bound['name']}/{qname.name}")
        doc = self.store.get_shared(owner.namespace, "actions", owner.path)
        if doc is None:
            raise NotFound()
        return Resolved(owner, doc, params, binding)

    # invocation
    def invoke(
        self,
        ns: str,
        path: str,
        params: Any,
        blocking: bool,
        auth: str,
        wait_s: float | None = None,
        subject: str | None = None,
        cause: str | None = None,
        annotations: list[dict] | None = None,
    ) -> tuple[str, dict | None]:
        """Starts an activation; returns (activationId, record or None if still running)."""
        subject = subject or ns
        split_path(path)
        target = self.resolve_action(subject, QualifiedName(ns, path))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("The request content was malformed: the parameters must be a JSON object.")
        size = len(_as_json(params).encode("utf-8", "surrogatepass"))  # the limit is on UTF-8 bytes
        if size > MAX_PAYLOAD_BYTES:
            raise TooLarge(
                f"The request content was too large ({size} bytes); "
                f"it exceeds the allowed limit of {MAX_PAYLOAD_BYTES} bytes."
            )
        doc = self._record(subject, target, secrets.token_hex(16), cause, annotations)
        wait_s = self.blocking_timeout_s if wait_s is None else wait_s
        if blocking and _ends_within(target.doc, wait_s):
            try:
                return doc["activationId"], self._activate(subject, target, params, auth, doc, queue=False)
            except WouldQueue:
                pass  # no container free now: the pool's worker waits for one while the caller waits here
        future = self._pool.submit(self._activate, subject, target, params, auth, doc)
        if not blocking:
            return doc["activationId"], None
        try:
            return doc["activationId"], future.result(timeout=wait_s)
        except TimeoutError:
            return doc["activationId"], None

    def _record(
        self, subject: str, target: Resolved, activation_id: str, cause: str | None, extra: list[dict] | None = None
    ) -> dict:
        action = target.doc
        doc = {
            "activationId": activation_id,
            "namespace": subject,
            "name": target.qname.name,
            "version": action["version"],
            "subject": subject,
            "start": _now_ms(),
            "end": 0,
            "duration": 0,
            "statusCode": 0,
            "response": {"status": "pending", "statusCode": 0, "success": False, "result": {}},
            "logs": [],
            "publish": False,
            "annotations": [
                {"key": "path", "value": f"{target.qname.namespace}/{target.qname.path}"},
                {"key": "kind", "value": action["exec"]["kind"]},
                {"key": "limits", "value": action["limits"]},
            ]
            + list(extra or []),
        }
        if target.binding:
            doc["annotations"].append({"key": "binding", "value": target.binding})
        if cause:
            doc["cause"] = cause
        self.store.begin_activation(doc, target.qname.path)
        return doc

    def _finish(self, doc: dict, status_code: int, result: dict, logs: list, end_ms: int | None = None) -> dict:
        """Closes the record; never raises: a record the store refuses stays open, and the next start closes it
        as interrupted."""
        if self._stopping and status_code != SUCCESS:
            self._interrupted_doc(doc)
            doc["logs"] = logs
        else:
            self._close(doc, status_code, result, logs, end_ms)
        try:
            self.store.end_activation(doc)
        except Exception:
            log.exception("activation %s: its record could not be written", doc["activationId"])
        return doc

    @staticmethod
    def _close(doc: dict, status_code: int, result: dict, logs: list, end_ms: int | None) -> None:
        doc["end"] = end_ms or _now_ms()
        doc["duration"] = doc["end"] - doc["start"]
        doc["statusCode"] = status_code
        doc["response"] = {
            "status": STATUS_NAMES[status_code],
            "statusCode": status_code,
            "success": status_code == SUCCESS,
            "result": result,
        }
        doc["logs"] = logs

    def _activate(self, subject: str, target: Resolved, params: dict, auth: str, doc: dict, queue: bool = True) -> dict:
        """queue=False: raises WouldQueue, having changed nothing, where no container is free right now."""
        try:
            merged = {**target.package_params, **_kv_dict(target.doc["parameters"]), **params}
            if target.doc["exec"]["kind"] == "sequence":
                return self._run_sequence(subject, target, doc, merged, auth)
            return self._run_action(subject, target, doc, merged, auth, queue)
        except WouldQueue:
            raise
        except Exception as exc:
            return self._finish(doc, INTERNAL_ERROR, {"error": f"internal error: {exc}"}, [])

    def _run_action(
        self, subject: str, target: Resolved, doc: dict, params: dict, auth: str, queue: bool = True
    ) -> dict:
        action, exec_ = target.doc, target.doc["exec"]
        context = {
            "namespace": subject,
            "action_name": f"/{target.qname.namespace}/{target.qname.path}",
            "action_version": action["version"],
            "activation_id": doc["activationId"],
            "transaction_id": doc["activationId"],
            "deadline": str(doc["start"] + action["limits"]["timeout"]),
        }
        if _truthy(action["annotations"], PROVIDE_API_KEY, missing=True):
            context = {"api_key": auth, **context}
        # as OpenWhisk's invoker: the context reaches /init as __OW_* env (import time) and every /run
        init_value = {
            "name": action["name"],
            "main": exec_.get("main", "main"),
            "code": exec_["code"],
            "binary": exec_.get("binary", False),
            "env": {f"__OW_{key.upper()}": val for key, val in context.items()},
        }
        message = {"value": params, **context}
        runtime, deny = kinds.container_profile(exec_)
        image = (
            exec_.get("image") if exec_["kind"] == "blackbox" and not kinds.is_local_image(exec_["image"]) else None
        )  # None: the runtime image, which stands in for the official one too
        outcome: RunResult = self.invoker.run(
            target.key,
            init_value,
            message,
            action["limits"],
            runtime=runtime,
            deny=deny,
            env={"__OW_API_HOST": self.api_host},
            image=image,
            queue=queue,
        )
        doc["start"] = outcome.start_ms or doc["start"]
        doc["annotations"].append({"key": "timeout", "value": outcome.timed_out})
        doc["annotations"].append({"key": "waitTime", "value": outcome.wait_ms})
        if outcome.init_ms is not None:
            doc["annotations"].append({"key": "initTime", "value": outcome.init_ms})
        return self._finish(doc, outcome.status_code, outcome.result, outcome.logs, outcome.end_ms or None)

    def _run_sequence(self, subject: str, target: Resolved, doc: dict, params: dict, auth: str) -> dict:
        """Runs the sequence, and the sequences nested in it, with a stack of its own: a chain of nested
        sequences may be deeper than Python's recursion. Each level is its own activation, as in OpenWhisk."""
        stack = [_Level(target, doc, params)]
        while True:
            level = stack[-1]
            components = level.target.doc["exec"]["components"]
            if level.status == SUCCESS and level.next < len(components):
                component = components[level.next]
                level.next += 1
                try:
                    comp = self.resolve_action(subject, names.resolve(component, level.target.qname.namespace))
                    caused_by = [{"key": "causedBy", "value": "sequence"}]
                    child_doc = self._record(subject, comp, secrets.token_hex(16), level.doc["activationId"], caused_by)
                except Exception as exc:
                    level.status, level.result = INTERNAL_ERROR, {"error": f"internal error: {exc}"}
                    continue
                if comp.doc["exec"]["kind"] == "sequence":
                    merged = {**comp.package_params, **_kv_dict(comp.doc["parameters"]), **level.result}
                    stack.append(_Level(comp, child_doc, merged))
                else:
                    level.take(self._activate(subject, comp, level.result, auth, child_doc))
                continue
            level.doc["annotations"].append({"key": "topmost", "value": True})
            finished = self._finish(level.doc, level.status, level.result, level.ids)
            stack.pop()
            if not stack:
                return finished
            stack[-1].take(finished)

    # activations
    def get_activation(self, ns: str, activation_id: str) -> dict:
        doc = self.store.get_activation(ns, activation_id)
        if doc is None or doc["response"]["status"] == "pending":
            raise NotFound()  # as in OpenWhisk, a record exists only once the activation ended
        return doc

    def list_activations(
        self,
        ns: str,
        name: str | None = None,
        limit: int = 30,
        skip: int = 0,
        since: int | None = None,
        upto: int | None = None,
    ) -> list[dict]:
        return self.store.list_activations(ns, name, limit, skip, since, upto)


def _ends_within(action: dict, wait_s: float) -> bool:
    """Whether the action, once it has a container, is sure to end within a blocking wait of `wait_s`: its
    time limit bounds /init and /run together. Such an invoke runs on the caller's thread (no handoff to a
    worker and back); a sequence's components may each take their limit, so it never does."""
    return action["exec"]["kind"] != "sequence" and action["limits"]["timeout"] / 1000.0 <= wait_s


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


__all__ = ["Platform", "APPLICATION_ERROR", "DEVELOPER_ERROR", "INTERNAL_ERROR", "SUCCESS"]
