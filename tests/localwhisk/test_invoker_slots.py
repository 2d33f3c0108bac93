"""A failure anywhere after the invoker took a slot is the activation's error, and the slot comes back.

The containers here fail on cue where a real one could (start, /init, /run, reading the logs), raising what no
part of the invoker expects; the invoker itself is the real one, with a single slot, so one slot leaked shows
as the next activation waiting for a container that never frees.
"""

from __future__ import annotations

import pytest

from localwhisk.invoker.container import InvalidAnswer
from localwhisk.invoker.pool import DEVELOPER_ERROR, SUCCESS, Invoker
from runtimes import contract

LIMITS = {"timeout": 5000, "memory": 256, "logs": 1, "concurrency": 1}
INIT = {"name": "a", "code": "def main(a):\n    return a\n", "env": {}}


class FailingContainer:
    """Raises `error` from the method named `where`; otherwise answers at once."""

    def __init__(self, key, where: str | None, error: BaseException | None) -> None:
        self.key, self.where, self.error = key, where, error
        self.busy, self.last_used, self.stem = False, 0.0, None
        self.env_signature, self.requested_image, self.answer_bytes = frozenset(), None, 2
        self.killed = False

    def _maybe_fail(self, where: str) -> None:
        if self.where == where:
            raise self.error

    def start(self) -> None:
        self._maybe_fail("start")

    def alive(self) -> bool:
        return not self.killed

    def init(self, value: dict, timeout_s: float):
        self._maybe_fail("init")
        return contract.OK, {"ok": True}, []

    def run(self, message: dict, timeout_s: float):
        self._maybe_fail("run")
        return contract.OK, {"fine": True}

    def take_logs(self, wait_s: float = 2.0) -> list[str]:
        self._maybe_fail("take_logs")
        return []

    def kill(self) -> None:
        self.killed = True


def _invoker(failures: list) -> tuple[Invoker, list[FailingContainer]]:
    """Each new container fails as the next entry of `failures` says ((where, error), or None for never)."""
    made: list[FailingContainer] = []

    def factory(key, **_settings):
        where, error = failures.pop(0) if failures else (None, None)
        made.append(FailingContainer(key, where, error))
        return made[-1]

    return Invoker(max_containers=1, container_factory=factory), made


def _used_slots(invoker: Invoker) -> int:
    with invoker._cond:
        return invoker._used_slots()


@pytest.mark.parametrize("where", ["start", "init", "run", "take_logs"])
@pytest.mark.parametrize(
    "error",
    [RecursionError("maximum recursion depth exceeded"), KeyError("x"), ValueError("bad"), InvalidAnswer("odd")],
    ids=type,
)
def test_a_failure_anywhere_after_the_slot_is_taken_is_an_activation_error_and_frees_it(where, error):
    # Prepare
    invoker, made = _invoker([(where, error)])
    try:
        # Execute
        failed = invoker.run("a", INIT, {"value": {}}, LIMITS)
        # Assert
        assert failed.status_code == DEVELOPER_ERROR and failed.result["error"]
        assert invoker.stats()["busy"] == 0 and _used_slots(invoker) <= 1
        assert made[0].killed and invoker.stats()["containers"] == 0
        made[0].where = None
        # the only slot serves the next activation now: queue=False raises WouldQueue where it is still held
        assert invoker.run("a", INIT, {"value": {}}, LIMITS, queue=False).status_code == SUCCESS
        assert invoker.stats()["busy"] == 0
    finally:
        invoker.shutdown()


def test_a_warm_container_that_fails_is_retired_and_its_slot_freed():
    # Prepare
    invoker, made = _invoker([])
    try:
        assert invoker.run("a", INIT, {"value": {}}, LIMITS).status_code == SUCCESS
        made[0].where, made[0].error = "run", RecursionError("deep")
        # Execute
        failed = invoker.run("a", INIT, {"value": {}}, LIMITS)
        # Assert
        assert failed.status_code == DEVELOPER_ERROR and "RecursionError" in failed.result["error"]
        stats = invoker.stats()
        assert made[0].killed and stats["busy"] == 0 and stats["containers"] == 0
        assert invoker.run("a", INIT, {"value": {}}, LIMITS, queue=False).status_code == SUCCESS
    finally:
        invoker.shutdown()
