"""A child process this one owns: started, waited on until it says it is ready, stopped.

Readiness is one of four signs, each waited on together with the child's pidfd, so a child
that dies while starting fails at once rather than at the deadline:

- `ReadyLine("stdout")`: the first line it prints (a URL, a JSON object with its port);
- `ReadyLine("fd")`: a line on a pipe of its own, whose write end it is told of by `READY_FD`
  in its argv (stdout and stderr stay free for its logs);
- `PortAccepts(host, port)`: a TCP port that accepts (a program that says nothing);
- `ReadyWhen(check)`: `check()` returns something other than None (a file it writes, an HTTP probe).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Callable

from .errors import NotReady
from .owner import popen
from .tree import kill_tree, stop_process

READY_FD = object()  # in a Child's argv: replaced by the number of the ready pipe's write end
MAX_READY_LINE = 64 << 10


class ReadyLine:
    """Ready at the first line the child writes, on its stdout or on a pipe of its own; the line is the value.

    Read a byte at a time, so what follows the line stays in the pipe for its reader.
    """

    def __init__(self, stream: str = "stdout") -> None:
        if stream not in ("stdout", "fd"):
            raise ValueError(f"a ready line comes on 'stdout' or 'fd', not {stream!r}")
        self.stream = stream
        self._read_fd: int | None = None
        self._write_fd: int | None = None

    def prepare(self, argv: list, kwargs: dict) -> list:
        if self.stream == "stdout":
            if kwargs.get("stdout") is not subprocess.PIPE:
                raise ValueError("a ready line on stdout needs stdout=subprocess.PIPE")
            return argv
        if READY_FD not in argv:
            raise ValueError("a ready line on its own pipe needs READY_FD in the argv")
        self._read_fd, self._write_fd = os.pipe()
        kwargs["pass_fds"] = (*kwargs.get("pass_fds", ()), self._write_fd)
        return [str(self._write_fd) if arg is READY_FD else arg for arg in argv]

    def spawned(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def wait(self, proc: subprocess.Popen, exited: int, deadline: float, name: str) -> str:
        fd = proc.stdout.fileno() if self.stream == "stdout" else self._read_fd
        line = bytearray()
        while True:
            left = deadline - time.monotonic()
            ready = select.select([fd, exited], [], [], max(left, 0))[0]
            if fd in ready:  # before the pidfd: a line written just before exiting still counts
                byte = os.read(fd, 1)
                if byte == b"\n":
                    return line.decode(errors="replace")
                if not byte:
                    raise _ended(proc, name, deadline, f"it closed its {self._what()} without a line")
                line += byte
                if len(line) > MAX_READY_LINE:
                    raise _ended(proc, name, deadline, f"its {self._what()} holds no line break in {len(line)} bytes")
            elif exited in ready:
                raise _ended(proc, name, deadline)
            elif left <= 0:
                raise NotReady(name, None, 0, f"no line on its {self._what()}")

    def _what(self) -> str:
        return "stdout" if self.stream == "stdout" else "ready pipe"

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self._read_fd = self._write_fd = None


class PortAccepts:
    """Ready when host:port accepts a TCP connection; the port is the value. A port has no event: polled."""

    def __init__(self, host: str, port: int, interval_s: float = 0.05) -> None:
        self.host, self.port, self.interval_s = host, port, interval_s

    def prepare(self, argv: list, kwargs: dict) -> list:
        return argv

    def spawned(self) -> None:
        pass

    def wait(self, proc: subprocess.Popen, exited: int, deadline: float, name: str) -> int:
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self.port
            except OSError:
                pass
            left = deadline - time.monotonic()
            if select.select([exited], [], [], max(0, min(self.interval_s, left)))[0]:
                raise _ended(proc, name, deadline)
            if left <= 0:
                raise NotReady(name, None, 0, f"nothing accepts on {self.host}:{self.port}")

    def close(self) -> None:
        pass


class ReadyWhen:
    """Ready when `check()` returns something other than None, which is the value; polled every `interval_s`."""

    def __init__(self, check: Callable[[], object], interval_s: float = 0.1) -> None:
        self.check, self.interval_s = check, interval_s

    def prepare(self, argv: list, kwargs: dict) -> list:
        return argv

    def spawned(self) -> None:
        pass

    def wait(self, proc: subprocess.Popen, exited: int, deadline: float, name: str):
        while True:
            # the child's end first: what it left behind may pass the check, yet it is not there to serve
            if select.select([exited], [], [], 0)[0]:
                raise _ended(proc, name, deadline)
            value = self.check()
            if value is not None:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotReady(name, None, 0)
            select.select([exited], [], [], min(self.interval_s, left))

    def close(self) -> None:
        pass


Ready = ReadyLine | PortAccepts | ReadyWhen


def _ended(proc: subprocess.Popen, name: str, deadline: float, detail: str = "") -> NotReady:
    """NotReady for a child that exited (or closed its ready stream), with its exit status once it has one."""
    try:
        code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        code = None
    return NotReady(name, code, 0, detail)


def wait_ready(proc: subprocess.Popen, ready: Ready, timeout_s: float, name: str = "the child") -> object:
    """What `ready` waits for, once the child gives it; the child is left as it is either way.

    Raises:
        NotReady: it exited first (`returncode` set) or timeout_s passed (`returncode` None).
    """
    deadline = time.monotonic() + timeout_s
    try:
        exited = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # reaped already
        proc.wait()
        raise NotReady(name, proc.returncode, timeout_s) from None
    try:
        return ready.wait(proc, exited, deadline, name)
    except NotReady as exc:  # said again with the timeout, which the sign does not know
        raise NotReady(name, exc.returncode, timeout_s, exc.detail) from None
    finally:
        os.close(exited)


class Child:
    """Owns one child process: `spawn`, `wait_ready`, `stop` (or `with Child(...) as child:`, which does all).

    `stop()` is idempotent: SIGTERM, a grace period, then SIGKILL. With `kill_tree`, a kill takes the
    whole tree below the child (a proxy that starts the action's processes); started as a group leader
    (`start_new_session=True`), its process group goes too.
    """

    def __init__(
        self,
        argv: list,
        *,
        name: str = "the child",
        ready: Ready | None = None,
        die_with_parent: bool = False,
        kill_tree: bool = False,
        **popen_kwargs,
    ) -> None:
        self.name = name
        self.ready = ready
        self.ready_value = None
        self.popen: subprocess.Popen | None = None
        self._argv = list(argv)
        self._die_with_parent = die_with_parent
        self._kill_tree = kill_tree
        self._kwargs = popen_kwargs

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def spawn(self) -> Child:
        """Starts it without waiting (so its owner can read its output meanwhile). Raises what Popen raises."""
        if self.popen is not None:
            raise ValueError(f"{self.name} was started already (pid {self.popen.pid})")
        kwargs = dict(self._kwargs)
        argv = self.ready.prepare(self._argv, kwargs) if self.ready else self._argv
        try:
            self.popen = popen(argv, die_with_parent=self._die_with_parent, **kwargs)
        except BaseException:
            if self.ready:
                self.ready.close()
            raise
        finally:
            if self.ready:
                self.ready.spawned()
        return self

    def wait_ready(self, timeout_s: float = 60.0):
        """The ready value (the line, the port, what the check returned); None without a readiness sign.

        Raises:
            NotReady: it exited first or did not get ready in time; it is killed before this is raised.
        """
        if self.ready is None:
            return None
        try:
            self.ready_value = wait_ready(self.popen, self.ready, timeout_s, self.name)
        except BaseException:
            self.kill()
            raise
        finally:
            self.ready.close()
        return self.ready_value

    def start(self, timeout_s: float = 60.0):
        """spawn, then wait_ready; returns the ready value. Raises NotReady (it is killed) or what Popen raises."""
        self.spawn()
        return self.wait_ready(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, up to timeout_s to exit, then SIGKILL; the exit status (None when it never started).

        Raises:
            subprocess.TimeoutExpired: it outlived SIGKILL by 10 s (stuck in the kernel).
        """
        if self.popen is None:
            return None
        return stop_process(self.popen, timeout_s, tree=self._kill_tree)

    def kill(self) -> int | None:
        """SIGKILL (to the whole tree with `kill_tree`), waiting until it is gone; never raises.

        Returns its exit status, or None when it never started or outlived SIGKILL by 10 s.
        """
        proc = self.popen
        if proc is None or proc.poll() is not None:
            return self.returncode
        if self._kill_tree:
            kill_tree(proc.pid)
        else:
            proc.kill()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> Child:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
