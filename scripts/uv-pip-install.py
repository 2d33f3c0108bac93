"""`pip install ARGS` done by uv, from the package sources pip is configured with.

uv unpacks wheels in parallel: torch's CUDA build and its nvidia-* wheels are about 6 GB
installed, which pip takes minutes over. uv reads neither pip.conf nor PIP_* variables, so
without this it would miss a machine's own indexes, local wheels, constraints and CA bundle.
Run with the venv's python: `python scripts/uv-pip-install.py -e '.[test]'`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def pip_settings() -> dict[str, list[str]]:
    """pip's effective values: its PIP_* variables over its config files, each list split as pip splits it."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, tuple[bool, list[str]]] = {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        scope, _, name = key.rpartition(".")
        from_env = scope == ":env:"
        if name in found and found[name][0] and not from_env:
            continue
        found[name] = (from_env, " ".join(shlex.split(value)).split())
    return {name: values for name, (_, values) in found.items()}


def main(args: list[str]) -> int:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        print("uv is not installed beside this python", file=sys.stderr)
        return 1
    settings = pip_settings()
    command = [uv, "pip", "install", "--python", sys.executable, "--index-strategy", "unsafe-best-match"]
    for name, option in OPTIONS.items():
        for value in settings.get(name, []):
            command += [option, value]
    env = dict(os.environ)
    if settings.get("cert"):
        env["SSL_CERT_FILE"] = settings["cert"][0]
    return subprocess.run([*command, *args], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
