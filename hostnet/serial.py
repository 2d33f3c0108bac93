"""The guest's serial console as a control channel.

hostnet listens on a unix socket and QEMU connects to it (server=off), so no boot
output is missed. A reader thread drains the socket into a buffer, which keeps the
guest's UART from stalling; commands are framed with a unique end marker that
carries their exit status.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from hostnet.errors import VMError


class SerialConsole:
    """Listening end of a guest serial port, with wait_for() and run()."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path.unlink(missing_ok=True)
        self._listener.bind(str(self.path))
        self._listener.listen(1)
        self._conn: socket.socket | None = None
        self._buffer = ""
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._closed = False

    def accept(self, timeout_s: float, alive: Callable[[], bool]) -> None:
        """Wait for QEMU to connect, giving up early when `alive()` turns false.

        Raises:
            VMError: QEMU exited or did not connect within timeout_s.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._listener], [], [], 0.2)
            if ready:
                self._conn, _ = self._listener.accept()
                self._reader = threading.Thread(target=self._read_loop, daemon=True, name=f"serial-{self.path.name}")
                self._reader.start()
                return
            if not alive():
                raise VMError(f"QEMU exited before connecting to serial socket {self.path}")
        raise VMError(f"QEMU did not connect to serial socket {self.path} in {timeout_s}s")

    def _read_loop(self) -> None:
        while not self._closed:
            try:
                data = self._conn.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._closed = True
                else:
                    self._buffer += data.decode(errors="replace").replace("\r", "")
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._buffer

    def wait_for(self, pattern: str, timeout_s: float, start: int = 0) -> re.Match:
        """Wait until `pattern` appears in the output after offset `start`.

        Raises:
            VMError: timeout, or the console closed first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                match = regex.search(self._buffer, start)
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise VMError(
                        f"no {pattern!r} on serial {self.path} within {timeout_s}s; "
                        f"last output: {self._buffer[-600:]!r}"
                    )
                if self._closed:
                    raise VMError(
                        f"serial {self.path} closed while waiting for {pattern!r}; last output: {self._buffer[-600:]!r}"
                    )
                self._cond.wait(min(remaining, 1.0))

    def send(self, text: str) -> None:
        if self._conn is None:
            raise VMError(f"serial {self.path} is not connected")
        try:
            self._conn.sendall(text.encode())
        except OSError as exc:
            raise VMError(f"writing to serial {self.path} failed: {exc}") from exc

    def run(self, command: str, timeout_s: float = 60) -> tuple[int, str]:
        """Run a shell command in the guest; return (exit status, output)."""
        token = uuid.uuid4().hex[:10]
        start = len(self.text)
        self.send(f'{{ {command}\n}} 2>&1; echo "@@{token}:$?@@"\n')
        try:
            match = self.wait_for(rf"@@{token}:(\d+)@@", timeout_s, start)
        except VMError as exc:
            raise VMError(f"guest command {command!r} did not finish in {timeout_s}s: {exc}") from exc
        with self._cond:
            output = self._buffer[start : match.start()]
        return int(match.group(1)), output.strip("\n")

    def close(self) -> None:
        self._closed = True
        for sock in (self._conn, self._listener):
            if sock is not None:
                try:
                    if sock is self._conn:
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv()
                    sock.close()
                except OSError:
                    pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.path.unlink(missing_ok=True)
