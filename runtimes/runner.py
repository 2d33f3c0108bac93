"""Loads an action's code as the official Python runtime does and calls its entry point.

A plain action is source text saved as `__main__.py`; a binary action is a base64 zip
whose `__main__.py` defines the entry point, optionally with a `virtualenv/` folder.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import os
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable

from . import contract


DEFAULT_MAX_UNPACKED_BYTES = 512 * 1024 * 1024


class InitError(Exception):
    """The action's code could not be prepared; the message goes back to the platform."""


class ActionRunner:
    """Holds one initialised action: init once, then run many times, one at a time."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="action-"))
        self._entry: Callable[[dict], Any] | None = None

    @property
    def initialized(self) -> bool:
        return self._entry is not None

    def init(self, value: dict) -> None:
        """Raises InitError with a message fit for the activation record."""
        code = value.get("code")
        if not code:
            raise InitError(contract.ERR_NO_CODE)
        main_name = value.get("main") or "main"
        src = self._workdir / "src"
        src.mkdir(parents=True, exist_ok=True)
        if value.get("binary"):
            self._unzip(code, src)
        else:
            (src / "__main__.py").write_text(code)
        entry_file = src / "__main__.py"
        if not entry_file.is_file():
            raise InitError("Initialization has failed due to: zip file does not include __main__.py")
        for key, val in (value.get("env") or {}).items():
            os.environ[str(key)] = val if isinstance(val, str) else str(val)
        self._add_virtualenv(src)
        sys.path.insert(0, str(src))
        try:
            spec = importlib.util.spec_from_file_location("main__", entry_file)
            module = importlib.util.module_from_spec(spec)
            sys.modules["main__"] = module
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - any failure in user code is an init failure
            traceback.print_exc(file=sys.stderr)
            raise InitError(f"Initialization has failed due to: {exc!r}") from exc
        entry = getattr(module, main_name, None)
        if not callable(entry):
            raise InitError(f"Initialization has failed due to: action has no function named {main_name!r}")
        self._entry = entry

    def run(self, args: dict, env: dict[str, str]) -> Any:
        """Calls the entry point; an exception becomes {"error": ...} with a traceback on stderr."""
        os.environ.update(env)
        try:
            return self._entry(args)
        except Exception as exc:  # noqa: BLE001 - the official runtime reports any exception this way
            traceback.print_exc(file=sys.stderr)
            return {"error": str(exc) or exc.__class__.__name__}

    @staticmethod
    def _unzip(code: str, dest: Path) -> None:
        """Extracts member by member, counting the bytes written: a small zip may claim or hide a huge size."""
        limit = int(os.environ.get("ACTION_MAX_UNPACKED_BYTES", DEFAULT_MAX_UNPACKED_BYTES))
        try:
            blob = base64.b64decode(code, validate=False)
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                written = 0
                for info in zf.infolist():
                    target = (dest / info.filename).resolve()
                    if not str(target).startswith(str(dest.resolve())):
                        raise InitError(f"Initialization has failed due to: zip member {info.filename!r} escapes "
                                        "the folder")
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        while chunk := src.read(1 << 20):
                            written += len(chunk)
                            if written > limit:
                                raise InitError(f"Initialization has failed due to: the action's zip unpacks to more "
                                                f"than the limit of {limit} bytes")
                            out.write(chunk)
        except (binascii.Error, zipfile.BadZipFile) as exc:
            raise InitError(f"Initialization has failed due to: the code is not a base64 zip file ({exc})") from exc

    @staticmethod
    def _add_virtualenv(src: Path) -> None:
        venv = src / "virtualenv"
        for site in sorted(venv.glob("lib/python3*/site-packages")):
            sys.path.insert(0, str(site))
