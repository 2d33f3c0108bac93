"""Running an npm CLI written by others, as a test may: installed, confined, one process per call.

The README's set-up installs them with `npm ci --prefix tests/tools`; nothing downloads at test time. Each
tool runs with a home of its own under the test's tmp folder and an environment made from scratch, so it reads
no user configuration, writes nothing outside tmp, and has no telemetry or update check to send.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent
MODULES = TOOLS / "node_modules"
# of the caller's environment only what finds programs and marks the test run's processes as its own
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "DEPLOYER_TEST_RUN")


def needs(*packages: str) -> pytest.MarkDecorator:
    """Skips a module, before its platform starts, where node or one of the npm packages is missing."""
    missing = [p for p in packages if not (MODULES / p / "package.json").is_file()]
    if shutil.which("node") is None:
        reason = "node is not installed (the README's set-up installs it with the npm tools)"
    else:
        reason = f"npm {', '.join(missing)} missing: run `npm ci --prefix tests/tools` (the README's set-up does)"
    return pytest.mark.skipif(shutil.which("node") is None or bool(missing), reason=reason)


def tool_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment that keeps a tool's configuration, caches and state inside `home`."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        NO_COLOR="1",
        NO_UPDATE_NOTIFIER="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


@dataclass
class NodeTool:
    """A node CLI run with a fixed argv prefix, environment and working folder; one process per call."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    timeout_s: float = 180.0

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.argv, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
        return done

    def json(self, *args: str):
        return json.loads(self.run(*args).stdout)
