"""The coordinator on a real S3 endpoint, with workers run in threads by an invoker shaped like OpenWhisk's.

The invoker keeps OpenWhisk's contract that matters here: a non-blocking invoke returns an
activation id at once, and the activation has a record only once it has ended.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import torch

from mlcore.storage import Storage
from mlcore.training import data
from mlcore.training.coordinator import Coordinator, create_job, read_metrics
from mlcore.training.job import PS, JobConfig, JobLayout, TrainingError
from mlcore.training.ps import ParameterServer
from mlcore.training.report import summarise
from mlcore.training.state import read_state
from mlcore.training.worker import Worker

torch.set_num_threads(1)
SMALL = dict(
    workers=2,
    epochs=1,
    batch_size=64,
    lr=0.1,
    train_limit=1024,
    test_limit=500,
    eval_every=8,
    mode="sync",
    precision="fp32",
    compress="none",
)


class ThreadInvoker:
    """Runs each worker activation in a thread; `fail` names activations (by number) that crash at once."""

    def __init__(self, storage, config: JobConfig, fail: set[int] = frozenset()) -> None:
        self.storage, self.config, self.fail = storage, config, fail
        self.records: dict[str, dict] = {}
        self.threads: list[threading.Thread] = []
        self.invoked: list[dict] = []
        self._ids = itertools.count()

    def invoke(self, action: str, params: dict, blocking: bool = True, timeout_s: float | None = None) -> dict:
        number = next(self._ids)
        activation = f"act-{number}"
        self.invoked.append({"activation": activation, **params})

        def run() -> None:
            started = time.time()
            try:
                if number in self.fail:
                    raise RuntimeError("The action did not initialize or run: it exited unexpectedly")
                storage = Storage(self.storage.config)
                if "worker" in params:
                    result = Worker(storage, self.config, params["worker"], owner=activation).run()
                else:
                    result = ParameterServer(storage, self.config, owner=activation).run()
                success = True
            except Exception as exc:
                result, success = {"error": str(exc)}, False
            self.records[activation] = {
                "response": {
                    "success": success,
                    "result": result,
                    "status": "success" if success else "action developer error",
                },
                "duration": int((time.time() - started) * 1000),
                "annotations": [{"key": "limits", "value": {"memory": 1024}}],
            }

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()
        return {"activationId": activation}

    def find_activation(self, activation_id: str) -> dict | None:
        return self.records.get(activation_id)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(300)


@pytest.fixture
def job(storage, mnist_root):
    data.upload_mnist(storage, mnist_root)
    return storage


def coordinator(storage, invoker, config, owner="coord", **kwargs) -> Coordinator:
    return Coordinator(
        storage, invoker, config, worker_action="worker", owner=owner, log=lambda _: None, poll_s=0.05, **kwargs
    )


def test_a_job_runs_to_its_end_with_evaluations_and_a_final_model(job):
    # Prepare
    config = JobConfig(job="plain", **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config)
    # Execute
    result = coordinator(job, invoker, config).run()
    invoker.join()
    # Assert
    assert result["state"] == "done" and result["batch"] == 16
    events = read_metrics(job, "plain")
    assert [e["batch"] for e in events if e["event"] == "eval"] == [8, 16]
    assert [e["reason"] for e in events if e["event"] == "launched"] == ["new", "new"]
    assert job.exists(JobLayout("plain").final)
    summary = summarise(job, "plain")
    assert summary["workers"]["totals"]["rounds"] == 32 and summary["gb_s_workers"] > 0
    assert 0 < summary["workers"]["communication_fraction"] < 1
    assert summary["evaluations"][-1]["seconds"] > 0


def test_a_crashed_worker_is_replaced_and_a_worker_that_keeps_crashing_fails_the_job(job):
    # Prepare: activation 1 (worker 1's first) crashes; the replacement finishes the job
    config = JobConfig(job="replaced", **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config, fail={1})
    # Execute
    result = coordinator(job, invoker, config).run()
    invoker.join()
    # Assert
    events = read_metrics(job, "replaced")
    failed = [e for e in events if e["event"] == "worker_failed"]
    assert result["state"] == "done" and len(failed) == 1 and failed[0]["worker"] == 1
    assert "exited unexpectedly" in failed[0]["error"]
    assert [e["reason"] for e in events if e["event"] == "launched"] == ["new", "new", "replace"]
    # every attempt of worker 1 crashes: retries (1) exhausted -> the job fails, saying why
    config = JobConfig(job="doomed", retries=1, **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config, fail={1, 2, 3})
    with pytest.raises(TrainingError, match="worker 1 failed 2 times; last: .*exited unexpectedly"):
        coordinator(job, invoker, config).run()
    assert job.get_json(JobLayout("doomed").status)["state"] == "failed"
    job.put_json(JobLayout("doomed").worker_info(0), {"owner": "stop"})  # release worker 0 from waiting
    invoker.join()


def test_a_coordinator_at_its_deadline_hands_off_and_its_successor_adopts_the_running_workers(job):
    # Prepare
    config = JobConfig(job="chain", **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config)
    handed: list[str] = []
    first = coordinator(
        job,
        invoker,
        config,
        owner="first",
        deadline_ms=int(time.time() * 1000),
        handoff=lambda: handed.append("second") or "second",
    )
    # Execute
    assert first.run() == {"state": "continued", "successor": "second"}
    second = coordinator(job, invoker, config, owner="second", predecessor="first").run()
    invoker.join()
    # Assert: no worker was started twice; the successor watched the same activations
    events = read_metrics(job, "chain")
    launched = [(e["reason"], e["activation"]) for e in events if e["event"] == "launched"]
    assert launched == [("new", "act-0"), ("new", "act-1"), ("adopted", "act-0"), ("adopted", "act-1")]
    assert second["state"] == "done" and len(invoker.invoked) == 2
    assert [e["event"] for e in events if e["event"] in ("start", "handed_off", "done")] == [
        "start",
        "handed_off",
        "start",
        "done",
    ]


def test_a_damaged_newest_checkpoint_is_named_and_the_resumed_job_replays_past_it_to_the_same_model(job):
    # Prepare: a finished job whose newest checkpoint (the final model) is then damaged in storage
    config = JobConfig(job="damaged", **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config)
    assert coordinator(job, invoker, config).run()["state"] == "done"
    invoker.join()
    layout = JobLayout("damaged")
    newest = layout.checkpoint(job.get_json(layout.checkpoint_pointer)["round"])
    _, model, _ = read_state(job, newest)
    blob = bytearray(job.get_bytes(newest))
    blob[len(blob) // 2] ^= 0x80  # inside the weights
    job.put_bytes(newest, bytes(blob))
    # Execute: the coordinator `deployer train --resume` starts
    again = ThreadInvoker(job, config)
    result = coordinator(job, again, config, owner="resumed").run()
    again.join()
    # Assert: named and refused; the workers replayed from the checkpoint before it to the same model
    events = read_metrics(job, "damaged")
    refused = [e for e in events if e["event"] == "checkpoint_refused"]
    assert result["state"] == "done" and [e["key"] for e in refused] == [newest]
    assert f"{newest} is damaged: its bytes do not match its sha256" in refused[0]["error"]
    assert [e["reason"] for e in events if e["event"] == "launched"] == ["new", "new", "replay", "replay"]
    assert torch.equal(read_state(job, newest)[1], model)


def final_model(storage, config: JobConfig) -> torch.Tensor:
    layout = JobLayout(config.job)
    return read_state(storage, layout.checkpoint(storage.get_json(layout.checkpoint_pointer)["round"]))[1]


def test_a_ps_job_runs_its_parameter_server_as_one_more_slot_and_reports_it(job):
    # Prepare
    config = JobConfig(job="with-ps", topology="ps", **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config)
    # Execute
    result = coordinator(job, invoker, config).run()
    invoker.join()
    # Assert: the PS and two workers launched and billed; the report counts the PS's time and requests
    assert result["state"] == "done" and result["batch"] == 16
    events = read_metrics(job, config.job)
    assert [e.get("worker") for e in events if e["event"] == "launched"] == [PS, 0, 1]
    assert invoker.invoked[0] == {"activation": "act-0", "job": config.job}
    summary = summarise(job, config.job)
    assert summary["gb_s_ps"] > 0 and summary["gb_s_workers"] > 0 and summary["activation_s_ps"] > 0
    assert summary["ps"]["rounds"] == 16 and summary["ps"]["requests"] >= 16 * 3
    per_step = summary["per_step"]
    assert per_step["steps"] == 16 and per_step["rounds"] == 16
    assert per_step["requests"] >= 2 * 2 + 3 and per_step["bytes"] > 0


def test_a_crashed_ps_is_replaced_and_the_job_ends_with_the_model_of_allreduce(job):
    # Prepare: activation 0 (the PS's first) crashes at once; the workers wait for its replacement
    reference = JobConfig(job="reference", **SMALL)
    create_job(job, reference)
    invoker = ThreadInvoker(job, reference)
    coordinator(job, invoker, reference).run()
    invoker.join()
    config = JobConfig(job="ps-crash", topology="ps", **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config, fail={0})
    # Execute
    result = coordinator(job, invoker, config).run()
    invoker.join()
    # Assert
    events = read_metrics(job, config.job)
    failed = [e for e in events if e["event"] == "worker_failed"]
    assert result["state"] == "done" and [e["worker"] for e in failed] == [PS]
    assert [(e["worker"], e["reason"]) for e in events if e["event"] == "launched"][-1] == (PS, "replace")
    assert torch.equal(final_model(job, config), final_model(job, reference))


class CoordinatorKilled(BaseException):
    """Ends a coordinator where it stands, as SIGKILL would: no except clause of its own catches it."""


class KillingInvoker:
    """The coordinator's view of OpenWhisk, which kills the coordinator once `key` exists in storage."""

    def __init__(self, invoker: ThreadInvoker, storage, key: str) -> None:
        self.invoker, self.storage, self.key = invoker, storage, key

    def invoke(self, *args, **kwargs) -> dict:
        return self.invoker.invoke(*args, **kwargs)

    def find_activation(self, activation_id: str) -> dict | None:
        if self.storage.exists(self.key):
            raise CoordinatorKilled(self.key)
        return self.invoker.find_activation(activation_id)


