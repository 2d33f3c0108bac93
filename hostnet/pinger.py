"""Owner of a hostnet.probe process pinging a guest from inside a namespace."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from hostnet.errors import HostnetError
from hostnet.netns import NetworkNamespace
from hostnet.process import ManagedProcess

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class Pinger:
    """Pings `target` every interval_ms from `netns` until stopped."""

    def __init__(
        self, netns: NetworkNamespace, target: str, run_dir: Path, interval_ms: float = 100, on_start=None
    ) -> None:
        self.out = Path(run_dir) / f"probe-{target}.json"
        argv = netns.exec_argv(
            [
                sys.executable,
                "-m",
                "hostnet.probe",
                "--target",
                target,
                "--interval-ms",
                str(interval_ms),
                "--out",
                self.out,
            ]
        )
        env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT))
        self._process = ManagedProcess(
            argv, name=f"probe {target}", log_path=Path(run_dir) / f"probe-{target}.log", env=env
        )
        self._on_start = on_start
        self.target = target

    def start(self) -> Pinger:
        self.out.unlink(missing_ok=True)
        self._process.start()
        if self._on_start:
            self._on_start(self._process)
        return self

    def summary(self) -> dict:
        try:
            return json.loads(self.out.read_text())
        except (OSError, ValueError):
            return {}

    def wait_reply_after(self, unix_time: float, timeout_s: float = 60) -> dict:
        """Wait until a reply newer than unix_time arrives; return the summary.

        Raises:
            HostnetError: no such reply in timeout_s, or the probe died.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            summary = self.summary()
            if (summary.get("last_reply_unix") or 0) > unix_time:
                return summary
            if not self._process.running():
                raise HostnetError(f"ping probe to {self.target} exited: {self._process.log_tail(400)}")
            time.sleep(0.05)  # the probe rewrites its summary every 0.2 s
        raise HostnetError(f"{self.target} did not answer ping within {timeout_s}s; probe summary: {self.summary()}")

    def stop(self) -> dict:
        """Stop the probe and return its final summary."""
        self._process.stop()
        return self.summary()

    def __enter__(self) -> Pinger:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
