"""The invoker kills containers outside its lock: a kill can wait 10 s, and nothing else may wait with it."""

from __future__ import annotations

import threading

from localwhisk.invoker.pool import DEVELOPER_ERROR, SUCCESS, Invoker
from runtimes import contract

LIMITS = {"timeout": 30000, "memory": 256, "logs": 1, "concurrency": 1}
INIT = {"name": "a", "code": "def main(a):\n    return a\n", "env": {}}


class FakeContainer:
    """Answers at once; its kill records whether another thread could take the invoker's lock meanwhile."""

    def __init__(self, invoker_of, key, run_status: int) -> None:
        self._invoker_of = invoker_of
        self.key = key
        self.run_status = run_status
        self.busy = False
        self.last_used = 0.0
        self.stem = None
        self.env_signature = frozenset()
        self.requested_image = None
        self.answer_finite = True
        self.answer_bytes = 2
        self.killed = threading.Event()
        self.lock_free_during_kill: bool | None = None

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return not self.killed.is_set()

    def init(self, value: dict, timeout_s: float):
        return contract.OK, {"OK": True}, []

    def run(self, message: dict, timeout_s: float):
        return self.run_status, {} if self.run_status == contract.OK else {"error": "broken"}

    def take_logs(self, wait_s: float = 2.0) -> list[str]:
        return []

    def kill(self) -> None:
        if self.killed.is_set():
            return
        taken = threading.Event()

        def take_lock() -> None:
            with self._invoker_of()._cond:
                taken.set()

        threading.Thread(target=take_lock, daemon=True).start()
        self.lock_free_during_kill = taken.wait(30)
        self.killed.set()


def make_invoker(run_status: int = contract.OK, **kwargs) -> tuple[Invoker, list[FakeContainer]]:
    made: list[FakeContainer] = []
    invoker = None

    def factory(key, **_settings):
        made.append(FakeContainer(lambda: invoker, key, run_status))
        return made[-1]

    invoker = Invoker(**{"max_containers": 12, **kwargs}, container_factory=factory)
    return invoker, made


def test_an_evicted_container_is_killed_outside_the_lock():
    # Prepare
    invoker, made = make_invoker(max_containers=1)
    try:
        assert invoker.run("a", INIT, {"value": {}}, LIMITS).status_code == SUCCESS
        # Execute
        out = invoker.run("b", INIT, {"value": {}}, LIMITS)  # the only slot holds a's idle container
        # Assert
        assert out.status_code == SUCCESS
        assert made[0].killed.is_set() and made[0].lock_free_during_kill is True
    finally:
        invoker.shutdown()


def test_a_broken_container_is_killed_outside_the_lock():
    # Prepare
    invoker, made = make_invoker(run_status=contract.BAD_GATEWAY)
    try:
        # Execute
        out = invoker.run("a", INIT, {"value": {}}, LIMITS)
        # Assert
        assert out.status_code == DEVELOPER_ERROR
        assert made[0].killed.is_set() and made[0].lock_free_during_kill is True
        assert invoker.stats()["containers"] == 0
    finally:
        invoker.shutdown()


def test_an_idle_container_is_reaped_outside_the_lock():
    # Prepare
    invoker, made = make_invoker(idle_timeout_s=0.01)
    try:
        # Execute
        assert invoker.run("a", INIT, {"value": {}}, LIMITS).status_code == SUCCESS
        # Assert
        assert made[0].killed.wait(60), "the reaper did not kill the idle container"
        assert made[0].lock_free_during_kill is True
    finally:
        invoker.shutdown()


def test_shutdown_kills_every_container_outside_the_lock():
    # Prepare
    invoker, made = make_invoker()
    invoker.run("a", INIT, {"value": {}}, LIMITS)
    # Execute
    invoker.shutdown()
    # Assert
    assert made[0].killed.is_set() and made[0].lock_free_during_kill is True
