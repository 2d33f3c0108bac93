"""The shared catalog in the `whisk.system` namespace, readable by every namespace.

A real OpenWhisk installs `/whisk.system/utils` (echo, cat, split, sort, head, ...) so
that fully qualified invokes, sequences and rules can use them; the local platform keeps
its own small versions of those actions and reinstalls them whenever their code changes.
"""

from __future__ import annotations

from pathlib import Path

NAMESPACE = "whisk.system"
PACKAGES = {"utils": "Building blocks that format and assemble data"}
_HERE = Path(__file__).resolve().parent


def install(platform) -> list[str]:
    """Creates or updates every catalog package and action; returns the actions (re)written."""
    written = []
    for package, description in PACKAGES.items():
        current = platform.store.get(NAMESPACE, "packages", package)
        if current is None or not current.get("publish"):
            platform.put_package(
                NAMESPACE,
                package,
                {"publish": True, "annotations": [{"key": "description", "value": description}]},
                overwrite=True,
            )
        for source in sorted((_HERE / package).glob("*.py")):
            path = f"{package}/{source.stem}"
            code = source.read_text()
            old = platform.store.get(NAMESPACE, "actions", path)
            if old is None or old["exec"].get("code") != code:
                platform.put_action(
                    NAMESPACE, path, {"exec": {"kind": "python:3.11", "code": code}, "publish": True}, overwrite=True
                )
                written.append(path)
    return written
