"""The process that runs an action's code, speaking the official Python runtime's launcher protocol.

The proxy starts it once per container, in the action's folder, with nothing in its
environment but the `__OW_*` variables, the /init `env` and a minimal PATH/HOME/LANG.
It imports `main__` (the action's `__main__.py`), acknowledges on fd 3, then reads one
JSON message per line on stdin and writes one JSON result per line on fd 3, exporting
every field but `value` as `__OW_<FIELD>` first. Keeping the action in its own process
means it sees what it would see on OpenWhisk: no platform variables, no platform modules.

The proxy starts it before /init with `--wait-for-action` (and, on the project's ML image,
`--preload torch,...`): it imports those modules, says `{"ready": true}` on fd 3 and waits
for one line naming the action's main function and its environment, so a cold start pays
for the action's own imports only. The environment it then takes is exactly the one a
plain start gets.

Usage: python launcher.py MAIN [--deny mod1,...] [--wait-for-action] [--preload mod1,...]
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import traceback


class _Deny(importlib.abc.MetaPathFinder):
    """Refuses top-level modules the runtime image does not have, unless the action ships them."""

    def __init__(self, names: set[str], action_dir: str) -> None:
        self.names = names
        self.action_dir = action_dir

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if path is not None or top not in self.names:
            return None
        from importlib.machinery import PathFinder

        own = PathFinder.find_spec(fullname, [p for p in sys.path if p.startswith(self.action_dir)])
        if own is not None:
            return own
        runtime = os.environ.get("__OW_EXECUTION_ENV") or "this runtime"
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: {runtime} does not have it. Bundle it in the action's zip "
            f"(a virtualenv/ folder) or deploy the action on the project's runtime image (docker: in the "
            f"manifest).",
            name=fullname,
        )


def _activate_virtualenv(action_dir: str) -> None:
    venv = os.path.join(action_dir, "virtualenv", "lib")
    if not os.path.isdir(venv):
        return
    for entry in sorted(os.listdir(venv)):
        site = os.path.join(venv, entry, "site-packages")
        if entry.startswith("python3") and os.path.isdir(site):
            sys.path.insert(1, site)


def _parse(argv: list[str]) -> tuple[str, set[str], list[str] | None]:
    """(main, denied modules, modules to import before waiting for the action, or None to start at once)."""
    main_name, deny, preload = "main", set(), None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--deny" and args:
            deny = {name for name in args.pop(0).split(",") if name}
        elif arg == "--wait-for-action":
            preload = preload or []
        elif arg == "--preload" and args:
            preload = [name for name in args.pop(0).split(",") if name]
        else:
            main_name = arg
    return main_name, deny, preload


def _await_action(preload: list[str], out) -> str:
    """Imports `preload`, reports ready, and returns the main name the /init line brings (its env applied)."""
    import importlib

    for name in preload:
        importlib.import_module(name)
    out.write(b'{"ready": true}\n')
    out.flush()
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    action = json.loads(line)
    os.environ.clear()
    os.environ.update(action["env"])
    importlib.invalidate_caches()  # the action's folder was listed (empty) by the imports above
    _forget_shadowed(os.getcwd())
    return action["main"]


def _forget_shadowed(action_dir: str) -> None:
    """Drops preloaded modules the action brings its own copy of, so that its copy is the one it imports.

    An action zip that bundles a newer `mlcore` than the image's must run that code, as it
    would on a launcher that preloaded nothing; torch and the rest stay loaded. One listing of the
    action's folder, not two stats per loaded package: with torch loaded that is thousands.
    """
    try:
        present = set(os.listdir(action_dir))
    except OSError:
        return
    bundled = {
        top
        for top in {name.partition(".")[0] for name in sys.modules}
        if top + ".py" in present or (top in present and os.path.isfile(os.path.join(action_dir, top, "__init__.py")))
    }
    for name in [n for n in sys.modules if n.partition(".")[0] in bundled]:
        where = getattr(sys.modules[name], "__file__", None) or ""
        if not where.startswith(action_dir + os.sep):
            del sys.modules[name]


def _encode(result) -> bytes:
    """The result as one line of JSON; or, when it has none, `!` and the reason as a JSON string, which the proxy
    answers as a 502 (no JSON value starts with `!`)."""
    try:
        try:
            return json.dumps(result, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate: JSON's escapes carry it
            return json.dumps(result).encode()
    except Exception as exc:  # TypeError, ValueError (a huge int), RecursionError (deep nesting), ...
        why = f"The action did not return a JSON-serialisable result: {exc.__class__.__name__}: {exc}"
        print(why, file=sys.stderr)
        return b"!" + json.dumps(why).encode()


def main(argv: list[str]) -> int:
    main_name, deny, preload = _parse(argv)
    action_dir = os.getcwd()
    sys.path[0] = action_dir  # where this script lies is none of the action's business
    out = os.fdopen(3, "wb")
    if preload is not None:
        main_name = _await_action(preload, out)
    _activate_virtualenv(action_dir)
    if deny:
        sys.meta_path.insert(0, _Deny(deny, action_dir))
    try:
        entry = getattr(__import__("main__"), main_name, None)
        if not callable(entry):
            raise AttributeError(f"action has no function named {main_name!r}")
    except BaseException as exc:
        traceback.print_exc()
        # the official proxy reads only "ok"; ours also shows why in the activation's result
        out.write(json.dumps({"ok": False, "error": repr(exc)}).encode() + b"\n")
        out.flush()
        return 1
    if os.environ.get("__OW_WAIT_FOR_ACK"):
        out.write(b'{"ok": true}\n')
        out.flush()
    for line in sys.stdin:
        message = json.loads(line)
        payload = {}
        for key, val in message.items():
            if key == "value":
                payload = val
            else:
                os.environ[f"__OW_{key.upper()}"] = val if isinstance(val, str) else json.dumps(val)
        try:
            result = entry(payload)
        except Exception as exc:
            traceback.print_exc()
            result = {"error": str(exc)}
        encoded = _encode(result)
        sys.stdout.flush()
        sys.stderr.flush()
        out.write(encoded + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