@pytest.mark.parametrize("topology", ["allreduce", "scatter", "ps"])
def test_a_killed_coordinator_is_resumed_and_adopts_every_slot_to_the_same_model(job, topology):
    # Prepare
    reference = JobConfig(job=f"{topology}-reference", topology=topology, **SMALL)
    create_job(job, reference)
    invoker = ThreadInvoker(job, reference)
    coordinator(job, invoker, reference).run()
    invoker.join()
    config = JobConfig(job=f"{topology}-orphaned", topology=topology, **SMALL)
    create_job(job, config)
    invoker = ThreadInvoker(job, config)
    layout = JobLayout(config.job)
    # Execute: the first coordinator dies once the checkpoint of round 8 exists; `deployer train` resumes the job
    with pytest.raises(CoordinatorKilled):
        coordinator(job, KillingInvoker(invoker, job, layout.checkpoint(8)), config, owner="killed").run()
    result = coordinator(job, invoker, config, owner="resumed").run()
    invoker.join()
    # Assert: nothing started twice; every slot adopted; the uninterrupted job's model
    slots = config.workers + (topology == "ps")
    launched = [e["reason"] for e in read_metrics(job, config.job) if e["event"] == "launched"]
    assert result["state"] == "done" and len(invoker.invoked) == slots
    assert launched == ["new"] * slots + ["adopted"] * slots
    assert torch.equal(final_model(job, config), final_model(job, reference))
