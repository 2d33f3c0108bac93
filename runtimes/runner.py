"""Prepares an action's code as the official Python runtime does and runs it in a launcher process.

A plain action is source text saved as `main__.py`; a binary action is a base64 zip
whose `__main__.py` defines the entry point, optionally with a `virtualenv/` folder. The
code runs in `launcher.py`, a child process with an environment of its own; this class
owns that child and talks to it over stdin and fd 3, one activation at a time.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import select
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import procs

from . import contract, output

DEFAULT_MAX_UNPACKED_BYTES = 512 * 1024 * 1024
LAUNCHER = Path(__file__).resolve().with_name("launcher.py")
# what an action sees besides __OW_* and its /init env: enough to find programs and write temp files
MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class InitError(Exception):
    """The action's code could not be prepared or started; the message goes back to the platform."""


class ActionExited(Exception):
    """The launcher died during a run (killed, crashed, or the action called exit)."""


def _reap_orphans(keep: int) -> None:
    """The proxy is a subreaper: collect the exit status of adopted orphans so they do not pile up.

    waitid with WNOWAIT names a finished child without collecting it, so the launcher's own status
    stays for its Popen; one call when there is nothing to collect (every /run ends here).
    """
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == keep:
            return
        try:
            os.waitpid(info.si_pid, os.WNOHANG)
        except ChildProcessError:
            pass


def launcher_env(init_env: dict, workdir: Path) -> dict[str, str]:
    """__OW_* from the proxy's own environment, then the /init env; nothing else of the platform's."""
    env = {k: v for k, v in os.environ.items() if k.startswith(contract.ENV_PREFIX)}
    env.update(PATH=MINIMAL_PATH, HOME=str(workdir), LANG="C.UTF-8", TMPDIR=os.environ.get("TMPDIR", "/tmp"))
    for key, val in (init_env or {}).items():
        env[str(key)] = val if isinstance(val, str) else json.dumps(val)
    env["__OW_WAIT_FOR_ACK"] = "1"
    return env


