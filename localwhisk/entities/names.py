"""Entity names and fully qualified names, checked with OpenWhisk's own rules.

OpenWhisk rejects a name that is not a word character alone, or a word character, up to
254 of `[\\w@ .&-]`, and a final `[\\w@.&-]` (ASCII `\\w`), and a segment over 256 characters,
with 400 and the messages below. Without the check, names like `..`, `a%00b` or 5000
characters are stored here and refused by a real cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from localwhisk.errors import BadRequest

MAX_LENGTH = 256
_NAME = re.compile(rf"\A([\w]|[\w][\w@ .&-]{{0,{MAX_LENGTH - 2}}}[\w@.&-])\Z", re.ASCII)

ILLEGAL_ENTITY = "The name of the entity contains illegal characters."
ILLEGAL_NAMESPACE = "The namespace contains illegal characters."
BAD_NAME_FILTER = "Parameter may be a 'simple' name or 'package-name/simple' name: {}"
MALFORMED_FQN = "The fully qualified name of the entity must contain at least the namespace and the name of the entity."


def is_valid(name: str) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name))


def check_segment(name: str, namespace: bool = False) -> str:
    """Raises BadRequest with OpenWhisk's message for a name it would refuse."""
    if is_valid(name):
        return name
    if isinstance(name, str) and len(name) > MAX_LENGTH:
        what = "Namespace" if namespace else "Name segement"  # sic: OpenWhisk's spelling
        raise BadRequest(f"{what} longer than allowed: {len(name)} > {MAX_LENGTH}.")
    raise BadRequest(ILLEGAL_NAMESPACE if namespace else ILLEGAL_ENTITY)


def check_namespace(ns: str) -> str:
    return ns if ns == "_" else check_segment(ns, namespace=True)


def check_path(path: str) -> str:
    """`name` or `package/name`, each segment checked."""
    parts = path.split("/")
    if not 1 <= len(parts) <= 2:
        raise BadRequest(ILLEGAL_ENTITY)
    for part in parts:
        check_segment(part)
    return path


@dataclass(frozen=True)
class QualifiedName:
    """An entity named by its owning namespace and its path in it (`name` or `package/name`)."""

    namespace: str
    path: str

    @property
    def package(self) -> str | None:
        return self.path.split("/")[0] if "/" in self.path else None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def package_path(self) -> str:
        """The `path` field of OpenWhisk's {path, name} form: namespace, plus the package if any."""
        return f"{self.namespace}/{self.package}" if self.package else self.namespace

    def __str__(self) -> str:
        return f"/{self.namespace}/{self.path}"

    def as_path_name(self) -> dict:
        return {"path": self.package_path, "name": self.name}


def resolve(name: str, default_namespace: str) -> QualifiedName:
    """'/ns/pkg/name', '/ns/name', 'pkg/name' or 'name' -> a QualifiedName.

    Raises BadRequest for a malformed or illegal name.
    """
    if not isinstance(name, str) or not name.strip("/"):
        raise BadRequest(MALFORMED_FQN)
    parts = [p for p in name.split("/") if p != ""] if name.startswith("/") else name.split("/")
    if name.startswith("/"):
        if len(parts) < 2 or len(parts) > 3:
            raise BadRequest(MALFORMED_FQN)
        namespace, rest = parts[0], parts[1:]
        namespace = default_namespace if namespace == "_" else check_segment(namespace, namespace=True)
    else:
        if len(parts) > 2:
            raise BadRequest(MALFORMED_FQN)
        namespace, rest = default_namespace, parts
    return QualifiedName(namespace, check_path("/".join(rest)))


def activation_filter(value: str | None) -> str | None:
    """The activation list's `name` query as Activations.scala reads it: a path of one or two names (empty parts
    between slashes dropped), or None for an absent or blank one. Raises BadRequest with OpenWhisk's message."""
    if value is None:
        return None
    parts = [part for part in value.split("/") if part]
    if 1 <= len(parts) <= 2 and all(is_valid(part) for part in parts):
        return "/".join(parts)
    if not value.strip():
        return None
    raise BadRequest(BAD_NAME_FILTER.format(value))
