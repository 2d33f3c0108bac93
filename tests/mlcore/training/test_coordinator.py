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
from mlcore.training.job import JobConfig, JobLayout, TrainingError
from mlcore.training.report import summarise
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
                result = Worker(Storage(self.storage.config), self.config, params["worker"], owner=activation).run()
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
    from mlcore.training.state import read_state

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
