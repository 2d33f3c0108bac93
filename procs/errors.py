"""What goes wrong with a child process: it exits, or says nothing, before it is ready.

ProcsError
└── NotReady   (returncode: its exit status, or None when it still ran at the deadline)
"""

from __future__ import annotations


class ProcsError(Exception):
    """A child process did not start as asked."""


class NotReady(ProcsError):
    """The child exited, or gave no sign of readiness, before the deadline; `returncode` says which (None: in time)."""

    def __init__(self, name: str, returncode: int | None, timeout_s: float, detail: str = "") -> None:
        self.name = name
        self.returncode = returncode
        self.timeout_s = timeout_s
        self.detail = detail
        if returncode is None:
            what = f"{name} was not ready within {timeout_s:g} s"
        else:
            what = f"{name} exited with status {returncode} before it was ready"
        super().__init__(f"{what}{f' ({detail})' if detail else ''}")
