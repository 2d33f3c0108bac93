"""Actions and packages as OpenWhisk's controller keeps them (its Actions and Packages routes): checked, versioned,
resolved through packages and bindings for an invoke.

`Entities` is the half of `localwhisk.core.Platform` that knows no activation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from localwhisk.entities import bodies, kinds, names
from localwhisk.entities.names import QualifiedName
from localwhisk.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from localwhisk.store import KindConflict

MAX_CODE_BYTES = 48 * 1024 * 1024
MAX_SEQUENCE_LENGTH = 50  # OpenWhisk's actionSequenceMaxLimit: atomic actions, nested sequences inlined
DEFAULT_LIMITS = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
LIMIT_RANGES = {"timeout": (100, 300000), "memory": (128, 2048), "logs": (0, 10), "concurrency": (1, 1)}
PROVIDE_API_KEY = "provide-api-key"


def now_ms() -> int:
    return int(time.time() * 1000)


def kv_dict(kv: list[dict]) -> dict:
    return {p["key"]: p.get("value") for p in kv}


def truthy(annotations: list[dict], key: str, missing: bool) -> bool:
    """OpenWhisk's Parameters.isTruthy: false, 0, "" and null are false; an absent key is `missing`."""
    for a in annotations:
        if a["key"] == key:
            val = a.get("value")
            return bool(val) if isinstance(val, (bool, int, float, str)) or val is None else True
    return missing


_LISTED_PACKAGE_FIELDS = ("namespace", "name", "version", "publish", "annotations", "updated")


def _is_feed(action: dict) -> bool:
    return any(a["key"] == "feed" for a in action["annotations"])


def _binding_annotation(annotations: list[dict], binding: dict) -> list[dict]:
    """The annotations with the controller's own `binding` one (Packages.scala bindingAnnotation): a client's is
    dropped, and a binding carries its package's name, for clients that list packages and cannot tell."""
    kept = [a for a in annotations if a["key"] != "binding"]
    return [*kept, {"key": "binding", "value": binding}] if binding else kept


def page_of(docs: list[dict], limit: int | None, skip: int) -> list[dict]:
    """The `limit` documents past `skip` (None: all of them), as a list route pages them."""
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


