"""Owner objects for child processes, and one helper for short host commands.

Every long-lived process hostnet starts (QEMU, OVS, iperf3, probes) is held by a
ManagedProcess so that it is stopped on exit and on error: terminate, wait, kill.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hostnet.errors import CommandError


def run(
    argv: Sequence[str],
    *,
    timeout_s: float = 60,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run a short command and return its result.

    Raises:
        CommandError: the program is missing, timed out, or (with check) exited non-zero.
    """
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=dict(env) if env is not None else None,
            input=input_text,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise CommandError(
            f"{argv[0]} not found; command: {shlex.join(argv)}; run scripts/install-hostnet-deps.sh"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout_s}s; command: {shlex.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise CommandError(
            f"{Path(argv[0]).name} exited {proc.returncode}; command: "
            f"{shlex.join(argv)}; stderr: {proc.stderr.strip()[-1500:]}"
        )
    return proc


class ManagedProcess:
    """One child process whose output goes to a log file, stopped on exit.

    stop() is idempotent: terminate, wait, kill, wait.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name
        self.log_path = Path(log_path)
        self._env = dict(env) if env is not None else None
        self._stdout_pipe = stdout_pipe
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def stdout(self):
        return self._proc.stdout if self._proc else None

    def start(self) -> ManagedProcess:
        """Start the process; its stderr (and stdout unless piped) go to log_path."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        try:
            # Own session: a Ctrl-C in the terminal reaches us, and we stop children in order.
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self._stdout_pipe else self._log,
                stderr=self._log,
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise CommandError(f"cannot start {self.name}: {exc}; command: {shlex.join(self.argv)}") from exc
        return self

    def returncode(self) -> int | None:
        """None while running, else the exit status."""
        return self._proc.poll() if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to timeout_s for exit; None if still running."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 10) -> int | None:
        """Stop the process if it runs (terminate, wait, kill, wait); return its status."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.terminate()
            if self.wait(timeout_s) is None:
                self._proc.kill()
                self._proc.wait(timeout=timeout_s)
        if self._proc.stdout:
            self._proc.stdout.close()
        if self._log and not self._log.closed:
            self._log.close()
        return self._proc.returncode

    def log_tail(self, max_chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:].strip()
        except OSError:
            return ""

    def describe(self) -> str:
        return f"command: {shlex.join(self.argv)}; log: {self.log_path}"

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
