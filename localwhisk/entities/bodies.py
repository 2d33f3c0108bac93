"""What a PUT body of each entity kind may hold, checked once before anything is read or stored.

OpenWhisk reads a PUT body into a typed record (WhiskActionPut, WhiskPackagePut,
WhiskTriggerPut, WhiskRulePut): a field of the wrong type, or a parameter that is not a
`{key: string, value: any}` object (Parameter.scala), refuses the request with 400 and
"The request content was malformed". A `null` field counts as absent. Checking here, for
every kind, keeps a malformed parameter from being stored and turning every later invoke
or fire of it into a 500.
"""

from __future__ import annotations

import re
from typing import Any

from localwhisk.errors import BadRequest

MALFORMED = "The request content was malformed:"
_INT = re.compile(r"\A[+-]?[0-9]+\Z")

_KV, _BOOL, _OBJECT, _STRING, _STRINGS, _VERSION = "kv", "bool", "object", "string", "strings", "version"
_FIELDS = {
    "action": {
        "exec": _OBJECT,
        "parameters": _KV,
        "annotations": _KV,
        "limits": _OBJECT,
        "publish": _BOOL,
        "version": _VERSION,
        "delAnnotations": _STRINGS,
    },
    "package": {"binding": _OBJECT, "parameters": _KV, "annotations": _KV, "publish": _BOOL, "version": _VERSION},
    "trigger": {"parameters": _KV, "annotations": _KV, "limits": _OBJECT, "publish": _BOOL, "version": _VERSION},
    "rule": {"trigger": _STRING, "action": _STRING, "annotations": _KV, "publish": _BOOL, "version": _VERSION},
}


def check_put(kind: str, body: Any) -> dict:
    """The PUT body of an entity of `kind` with its known fields checked and normalised.

    Parameters and annotations come back as lists of `{key, value}` (a repeated key keeps its
    last value, as OpenWhisk's map does); `null` fields are dropped; unknown fields are ignored.

    Raises:
        BadRequest: a field of the wrong type, naming the field and what it must be.
    """
    if not isinstance(body, dict):
        raise BadRequest(f"{MALFORMED} expected a JSON object.")
    out = {}
    for field, value in body.items():
        shape = _FIELDS[kind].get(field)
        if value is None or shape is None:
            continue
        out[field] = _checked(field, value, shape)
    return out


def _checked(field: str, value: Any, shape: str) -> Any:
    if shape == _KV:
        return key_values(value, field)
    expected = {
        _BOOL: (bool, "true or false"),
        _OBJECT: (dict, "a JSON object"),
        _STRING: (str, "a string"),
        _STRINGS: (list, "a list of strings"),
        _VERSION: (str, "a semantic version like 0.0.1"),
    }[shape]
    valid = isinstance(value, expected[0])
    if valid and shape == _STRINGS:
        valid = all(isinstance(item, str) for item in value)
    if valid and shape == _VERSION:
        valid = _is_semver(value)
    if not valid:
        raise BadRequest(f"{MALFORMED} '{field}' must be {expected[1]}.")
    return value


def _is_semver(text: str) -> bool:
    """As SemVer.scala reads a version: up to three dot-separated integers (missing ones 0, a fourth and
    more ignored), none negative, not 0.0.0."""
    parts = text.split(".")
    while parts and parts[-1] == "":  # Java's split drops trailing empty parts
        parts.pop()
    numbers = parts[:3]
    if not all(_INT.match(part) and -(2**31) <= int(part) < 2**31 for part in numbers):
        return False
    values = [int(part) for part in numbers]
    return all(v >= 0 for v in values) and any(v > 0 for v in values)


def key_values(value: Any, field: str = "parameters") -> list[dict]:
    """`[{key, value}, ...]` as OpenWhisk's Parameters reads it: each an object with a string `key`,
    a `value` (any JSON, null included), an optional boolean `init` and string `encryption`.

    Raises:
        BadRequest: naming the field and the first item that is not such an object.
    """
    if not isinstance(value, list):
        raise BadRequest(f'{MALFORMED} \'{field}\' must be a list of {{"key": string, "value": any}} objects.')
    merged: dict[str, Any] = {}
    for index, item in enumerate(value):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("key"), str)
            and "value" in item
            and isinstance(item.get("init", False), bool)
            and isinstance(item.get("encryption", ""), (str, type(None)))
        ):
            raise BadRequest(
                f"{MALFORMED} {field}[{index}] must be an object with a string 'key' and a 'value' "
                "(and optionally a boolean 'init')."
            )
        merged[item["key"]] = item["value"]
    return [{"key": key, "value": val} for key, val in merged.items()]
