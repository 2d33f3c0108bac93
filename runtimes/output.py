"""The action's stdout and stderr on their way to the proxy's own, so that each activation's log sentinel
lands on a line of its own.

The platform (as OpenWhisk's invoker) reads a container's output line by line and ends an activation's logs
at the sentinel line on each stream. An action whose last write had no newline (`print(..., end="")`,
`sys.stdout.write`, a subprocess, a C library) would glue the sentinel to its partial line, and the platform
would wait for a sentinel that never comes. The launcher writes into pipes that this relay copies, so it
knows the last byte each stream carried and starts the sentinel on a new line only when one is needed.
"""

from __future__ import annotations

import os
import select
import selectors
import threading

from . import contract

_CHUNK = 1 << 16
_SENTINEL = contract.SENTINEL.encode() + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError:
            return  # the platform stopped reading: nothing is left to keep the output for


class OutputRelay:
    """Copies pipes to the proxy's stdout and stderr in a thread; `end_activation()` writes the sentinels."""

    def __init__(self, destinations: dict[str, int] | None = None) -> None:
        self._dest = destinations or {"stdout": 1, "stderr": 2}
        self._line_open = dict.fromkeys(self._dest, False)  # whether a stream's last byte was not a newline
        self._sources: dict[int, str] = {}  # read end -> the stream it feeds
        self._pending: list[int] = []  # attached, not yet watched by the pump
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        threading.Thread(target=self._pump, name="output-relay", daemon=True).start()

    def attach(self, stdout_fd: int, stderr_fd: int) -> None:
        """Relays these read ends (a new launcher's pipes) until their writers close them; the relay owns them."""
        with self._lock:
            for fd, stream in ((stdout_fd, "stdout"), (stderr_fd, "stderr")):
                os.set_blocking(fd, False)
                self._sources[fd] = stream
                self._pending.append(fd)
        os.write(self._wake_w, b"\0")

    def end_activation(self) -> None:
        """Copies what the action has written so far, then a sentinel on each stream, on a line of its own.

        The launcher flushes its streams before it answers, so once the answer is in, all of this
        activation's output is in the pipes.
        """
        with self._lock:
            for fd in list(self._sources):
                while self._copy(fd) > 0:
                    pass
            for stream, fd in self._dest.items():
                _write_all(fd, (b"\n" if self._line_open[stream] else b"") + _SENTINEL)
                self._line_open[stream] = False

    def _copy(self, fd: int) -> int:
        """Under the lock: one read of `fd` copied on. The bytes copied; 0 at end of file; -1 when none are there."""
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return -1
        except OSError:
            return 0
        if chunk:
            stream = self._sources[fd]
            _write_all(self._dest[stream], chunk)
            self._line_open[stream] = not chunk.endswith(b"\n")
        return len(chunk)

    def _pump(self) -> None:
        """The only thread that watches and closes the read ends (so a closed fd's number is never watched)."""
        while True:
            for key, _ in self._selector.select():
                fd = key.fd
                if fd == self._wake_r:
                    try:
                        os.read(fd, _CHUNK)
                    except BlockingIOError:
                        pass
                    with self._lock:
                        pending, self._pending = self._pending, []
                    for new in pending:
                        self._selector.register(new, selectors.EVENT_READ)
                    continue
                with self._lock:
                    if self._copy(fd) != 0:
                        continue
                    del self._sources[fd]
                self._selector.unregister(fd)
                os.close(fd)


_shared: OutputRelay | None = None
_shared_lock = threading.Lock()


def shared() -> OutputRelay:
    """The process's one relay to its own stdout and stderr (every launcher it starts writes through it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = OutputRelay()
        return _shared
