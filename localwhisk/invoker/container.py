"""One action container: a runtime proxy process, its log streams and its memory watch.

There is no Docker engine here, so a container is a process running `runtimes.proxy`
with the platform's Python, owned through `procs`: it dies with the platform
(PR_SET_PDEATHSIG) and is killed as a whole process tree.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from localwhisk.errors import LocalWhiskError
from localwhisk.invoker.proxy_connection import ProxyConnection, ProxyGone
from localwhisk.settings import Settings
from procs import READY_FD, Child, NotReady, ReadyLine, descendants
from runtimes import contract

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAX_UNPACKED_BYTES = Settings.max_unpacked_mb << 20  # what an action's zip may unpack to
# deepest JSON the platform takes from an action or a client: its record must still serialise on a thread
# of the controller (CPython's JSON codec recurses once per level, under a limit of 1000 frames in all)
MAX_JSON_DEPTH = 500
# OpenWhisk's words for an answer that is not a JSON object or array (ErrorResponse.invalidRunResponse)
INVALID_RUN_RESPONSE = "The action did not produce a valid JSON or JSON Array response"
# runtime family -> the command that starts its action proxy (each takes --ready-fd FD)
RUNTIME_COMMANDS = {
    "python": lambda python: [python, "-u", "-m", "runtimes.proxy"],
    "nodejs": lambda _python: ["node", str(_PROJECT_ROOT / "runtimes" / "nodejs" / "launcher.js")],
}


def _utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ContainerError(LocalWhiskError):
    """The container process failed to start, crashed, or broke the contract."""


class ContainerTimeout(ContainerError):
    pass


class ContainerOutOfMemory(ContainerError):
    pass


class InvalidAnswer(ContainerError):
    """The proxy answered, with a body the platform cannot hold as JSON; the message says why, for the record."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidAnswer(f"the number {text[:40]} is beyond the range of a double; send it as a string")
    return value


def _no_constant(name: str):
    raise InvalidAnswer(f"it holds {name}, and NaN or Infinity is not JSON; return a number, a string or null instead")