class Entities:
    """Packages and actions of every namespace in `self.store` (the mixin needs `store` and `any_image`)."""

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
            "annotations": _binding_annotation(
                body.get("annotations", old.get("annotations", []) if old else []), binding
            ),
            "binding": binding,
            "updated": now_ms(),
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
        """The package with its actions and feeds (WhiskPackageWithActions); a binding as itself, with the bound
        package's parameters under its own and the bound package's actions.

        Raises:
            NotFound: no such package, one `subject` may not see, or a binding whose package is gone.
        """
        doc = dict(self._readable_package(ns, name, subject or ns))
        owner, pkg = ns, name
        if doc["binding"]:
            owner, pkg = doc["binding"]["namespace"], doc["binding"]["name"]
            source = self.store.get_shared(owner, "packages", pkg)
            if source is None:
                raise NotFound()
            own = kv_dict(doc["parameters"])
            doc["parameters"] = [*(p for p in source["parameters"] if p["key"] not in own), *doc["parameters"]]
        inside = [
            {"name": a["name"], "version": a["version"], "annotations": a["annotations"]}
            for a in self.store.list(owner, "actions", prefix=pkg)
        ]
        doc["actions"] = [a for a in inside if not _is_feed(a)]
        doc["feeds"] = [a for a in inside if _is_feed(a)]
        return doc

    def _readable_package(self, ns: str, name: str, subject: str) -> dict:
        names.check_segment(name)
        doc = self.store.get_shared(ns, "packages", name)
        if doc is None or (ns != subject and not doc.get("publish")):
            raise NotFound()
        return doc

    def list_packages(self, ns: str, subject: str | None = None, limit: int | None = 30, skip: int = 0) -> list[dict]:
        """As OpenWhisk's packages views list them: without parameters, `binding` false for a package; another
        namespace's published packages only, not its bindings."""
        if ns == (subject or ns):
            docs = self.store.list(ns, "packages", limit=limit, skip=skip)
        else:
            docs = page_of(
                [d for d in self.store.list(ns, "packages") if d.get("publish") and not d.get("binding")], limit, skip
            )
        return [
            {**{k: d[k] for k in _LISTED_PACKAGE_FIELDS if k in d}, "binding": d.get("binding") or False} for d in docs
        ]

    def count_packages(self, ns: str, subject: str | None = None) -> int:
        """How many `list_packages` would list without a limit: the namespace's own counted in the store's index;
        another's published packages need their documents read (whether published is inside them)."""
        if ns == (subject or ns):
            return self.store.count(ns, "packages")
        return len(self.list_packages(ns, subject, limit=None))

    def delete_package(self, ns: str, name: str, force: bool = False) -> dict:
        """As Packages.remove: a package with actions is deleted only with `force`, its actions first."""
        names.check_segment(name)
        doc, rev = self.store.get_revision(ns, "packages", name)
        if doc is None:
            raise NotFound()
        inside = self.store.list(ns, "actions", prefix=name)
        if inside and not force:
            raise Conflict(
                f"Package not empty (contains {len(inside)} entit{'y' if len(inside) == 1 else 'ies'}). "
                "Set force param or delete package contents."
            )
        for action in inside:
            try:
                self.delete_action(ns, f"{name}/{action['name']}")
            except NotFound:
                pass  # deleted meanwhile
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
            "updated": now_ms(),
        }
        self.store.put(ns, "actions", path, doc, rev)
        return doc

    def get_action(self, ns: str, path: str, code: bool = True, subject: str | None = None) -> dict:
        split_path(path)
        doc = dict(self.resolve_action(subject or ns, QualifiedName(ns, path)).doc)
        if not code and "code" in doc["exec"]:
            doc["exec"] = {k: v for k, v in doc["exec"].items() if k != "code"}
        return doc

    def _listed_actions(self, ns: str, pkg: str | None, subject: str | None) -> tuple[str, str | None] | None:
        """(namespace, package) whose actions a list of `ns`'s (package's) actions shows `subject`: a binding's
        are the bound package's; None when it shows none (another namespace's actions outside a package)."""
        if pkg is not None:
            package = self._readable_package(ns, pkg, subject or ns)
            if package.get("binding"):
                return package["binding"]["namespace"], package["binding"]["name"]
            return ns, pkg
        return None if ns != (subject or ns) else (ns, None)

    def count_actions(self, ns: str, pkg: str | None = None, subject: str | None = None) -> int:
        """How many `list_actions` would list without a limit, counted in the store's index, no document read."""
        listed = self._listed_actions(ns, pkg, subject)
        return 0 if listed is None else self.store.count(listed[0], "actions", prefix=listed[1])

    def list_actions(
        self, ns: str, pkg: str | None = None, limit: int = 30, skip: int = 0, subject: str | None = None
    ) -> list[dict]:
        listed = self._listed_actions(ns, pkg, subject)
        if listed is None:
            return []
        owner, pkg = listed
        out = []
        for d in self.store.list(owner, "actions", prefix=pkg, limit=limit, skip=skip):
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
        params, binding, owner = kv_dict(package["parameters"]), None, qname
        if package.get("binding"):
            bound = package["binding"]
            source = self._readable_package(bound["namespace"], bound["name"], qname.namespace)
            params = {**kv_dict(source["parameters"]), **params}
            binding = f"{qname.namespace}/{qname.package}"
            owner = QualifiedName(bound["namespace"], f"{bound['name']}/{qname.name}")
        doc = self.store.get_shared(owner.namespace, "actions", owner.path)
        if doc is None:
            raise NotFound()
        return Resolved(owner, doc, params, binding)

    # invocation
