"""The platform's behaviour without HTTP: entities, invocation, sequences, activation records.

The controller maps HTTP onto these methods; tests and the bench can call them directly.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import BadRequest, Conflict, NotFound, TooLarge
from .invoker import (APPLICATION_ERROR, DEVELOPER_ERROR, INTERNAL_ERROR, STATUS_NAMES, SUCCESS, Invoker,
                      RunResult)
from .store import Store

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_CODE_BYTES = 48 * 1024 * 1024
MAX_SEQUENCE_LENGTH = 50
DEFAULT_LIMITS = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
LIMIT_RANGES = {"timeout": (100, 300000), "memory": (128, 2048), "logs": (0, 10), "concurrency": (1, 1)}
PYTHON_KINDS = {"python:3", "python:3.11", "python:default", "python:3.10", "python:3.12", "python:3.13"}
# Images the local runtime stands in for: the official one and the project's own (runtimes/Dockerfile).
LOCAL_IMAGES = ("openwhisk/action-python-v3.11", "openwhisk/python3action", "deployer/action-python-ml")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _as_kv(params: Any, what: str) -> list[dict]:
    if params is None:
        return []
    if not isinstance(params, list) or not all(isinstance(p, dict) and "key" in p for p in params):
        raise BadRequest(f"The request content was malformed: {what} must be a list of {{key, value}} objects.")
    return [{"key": p["key"], "value": p.get("value")} for p in params]


def _kv_dict(kv: list[dict]) -> dict:
    return {p["key"]: p.get("value") for p in kv}


def split_path(path: str) -> tuple[str | None, str]:
    parts = path.split("/")
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise BadRequest(f"The request content was malformed: bad entity name {path!r}.")


class Platform:
    """One namespace per auth subject; entities and activations live in the Store."""

    def __init__(self, store: Store, invoker: Invoker, api_host: str = "", blocking_timeout_s: float = 60.0,
                 workers: int = 64) -> None:
        self.store = store
        self.invoker = invoker
        self.api_host = api_host
        self.blocking_timeout_s = blocking_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="activation")
        self._stopping = False
        self.interrupted_on_start = store.close_interrupted(self._interrupted_doc)

    @staticmethod
    def _interrupted_doc(doc: dict) -> dict:
        end = _now_ms()
        doc.update(end=end, duration=end - doc["start"], statusCode=INTERNAL_ERROR)
        doc["response"] = {"status": STATUS_NAMES[INTERNAL_ERROR], "statusCode": INTERNAL_ERROR, "success": False,
                           "result": {"error": "The platform stopped before this activation completed; "
                                               "it did not finish and may be retried."}}
        return doc

    def shutdown(self) -> None:
        """Kills every container; records still open are closed as interrupted, never dropped."""
        self._stopping = True
        self.invoker.shutdown()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close_interrupted(self._interrupted_doc)

    # packages
    def put_package(self, ns: str, name: str, body: dict, overwrite: bool) -> dict:
        if "/" in name:
            raise BadRequest("The request content was malformed: package names cannot contain '/'.")
        old = self.store.get(ns, "packages", name)
        if old and not overwrite:
            raise Conflict("resource already exists")
        if body.get("binding"):
            raise BadRequest("Package bindings are not supported by the local platform.")
        doc = {
            "namespace": ns, "name": name, "version": self._next_version(old),
            "publish": bool(body.get("publish", False)),
            "parameters": _as_kv(body.get("parameters", old.get("parameters") if old else []), "parameters"),
            "annotations": _as_kv(body.get("annotations", old.get("annotations") if old else []), "annotations"),
            "binding": {}, "updated": _now_ms(),
        }
        self.store.put(ns, "packages", name, doc)
        return doc

    def get_package(self, ns: str, name: str) -> dict:
        doc = self.store.get(ns, "packages", name)
        if doc is None:
            raise NotFound()
        doc = dict(doc)
        doc["actions"] = [{"name": a["name"], "version": a["version"], "annotations": a["annotations"]}
                          for a in self.store.list(ns, "actions", prefix=name)]
        return doc

    def list_packages(self, ns: str) -> list[dict]:
        return self.store.list(ns, "packages")

    def delete_package(self, ns: str, name: str) -> dict:
        doc = self.store.get(ns, "packages", name)
        if doc is None:
            raise NotFound()
        inside = self.store.list(ns, "actions", prefix=name)
        if inside:
            raise Conflict(f"Package not empty (contains {len(inside)} entit{'y' if len(inside) == 1 else 'ies'})")
        self.store.delete(ns, "packages", name)
        return doc

    # actions
    @staticmethod
    def _next_version(old: dict | None) -> str:
        if not old:
            return "0.0.1"
        major, minor, patch = (int(x) for x in old["version"].split("."))
        return f"{major}.{minor}.{patch + 1}"

    def _validate_exec(self, ns: str, exec_: Any) -> dict:
        if not isinstance(exec_, dict) or "kind" not in exec_:
            raise BadRequest("The request content was malformed: exec with a kind is required.")
        kind = exec_["kind"]
        if kind == "sequence":
            comps = exec_.get("components")
            if not isinstance(comps, list) or not comps or not all(isinstance(c, str) for c in comps):
                raise BadRequest("The request content was malformed: a sequence needs a list of components.")
            if len(comps) > MAX_SEQUENCE_LENGTH:
                raise BadRequest(f"Too many actions in the sequence (limit {MAX_SEQUENCE_LENGTH}).")
            for c in comps:
                self._resolve_component(ns, c)
            return {"kind": "sequence", "components": comps}
        if kind == "blackbox":
            image = str(exec_.get("image", ""))
            if not any(image == img or image.startswith(img + ":") or image.endswith("/" + img.split("/")[-1])
                       or image.split(":")[0].endswith(img.split("/")[-1]) for img in LOCAL_IMAGES):
                raise BadRequest(f"The docker image {image!r} cannot run on the local platform (no Docker engine); "
                                 f"use kind python:3.11 or an image based on {', '.join(LOCAL_IMAGES)}.")
        elif kind not in PYTHON_KINDS:
            raise BadRequest(f"kind {kind!r} is not supported by the local platform; "
                             f"use one of {', '.join(sorted(PYTHON_KINDS))} or blackbox.")
        code = exec_.get("code")
        if not isinstance(code, str) or not code:
            raise BadRequest("The request content was malformed: exec.code is required for this kind.")
        if len(code) > MAX_CODE_BYTES:
            raise TooLarge(f"The action code is too large ({len(code)} bytes); the limit is {MAX_CODE_BYTES} bytes.")
        binary = bool(exec_.get("binary", False))
        if binary:
            try:
                base64.b64decode(code[:64] + "=" * (-len(code[:64]) % 4), validate=False)
            except ValueError as exc:
                raise BadRequest("exec.binary is set but exec.code is not base64.") from exc
        out = {"kind": kind, "code": code, "binary": binary}
        if exec_.get("main"):
            out["main"] = str(exec_["main"])
        if kind == "blackbox":
            out["image"] = exec_["image"]
        return out

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

    def put_action(self, ns: str, path: str, body: dict, overwrite: bool) -> dict:
        pkg, name = split_path(path)
        if pkg is not None and self.store.get(ns, "packages", pkg) is None:
            raise NotFound(f"Package {pkg!r} does not exist; create it before adding actions to it.")
        old = self.store.get(ns, "actions", path)
        if old and not overwrite:
            raise Conflict("resource already exists")
        if "exec" not in body and old:
            exec_ = old["exec"]
        else:
            exec_ = self._validate_exec(ns, body.get("exec"))
        annotations = _as_kv(body.get("annotations", old.get("annotations") if old else []), "annotations")
        keys = {a["key"] for a in annotations}
        if "exec" not in keys:
            annotations.append({"key": "exec", "value": "sequence" if exec_["kind"] == "sequence" else "python"})
        doc = {
            "namespace": f"{ns}/{pkg}" if pkg else ns, "name": name, "version": self._next_version(old),
            "exec": exec_,
            "parameters": _as_kv(body.get("parameters", old.get("parameters") if old else []), "parameters"),
            "limits": self._validate_limits(body.get("limits"), old.get("limits") if old else None),
            "annotations": annotations, "publish": bool(body.get("publish", False)), "updated": _now_ms(),
        }
        self.store.put(ns, "actions", path, doc)
        return doc

    def get_action(self, ns: str, path: str, code: bool = True) -> dict:
        split_path(path)
        doc = self.store.get(ns, "actions", path)
        if doc is None:
            raise NotFound()
        if not code and "code" in doc["exec"]:
            doc["exec"] = {k: v for k, v in doc["exec"].items() if k != "code"}
        return doc

    def list_actions(self, ns: str, pkg: str | None = None, limit: int = 30, skip: int = 0) -> list[dict]:
        docs = self.store.list(ns, "actions", prefix=pkg)
        out = []
        for d in docs[skip:skip + limit if limit else None]:
            d = dict(d)
            d["exec"] = {k: v for k, v in d["exec"].items() if k in ("kind", "binary")}
            d.pop("parameters", None)
            out.append(d)
        return out

    def delete_action(self, ns: str, path: str) -> dict:
        doc = self.get_action(ns, path)
        self.store.delete(ns, "actions", path)
        return doc

    # invocation
    def _resolve_component(self, ns: str, fqn: str) -> tuple[str, dict]:
        """'/ns/pkg/name', '/ns/name', 'pkg/name' or 'name' -> (path, action doc)."""
        parts = [p for p in fqn.split("/") if p]
        if fqn.startswith("/"):
            if not parts or parts[0] not in (ns, "_"):
                raise BadRequest(f"Sequence component {fqn!r} is not in namespace {ns!r}.")
            parts = parts[1:]
        path = "/".join(parts)
        doc = self.store.get(ns, "actions", path) if parts else None
        if doc is None:
            raise BadRequest(f"Sequence component {fqn!r} does not exist.")
        return path, doc

    def _merged_params(self, ns: str, path: str, action: dict, params: dict) -> dict:
        pkg, _ = split_path(path)
        merged: dict = {}
        if pkg:
            package = self.store.get(ns, "packages", pkg)
            if package:
                merged.update(_kv_dict(package["parameters"]))
        merged.update(_kv_dict(action["parameters"]))
        merged.update(params)
        return merged

    def invoke(self, ns: str, path: str, params: Any, blocking: bool, auth: str,
               wait_s: float | None = None) -> tuple[str, dict | None]:
        """Starts an activation; returns (activationId, record or None if still running)."""
        action = self.get_action(ns, path)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("The request content was malformed: the parameters must be a JSON object.")
        size = len(json.dumps(params))
        if size > MAX_PAYLOAD_BYTES:
            raise TooLarge(f"The request content was too large ({size} bytes); "
                           f"it exceeds the allowed limit of {MAX_PAYLOAD_BYTES} bytes.")
        doc = self._record(ns, path, action, secrets.token_hex(16), None)
        activation_id = doc["activationId"]
        future = self._pool.submit(self._activate, ns, path, action, params, auth, doc)
        if not blocking:
            return activation_id, None
        try:
            return activation_id, future.result(timeout=self.blocking_timeout_s if wait_s is None else wait_s)
        except TimeoutError:
            return activation_id, None

    def _record(self, ns: str, path: str, action: dict, activation_id: str, cause: str | None) -> dict:
        pkg, name = split_path(path)
        doc = {
            "activationId": activation_id, "namespace": ns, "name": name, "version": action["version"],
            "subject": ns, "start": _now_ms(), "end": 0, "duration": 0, "statusCode": 0,
            "response": {"status": "pending", "statusCode": 0, "success": False, "result": {}},
            "logs": [], "publish": False,
            "annotations": [{"key": "path", "value": f"{ns}/{path}"},
                            {"key": "kind", "value": action["exec"]["kind"]},
                            {"key": "limits", "value": action["limits"]}],
        }
        if cause:
            doc["cause"] = cause
        self.store.begin_activation(doc, path)
        return doc

    def _finish(self, doc: dict, status_code: int, result: dict, logs: list, end_ms: int | None = None) -> dict:
        if self._stopping and status_code != SUCCESS:
            self._interrupted_doc(doc)
            doc["logs"] = logs
            self.store.end_activation(doc)
            return doc
        doc["end"] = end_ms or _now_ms()
        doc["duration"] = doc["end"] - doc["start"]
        doc["statusCode"] = status_code
        doc["response"] = {"status": STATUS_NAMES[status_code], "statusCode": status_code,
                           "success": status_code == SUCCESS, "result": result}
        doc["logs"] = logs
        self.store.end_activation(doc)
        return doc

    def _activate(self, ns, path, action, params, auth, doc) -> dict:
        try:
            if action["exec"]["kind"] == "sequence":
                return self._run_sequence(ns, doc, action, self._merged_params(ns, path, action, params), auth)
            return self._run_action(ns, path, doc, action, params, auth)
        except Exception as exc:  # noqa: BLE001 - any platform fault must still close the record
            return self._finish(doc, INTERNAL_ERROR, {"error": f"internal error: {exc}"}, [])

    def _run_action(self, ns, path, doc, action, params, auth) -> dict:
        exec_ = action["exec"]
        init_value = {"name": action["name"], "main": exec_.get("main", "main"), "code": exec_["code"],
                      "binary": exec_.get("binary", False), "env": {}}
        deadline = doc["start"] + action["limits"]["timeout"]
        message = {
            "value": self._merged_params(ns, path, action, params),
            "namespace": ns, "action_name": f"/{ns}/{path}", "action_version": action["version"],
            "activation_id": doc["activationId"], "transaction_id": doc["activationId"],
            "deadline": str(deadline), "api_host": self.api_host, "api_key": auth,
        }
        key = f"{ns}/{path}@{action['version']}:{action['updated']}"
        outcome: RunResult = self.invoker.run(key, init_value, message, action["limits"])
        doc["start"] = outcome.start_ms or doc["start"]
        doc["annotations"].append({"key": "waitTime", "value": outcome.wait_ms})
        if outcome.init_ms is not None:
            doc["annotations"].append({"key": "initTime", "value": outcome.init_ms})
        return self._finish(doc, outcome.status_code, outcome.result, outcome.logs, outcome.end_ms or None)

    def _run_sequence(self, ns, doc, action, params, auth) -> dict:
        ids, result, status = [], params, SUCCESS
        for component in action["exec"]["components"]:
            path, comp = self._resolve_component(ns, component)
            child_doc = self._record(ns, path, comp, secrets.token_hex(16), doc["activationId"])
            child = self._activate(ns, path, comp, result, auth, child_doc)
            ids.append(child["activationId"])
            result = child["response"]["result"]
            status = child["response"]["statusCode"]
            if status != SUCCESS:
                break
        doc["annotations"].append({"key": "topmost", "value": True})
        return self._finish(doc, status, result, ids)

    # activations
    def get_activation(self, ns: str, activation_id: str) -> dict:
        doc = self.store.get_activation(ns, activation_id)
        if doc is None or doc["response"]["status"] == "pending":
            raise NotFound()  # as in OpenWhisk, a record exists only once the activation ended
        return doc

    def list_activations(self, ns: str, name: str | None = None, limit: int = 30, skip: int = 0,
                         since: int | None = None, upto: int | None = None) -> list[dict]:
        return self.store.list_activations(ns, name, limit, skip, since, upto)


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


__all__ = ["Platform", "APPLICATION_ERROR", "DEVELOPER_ERROR", "INTERNAL_ERROR", "SUCCESS"]