def json_depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep `value` nests, counted up to `limit + 1` (iterative: a deep value must not exhaust the stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        todo.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def decode_answer(raw: bytes):
    """The proxy's JSON answer as a value every part of the platform can store and serialise again.

    Raises:
        InvalidAnswer: not UTF-8 JSON, NaN or Infinity, a number no double holds, an integer past CPython's
            4300 digits, or nested deeper than MAX_JSON_DEPTH.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidAnswer(f"it nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise InvalidAnswer("it holds an integer of more than 4300 digits; send it as a string") from None
        raise InvalidAnswer(f"it is not JSON ({exc}): {raw[:200]!r}") from None
    # a value cannot nest deeper than it has brackets: most answers are cleared without a walk
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise InvalidAnswer(f"it nests deeper than {MAX_JSON_DEPTH} levels")
    return value


@dataclass
class _LogBuffer:
    """Lines from stdout and stderr, each stream closed per activation by the sentinel."""

    limit_bytes: int
    lines: list[str] = field(default_factory=list)
    size: int = 0
    truncated: bool = False
    sentinels: dict = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, stream: str, line: str, stamp: str | None = None) -> None:
        """stamp: when the line was written (a Docker log's own time), else now."""
        text = line.rstrip("\n")
        # as OpenWhisk's reader, a sentinel anywhere ends the activation: a runtime other than ours may glue it
        # to a partial line (ours put it on a line of its own), and what precedes it is the activation's
        ended = text.endswith(contract.SENTINEL)
        if ended:
            text = text[: -len(contract.SENTINEL)]
        with self.cond:
            if text or not ended:
                entry = f"{stamp or _utc_stamp()} {stream}: {text}"
                if self.size + len(entry) > self.limit_bytes:
                    self.truncated = True
                else:
                    self.size += len(entry)
                    self.lines.append(entry)
            if ended:
                self.sentinels[stream] += 1
                self.cond.notify_all()

    def take(self, expect: int, timeout_s: float) -> list[str]:
        """Waits until both streams reached `expect` sentinels, then returns and clears the lines."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while min(self.sentinels.values()) < expect:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            out = self.lines
            if self.truncated:
                out.append(
                    f"{_utc_stamp()} stderr: Logs were truncated because the total bytes size "
                    f"exceeds the limit of {self.limit_bytes} bytes."
                )
            self.lines, self.size, self.truncated = [], 0, False
            return out


class ActionContract:
    """/init, /run and their logs, the same over any transport: subclasses give `_post`, `_logs`, `alive`."""

    answer_bytes: int = 0

    def __init__(
        self, key: str, runtime: str, memory_mb: int, max_unpacked_bytes: int, env: dict[str, str], log_limit_bytes: int
    ) -> None:
        """What the invoker reads and sets on any container, so each transport starts from the same state."""
        self.key = key
        self.runtime = runtime
        self.memory_mb = memory_mb
        self.max_unpacked_bytes = max_unpacked_bytes
        self._env = env
        self._logs = _LogBuffer(limit_bytes=log_limit_bytes)
        self._connection: ProxyConnection | None = None
        self._activations = 0
        self.last_used = time.monotonic()
        self.busy = False
        self.stem = None  # the prewarm spec while this is an uninitialised stem cell
        self.env_signature: frozenset = frozenset()

    @property
    def log_limit_bytes(self) -> int:
        return self._logs.limit_bytes

    @log_limit_bytes.setter
    def log_limit_bytes(self, value: int) -> None:
        self._logs.limit_bytes = value

    def init(self, value: dict, timeout_s: float) -> tuple[int, dict, list[str]]:
        status, body = self._post(contract.INIT_PATH, {"value": value}, timeout_s)
        logs = self._logs.take(self._activations + 1, 2.0) if status != contract.OK else []
        if status != contract.OK:
            self._activations += 1
        return status, body, logs

    def run(self, message: dict, timeout_s: float) -> tuple[int, dict]:
        self._activations += 1
        return self._post(contract.RUN_PATH, message, timeout_s)

    def take_logs(self, wait_s: float = 2.0) -> list[str]:
        """Logs since the last call, waiting for this activation's sentinels while the container lives."""
        return self._logs.take(self._activations, wait_s if self.alive() else 0.2)

    def _exchange(self, connection: ProxyConnection, path: str, body: dict, timeout_s: float) -> tuple[int, object]:
        """One POST and its decoded answer. Raises ContainerTimeout (after killing), InvalidAnswer, or ProxyGone
        for the caller to tell an out-of-memory kill from a crash.

        The answer's size is kept (`answer_bytes`) for the invoker's limit, so the result is never serialised
        again to measure it.
        """
        try:
            status, raw = connection.post(path, json.dumps(body).encode(), timeout_s)
        except TimeoutError as exc:
            self.kill()
            raise ContainerTimeout(f"no answer within {timeout_s:.3f} s") from exc
        self.answer_bytes = len(raw)
        return status, decode_answer(raw)


class Container(ActionContract):
    """Owns one proxy process. `kill()` is idempotent; `with Container(...)` kills on exit."""

    def __init__(
        self,
        key: str,
        memory_mb: int,
        log_limit_bytes: int,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        runtime: str = "python",
        work_root: Path | None = None,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    ) -> None:
        if runtime not in RUNTIME_COMMANDS:
            raise ContainerError(f"no runtime {runtime!r} here; known: {', '.join(RUNTIME_COMMANDS)}")
        super().__init__(key, runtime, memory_mb, max_unpacked_bytes, env or {}, log_limit_bytes)
        # the container's own folder: its TMPDIR, so unpacked code and the action's temp files go with it
        if work_root is not None:
            Path(work_root).mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="container-", dir=work_root))
        self._python = python
        self._proc: Child | None = None
        self._busy_posting = threading.Event()
        self._dead = threading.Event()
        self._oom = threading.Event()
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def start(self, timeout_s: float = 60.0) -> None:
        # a container's __OW_* come from the platform alone, never from whoever started it
        env = {k: v for k, v in os.environ.items() if not k.startswith(contract.ENV_PREFIX)}
        env.update(self._env)
        env.update(TMPDIR=str(self.workdir), ACTION_MAX_UNPACKED_BYTES=str(self.max_unpacked_bytes))
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        cmd = RUNTIME_COMMANDS[self.runtime](self._python)
        self._proc = Child(
            [*cmd, "--ready-fd", READY_FD],
            name="the action runtime",
            ready=ReadyLine("fd"),
            die_with_parent=True,
            kill_tree=True,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(_PROJECT_ROOT),
        )
        try:
            self._proc.spawn()
        except OSError as exc:
            raise ContainerError(f"cannot start the action runtime ({' '.join(cmd)}): {exc}") from exc
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._watch_memory, daemon=True).start()
        try:
            line = self._proc.wait_ready(timeout_s)
        except NotReady:
            line = ""
        if not line.isdigit():
            self.kill()
            logs = "\n".join(self._logs.take(0, 0)[-20:])
            raise ContainerError(f"the action runtime did not become ready in {timeout_s:.0f} s; output:\n{logs}")
        self.port = int(line)
        self._connection = ProxyConnection("127.0.0.1", self.port)

    def _pump(self) -> None:
        """Both output streams in one thread: lines as they come, until the process closes them."""
        streams = {self._proc.popen.stdout.fileno(): "stdout", self._proc.popen.stderr.fileno(): "stderr"}
        partial = {fd: b"" for fd in streams}
        with selectors.DefaultSelector() as sel:
            for fd in streams:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                for key, _ in sel.select():
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fd)
                        if partial[key.fd]:
                            self._logs.add(streams[key.fd], partial[key.fd].decode("utf-8", "replace"))
                        continue
                    *lines, partial[key.fd] = (partial[key.fd] + chunk).split(b"\n")
                    for line in lines:
                        self._logs.add(streams[key.fd], line.decode("utf-8", "replace"))

    def _post(self, path: str, body: dict, timeout_s: float) -> tuple[int, dict]:
        """POSTs while the memory watch runs; raises ContainerTimeout / ContainerOutOfMemory / ContainerError."""
        if self._connection is None:
            raise ContainerError("the container is not running")
        self._busy_posting.set()
        try:
            status, payload = self._exchange(self._connection, path, body, timeout_s)
        except ProxyGone as exc:
            if self._oom.is_set():
                raise ContainerOutOfMemory("memory limit exceeded") from exc
            raise ContainerError(f"the action process exited unexpectedly ({exc})") from exc
        finally:
            self._busy_posting.clear()
        if self._oom.is_set():
            raise ContainerOutOfMemory("memory limit exceeded")
        return status, payload

    def _watch_memory(self) -> None:
        """While a request is out, checks the tree's resident memory every 100 ms; kills it past the limit."""
        limit = self.memory_mb * 1024 * 1024
        while not self._dead.is_set():
            self._busy_posting.wait()
            if self._dead.wait(0.1):
                return
            if self._busy_posting.is_set() and self._rss_bytes() > limit:
                self._oom.set()
                self.kill()
                return

    def _rss_bytes(self) -> int:
        """Anonymous and shared-memory resident bytes of the process and its descendants (the action may fork).

        File-backed pages (the shared libraries: about 330 MB for torch) are left out, as a container's
        cgroup limit reclaims clean file pages before its OOM killer acts; what cannot be reclaimed counts.
        """
        total = 0
        for pid in descendants(self.pid) if self.pid else []:
            try:
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith(("RssAnon:", "RssShmem:")):
                            total += int(line.split()[1]) * 1024
            except (OSError, ValueError, IndexError):
                continue
        return total

    def kill(self) -> None:
        """Kills the whole process tree, then removes the container's folder (idempotent)."""
        self._dead.set()
        self._busy_posting.set()  # lets the memory watch see that it is done
        if self._proc is not None:
            self._proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