class ActionRunner:
    """Holds one initialised action: init once, then run many times, one at a time."""

    def __init__(self, workdir: Path | None = None, deny: str = "", preload: str = "", prestart: bool = False) -> None:
        self._workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="action-"))
        self._deny = deny
        self._proc: subprocess.Popen | None = None
        self._results = None
        self._initialized = False
        self._ready = False
        self._preload = ",".join(m for m in preload.split(",") if m and m not in deny.split(","))
        self._output = output.shared()
        if prestart:
            self._prestart()

    @property
    def initialized(self) -> bool:
        return self._initialized

    def _spawn(self, main_name: str, env: dict[str, str], extra: list[str]) -> None:
        self._discard()
        read_fd, write_fd = os.pipe()
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()  # the action's output goes through the relay
        cmd = [sys.executable, "-u", "-s", str(LAUNCHER), main_name] + extra
        if self._deny:
            cmd += ["--deny", self._deny]
        try:
            self._proc = procs.popen(
                cmd,
                die_with_parent=True,
                cwd=str(self._workdir / "src"),
                env=env,
                stdin=subprocess.PIPE,
                stdout=out_w,
                stderr=err_w,
                pass_fds=(3,),
                preexec_fn=lambda: os.dup2(write_fd, 3),  # close_fds runs after this and keeps only fd 3
            )
        except OSError as exc:
            for fd in (read_fd, out_r, err_r):
                os.close(fd)
            raise InitError(f"Initialization has failed due to: cannot start the launcher: {exc}") from exc
        finally:
            for fd in (write_fd, out_w, err_w):
                os.close(fd)
        self._output.attach(out_r, err_r)
        self._results = os.fdopen(read_fd, "rb")

    def end_activation(self) -> None:
        """Ends this activation's logs: the action's output so far, then the sentinels, each on a line of its own."""
        self._output.end_activation()

    def _prestart(self) -> None:
        """The launcher, started before /init (with the preload modules imported), so /init only imports the action.

        It waits for the action's main name and env on stdin; a launcher that dies here is
        replaced by a plain start at /init, so a broken preload costs time, never the action.
        """
        (self._workdir / "src").mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("main", launcher_env({}, self._workdir), ["--wait-for-action", "--preload", self._preload])
        except InitError:
            self._proc = None

    def wait_ready(self) -> None:
        """Until a prestarted launcher has imported its modules (or died: then it is dropped)."""
        if self._proc is None or self._ready:
            return
        ready = self._read_line()
        if ready is None or b'"ready"' not in ready:
            self._discard()
        else:
            self._ready = True

    def exited(self) -> bool:
        return self._initialized and (self._proc is None or self._proc.poll() is not None)

    def init(self, value: dict) -> None:
        """Raises InitError with a message fit for the activation record; the details go to the logs."""
        src = self._workdir / "src"
        src.mkdir(parents=True, exist_ok=True)
        if value.get("binary"):
            self._unzip(value["code"], src)
            if not (src / "__main__.py").is_file() and not (src / "main__.py").is_file():
                raise InitError("Initialization has failed due to: zip file does not include __main__.py")
            if (src / "__main__.py").is_file():
                (src / "__main__.py").rename(src / "main__.py")
        else:
            (src / "main__.py").write_text(value["code"])
        main_name = value.get("main") or "main"
        env = launcher_env(value.get("env") or {}, self._workdir)
        if any(key.startswith("PYTHON") for key in env):  # read by the interpreter at its start: start afresh
            self._discard()
        self.wait_ready()
        if self._proc is not None:
            try:
                line = json.dumps({"main": main_name, "env": env}).encode() + b"\n"
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                self._discard()
        if self._proc is None or self._proc.poll() is not None:
            self._spawn(main_name, env, [])
        ack = self._read_line()
        if ack is None:
            code = self._proc.wait()
            self._proc = None
            raise InitError(
                f"Initialization has failed due to: the action's code failed to load (exit code "
                f"{code}); its traceback is in the logs"
            )
        try:
            ack = json.loads(ack)
        except ValueError:
            ack = {}
        if not isinstance(ack, dict) or ack.get("ok") is not True:
            self._proc.wait()
            self._proc = None
            why = ack.get("error") if isinstance(ack, dict) else None
            raise InitError(f"Initialization has failed due to: {why or 'the action did not initialize properly'}")
        self._initialized = True

    def _discard(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._ready = False
        if self._results is not None:
            self._results.close()
            self._results = None

    def _read_line(self) -> bytes | None:
        """One line from fd 3, or None once the launcher has exited without writing one."""
        while True:
            ready, _, _ = select.select([self._results], [], [], 0.5)
            if ready:
                line = self._results.readline()
                return line if line.endswith(b"\n") else None
            if self._proc.poll() is not None:
                ready, _, _ = select.select([self._results], [], [], 0)
                if not ready:
                    return None

    def run(self, message: dict, raw: bytes | None = None) -> bytes:
        """The launcher's answer as raw JSON bytes. Raises ActionExited when it died.

        `raw`, the request body `message` was parsed from, goes to the launcher as it is when it fits on one line.
        """
        if self.exited():
            raise ActionExited("command exited")
        line = raw.strip() if raw is not None else b""
        if line[:1] != b"{" or b"\n" in line or b"\r" in line:  # not UTF-8 on one line: write it afresh
            line = json.dumps(message).encode()  # escapes: a lone surrogate encodes too
        try:
            self._proc.stdin.write(line + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            self._proc.kill()
            self._proc.wait()
            raise ActionExited("command exited") from exc
        line = self._read_line()
        if line is None:
            self._proc.kill()  # closed fd 3 or died: either way this launcher is done
            self._proc.wait()
            raise ActionExited("command exited")
        _reap_orphans(keep=self._proc.pid)
        return line

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
                        raise InitError(
                            f"Initialization has failed due to: zip member {info.filename!r} escapes the folder"
                        )
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        while chunk := src.read(1 << 20):
                            written += len(chunk)
                            if written > limit:
                                raise InitError(
                                    f"Initialization has failed due to: the action's zip unpacks to more "
                                    f"than the limit of {limit} bytes"
                                )
                            out.write(chunk)
        except (binascii.Error, zipfile.BadZipFile) as exc:
            raise InitError(f"Initialization has failed due to: the code is not a base64 zip file ({exc})") from exc
