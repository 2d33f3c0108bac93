"""The coordinator's hand-off chain on a real S3 endpoint, with the worker and PS steps run in-process.

An action's deadline is the only thing these tests bend: each coordinator is started with
one already behind it, the worst case a too-short action limit gives.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from mlcore import dist_data
from mlcore.dist_coordinator import Coordinator, read_metrics
from mlcore.dist_job import JobConfig, JobLayout
from mlcore.dist_steps import create_job, ps_step, worker_step

torch.set_num_threads(1)


class InProcessInvoker:
    """Runs `worker` and `ps` as the actions would, returning activation-shaped records.

    One at a time: the steps keep one model per process, as a warm container does.
    """

    def __init__(self, storage, config: JobConfig) -> None:
        self.storage, self.config = storage, config
        self.lock = threading.Lock()

    def invoke(self, action: str, params: dict, timeout_s: float | None = None) -> dict:
        with self.lock:
            return self._invoke(action, params)

    def _invoke(self, action: str, params: dict) -> dict:
        started = time.perf_counter()
        if action == "worker":
            result = worker_step(self.storage, self.config, params["step"], params["worker"])
        else:
            result = ps_step(self.storage, self.config, params["step"], params["workers"])
        duration_ms = int((time.perf_counter() - started) * 1000)
        return {"response": {"result": result}, "duration": duration_ms,
                "annotations": [{"key": "limits", "value": {"memory": 512}}]}


@pytest.fixture
def job(storage, mnist_root):
    dist_data.upload_mnist(storage, mnist_root)
    config = JobConfig(job="chain", workers=2, epochs=1, batch_size=64, train_limit=512, test_limit=300, lr=0.05)
    create_job(storage, config)
    return storage, config


def test_a_deadline_shorter_than_the_margin_still_moves_one_step_per_coordinator(job):
    # Prepare
    storage, config = job
    successors: list[str] = []

    def coordinator(index: int) -> Coordinator:
        return Coordinator(storage, InProcessInvoker(storage, config), config, worker_action="worker",
                           ps_action="ps", owner=f"c{index}", deadline_ms=int(time.time() * 1000),
                           handoff=lambda: successors.append(f"c{index + 1}") or f"c{index + 1}", log=lambda _: None)

    # Execute: each hand-off starts the next coordinator, as the action's self-invocation would
    outcomes = []
    for index in range(20):
        outcomes.append(coordinator(index).run())
        if outcomes[-1]["state"] == "done":
            break
    # Assert: 8 steps, one per coordinator, each step once, and the job finished
    assert [o["state"] for o in outcomes] == ["continued"] * 7 + ["done"]
    assert [o["step"] for o in outcomes] == list(range(1, 9))
    events = read_metrics(storage, config.job)
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(8))
    assert [e["owner"] for e in events if e["event"] == "start"] == [f"c{i}" for i in range(8)]
    assert storage.exists(JobLayout(config.job).final)


def test_a_superseded_coordinator_stops_instead_of_racing_its_successor(job):
    # Prepare: while c0 runs step 2, a successor c1 takes the job over (writes the status)
    storage, config = job

    class TakeoverInvoker(InProcessInvoker):
        def invoke(self, action, params, timeout_s=None):
            if action == "ps" and params["step"] == 2:
                storage.put_json(JobLayout(config.job).status, {"owner": "c1", "state": "running", "step": 2})
            return super().invoke(action, params, timeout_s)

    old = Coordinator(storage, TakeoverInvoker(storage, config), config, worker_action="worker", ps_action="ps",
                      owner="c0", log=lambda _: None)
    # Execute
    outcome = old.run()
    # Assert: step 2 finished (it was in flight), nothing after it
    assert outcome == {"state": "superseded", "step": 3}
    assert [e["step"] for e in read_metrics(storage, config.job) if e["event"] == "step"] == [0, 1, 2]


def test_every_straggler_is_billed_before_the_job_reads_done(job):
    # Prepare: worker 1 of the last step stalls until the job is marked done or its own
    # limit ends it, as an OpenWhisk timeout would; the quorum leaves it out
    storage, config = job
    config = JobConfig.from_dict({**config.as_dict(), "quorum": 1, "straggler_wait_s": 0.5, "worker_timeout_s": 3.0})
    layout = JobLayout(config.job)
    last = config.total_steps(config.train_limit) - 1
    released = threading.Event()
    seen_at_done: list[dict] = []

    class StatusWatch:
        """The real storage; a "done" status write releases the straggler and snapshots the metrics."""

        def __getattr__(self, name):
            return getattr(storage, name)

        def put_json(self, key, value):
            if key == layout.status and value.get("state") == "done":
                seen_at_done.extend(read_metrics(storage, config.job))
                released.set()
            return storage.put_json(key, value)

    class StallingInvoker(InProcessInvoker):
        def invoke(self, action, params, timeout_s=None):
            if action == "worker" and params["step"] == last and params["worker"] == 1:
                started = time.perf_counter()
                released.wait(timeout=config.worker_timeout_s)
                return {"response": {"result": {}}, "duration": int((time.perf_counter() - started) * 1000),
                        "annotations": [{"key": "limits", "value": {"memory": 512}}]}
            return super().invoke(action, params, timeout_s)

    coordinator = Coordinator(StatusWatch(), StallingInvoker(storage, config), config, worker_action="worker",
                              ps_action="ps", owner="c0", log=lambda _: None)
    # Execute
    outcome = coordinator.run()
    # Assert: when the status said "done", every left-out worker had its bill in the metrics, done last
    assert outcome["state"] == "done"
    steps = [e for e in seen_at_done if e["event"] == "step"]
    left_out = sorted((s["step"], w) for s in steps for w in s["left_out"])
    assert (last, 1) in left_out
    late = [e for e in seen_at_done if e["event"] == "late"]
    assert sorted((e["step"], e["worker"]) for e in late) == left_out
    assert all(e["ok"] and e["gb_s"] > 0 for e in late), late
    assert seen_at_done[-1]["event"] == "done"
    assert read_metrics(storage, config.job) == seen_at_done


def test_a_successor_started_at_once_never_erases_its_predecessors_last_events(job):
    # Prepare: c0 hands off after 4 steps and its successor c1 starts right away in another
    # thread, as an asynchronous invoke does; c0's hand-off returns only once c1 is running
    storage, config = job
    config = JobConfig.from_dict({**config.as_dict(), "steps_per_run": 4})
    layout = JobLayout(config.job)
    c1_running = threading.Event()

    class Watched:
        """The real storage; c1's first look at the job (status or metrics) tells the test it runs."""

        def __getattr__(self, name):
            return getattr(storage, name)

        def get_json(self, key):
            c1_running.set()
            return storage.get_json(key)

        def get_bytes(self, key):
            c1_running.set()
            return storage.get_bytes(key)

    def successor(owner: str, predecessor: str) -> Coordinator:
        return Coordinator(Watched(), InProcessInvoker(storage, config), config, worker_action="worker",
                           ps_action="ps", owner=owner, log=lambda _: None, predecessor=predecessor)

    outcomes = {}

    def handoff() -> str:
        thread = threading.Thread(target=lambda: outcomes.setdefault("c1", successor("c1", "c0").run()))
        thread.start()
        outcomes["thread"] = thread
        assert c1_running.wait(60), "the successor did not start"
        return "c1"

    c0 = Coordinator(storage, InProcessInvoker(storage, config), config, worker_action="worker", ps_action="ps",
                     owner="c0", handoff=handoff, log=lambda _: None)
    # Execute
    outcomes["c0"] = c0.run()
    outcomes["thread"].join(120)
    # Assert: both coordinators' events are all there, in order
    assert outcomes["c0"]["state"] == "continued" and outcomes["c1"]["state"] == "done"
    events = [e["event"] for e in read_metrics(storage, config.job) if e["event"] in ("start", "handoff",
                                                                                       "handed_off", "done")]
    assert events == ["start", "handoff", "handed_off", "start", "done"]
    assert [e["step"] for e in read_metrics(storage, config.job) if e["event"] == "step"] == list(range(8))
    assert storage.get_json(layout.status)["owner"] == "c1"
