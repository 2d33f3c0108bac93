"""Long-lived workers on a real S3 endpoint, run in-process (threads) or as processes that get killed.

The claims are about results: every worker ends with the same model; in sync mode a
replaced, killed or handed-off worker rejoins with exactly the model it would have had,
so the job's final checkpoint is the uninterrupted job's.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
import torch

from mlcore.errors import DamagedError
from mlcore.storage import Storage
from mlcore.training import data
from mlcore.training.coordinator import create_job
from mlcore.training.job import JobConfig, JobLayout, TrainingError
from mlcore.training.state import split_state
from mlcore.training.worker import Worker

SMALL = dict(
    workers=2,
    epochs=1,
    batch_size=64,
    lr=0.1,
    train_limit=1024,
    test_limit=500,
    eval_every=4,
    precision="fp32",
    compress="none",
    data="s3",
    worker_timeout_s=120.0,
)
DEADLINE_S = 300.0  # tells a hung job from a slow one on a loaded 2-core machine


@pytest.fixture
def job_storage(storage, mnist_root):
    data.upload_mnist(storage, mnist_root)
    return storage


def run_workers(storage, config: JobConfig, workers=None, make=None) -> dict[int, dict]:
    """Runs the workers in threads to their end; returns each one's result."""
    results, errors = {}, []
    make = make or (lambda w: Worker(Storage(storage.config), config, w, owner=f"{config.job}-w{w}"))

    def run(w: int) -> None:
        try:
            results[w] = make(w).run()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in (workers or range(config.workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    if errors:
        raise errors[0]
    return results


def final_vector(storage, config: JobConfig) -> torch.Tensor:
    layout = JobLayout(config.job)
    pointer = storage.get_json(layout.checkpoint_pointer)
    _, vector, _ = split_state(storage.get_bytes(layout.checkpoint(pointer["round"])))
    return vector


def uninterrupted(storage, **settings) -> torch.Tensor:
    config = JobConfig(job="reference", **{**SMALL, **settings})
    create_job(storage, config)
    run_workers(storage, config)
    return final_vector(storage, config)


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.02)


def _work_in_process(config: dict, storage_config, worker: int, owner: str) -> None:
    torch.set_num_threads(1)
    Worker(Storage(storage_config), JobConfig.from_dict(config), worker, owner=owner).run()


def test_both_sync_workers_end_with_one_model_that_learned(job_storage):
    # Prepare
    config = JobConfig(job="sync", mode="sync", **{k: v for k, v in SMALL.items()})
    create_job(job_storage, config)
    # Execute
    results = run_workers(job_storage, config)
    # Assert: 16 rounds of one step each; checkpoints every 4 batches; only the last two kept
    assert [results[w]["rounds"] for w in (0, 1)] == [16, 16] and results[0]["batch"] == 16
    layout = JobLayout("sync")
    assert [layout.round_of(k) for k in job_storage.list_keys(layout.prefix + "checkpoints/")] == [0, 4, 8, 12, 16]
    assert min(layout.round_of(k) for k in job_storage.list_keys(layout.prefix + "updates/")) == 12
    assert all(results[w]["compute_s"] > 0 and results[w]["bytes_in"] > 0 for w in (0, 1))
    from mlcore.compute import evaluate
    from mlcore.training.trainer import model_from_vector

    images, labels = data.test_set(config, job_storage)
    model = model_from_vector(final_vector(job_storage, config))
    assert evaluate(model, images, labels)["accuracy"] > 0.3  # from 0.1 in 16 steps


def test_a_killed_sync_worker_is_replaced_and_the_job_ends_as_if_nothing_happened(job_storage):
    # Prepare: the reference run, then the same job with worker 1 as a process killed mid-job
    expected = uninterrupted(job_storage, mode="sync")
    config = JobConfig(job="killed", mode="sync", **SMALL)
    create_job(job_storage, config)
    layout = JobLayout(config.job)
    child = multiprocessing.get_context("spawn").Process(
        target=_work_in_process, args=(config.as_dict(), job_storage.config, 1, "doomed")
    )
    child.start()
    survivor = threading.Thread(target=run_workers, args=(job_storage, config, [0]))
    survivor.start()
    # Execute: SIGKILL once round 6 is in storage (past the checkpoint of round 4), then a replacement
    wait_for(lambda: job_storage.exists(layout.update(6, 1)), "worker 1 reaching round 6")
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    replacement = run_workers(
        job_storage, config, [1], make=lambda w: Worker(Storage(job_storage.config), config, w, owner="replacement")
    )
    survivor.join(DEADLINE_S)
    # Assert: it replayed from a checkpoint instead of recomputing, and the model is the reference's
    assert child.exitcode == -signal.SIGKILL and not survivor.is_alive()
    assert replacement[1]["state"] == "done" and replacement[1]["rounds"] < 16
    assert torch.allclose(final_vector(job_storage, config), expected, atol=1e-6)


def test_a_worker_handing_off_at_its_limit_leaves_the_result_unchanged(job_storage):
    # Prepare
    expected = uninterrupted(job_storage, mode="sync")
    config = JobConfig(job="handoff", mode="sync", rounds_per_run=5, **SMALL)
    create_job(job_storage, config)
    chain: dict[int, list[str]] = {0: [], 1: []}
    successors: list[threading.Thread] = []

    def make(w: int, generation: int = 0) -> Worker:
        owner = f"w{w}-g{generation}"
        chain[w].append(owner)

        def handoff() -> str:
            thread = threading.Thread(target=lambda: make(w, generation + 1).run())
            successors.append(thread)
            thread.start()
            return f"w{w}-g{generation + 1}"

        return Worker(Storage(job_storage.config), config, w, owner=owner, handoff=handoff)

    # Execute
    first = run_workers(job_storage, config, make=make)
    while any(t.is_alive() for t in successors):
        for t in list(successors):
            t.join(DEADLINE_S)
    # Assert: 16 rounds in runs of 5 -> four activations per worker, the momentum carried over
    assert first[0]["state"] == "continued" and first[0]["successor"] == "w0-g1"
    assert chain == {w: [f"w{w}-g{g}" for g in range(4)] for w in (0, 1)}
    assert not any(JobLayout("handoff").handoff(w) in job_storage.list_keys("jobs/handoff/workers/") for w in (0, 1))
    assert torch.allclose(final_vector(job_storage, config), expected, atol=1e-6)


def test_local_workers_choose_the_same_k_each_round_and_finish_together(job_storage):
    # Prepare
    config = JobConfig(job="local", mode="local", local_steps=0, comm_target=0.05, **{**SMALL, "epochs": 2})
    create_job(job_storage, config)
    # Execute
    results = run_workers(job_storage, config)
    # Assert: K moved from its start of 4, identically on both; every batch of both epochs was taken
    assert results[0]["k"] == results[1]["k"] and results[0]["rounds"] == results[1]["rounds"]
    assert results[0]["batch"] == results[1]["batch"] == config.total_batches(1024) == 32
    assert results[0]["rounds"] < 32 / 4 + 4  # rounds of several local steps, not one each


class SlowPutStorage(Storage):
    """S3 as seen by a straggler: its put of one update hangs until the others have moved on."""

    def __init__(self, config, key: str, until_key: str) -> None:
        super().__init__(config)
        self.key, self.until_key = key, until_key

    def put_bytes(self, key, data, content_type="application/octet-stream", storage_class=None):
        if key == self.key:
            wait_for(lambda: self.exists(self.until_key), "the peers moving on")
        super().put_bytes(key, data, content_type, storage_class)


def test_a_quorum_leaves_a_straggler_out_and_it_catches_up(job_storage):
    # Prepare
    config = JobConfig(
        job="quorum",
        mode="local",
        local_steps=2,
        quorum=2,
        straggler_wait_s=0.2,
        **{**SMALL, "workers": 3, "batch_size": 48, "train_limit": 960},
    )
    create_job(job_storage, config)
    layout = JobLayout(config.job)

    def make(w: int) -> Worker:
        storage = (
            SlowPutStorage(job_storage.config, layout.update(1, 2), layout.decision(3))
            if w == 2
            else Storage(job_storage.config)
        )
        return Worker(storage, config, w, owner=f"q{w}")

    # Execute
    results = run_workers(job_storage, config, make=make)
    # Assert: round 1 went on without worker 2, which then skipped the rounds decided without it
    decided = {
        n: job_storage.get_json(layout.decision(n))["workers"]
        for n in range(1, 4)
        if job_storage.exists(layout.decision(n))
    }
    assert decided.get(1) == [0, 1] or 1 not in decided  # pruned by a checkpoint at the latest
    assert {"round": 1, "workers": [2]} in results[0]["left_out"]
    assert {results[w]["batch"] for w in range(3)} == {config.total_batches(960)}
    assert results[2]["rounds"] == results[0]["rounds"]


def test_an_update_of_another_run_stops_the_worker_with_a_clear_error(job_storage):
    config = JobConfig(job="damaged", mode="sync", **SMALL)
    create_job(job_storage, config)
    job_storage.put_bytes(JobLayout("damaged").update(0, 1), b"not an update at all")
    with pytest.raises(
        DamagedError, match="jobs/damaged/updates/000000000/1 is damaged: it is not in the weights format"
    ):
        Worker(job_storage, config, 0, owner="w0").run()


def test_a_worker_waiting_on_a_dead_peer_stops_when_a_replacement_claims_its_slot(job_storage):
    config = JobConfig(job="claimed", mode="sync", **SMALL)
    create_job(job_storage, config)
    worker = Worker(Storage(job_storage.config), config, 0, owner="old")
    result = {}
    thread = threading.Thread(target=lambda: result.update(worker.run()))
    thread.start()
    layout = JobLayout("claimed")
    wait_for(lambda: job_storage.exists(layout.update(0, 0)), "worker 0 putting round 0")
    job_storage.put_json(layout.worker_info(0), {"owner": "new", "since": time.time()})
    thread.join(DEADLINE_S)
    assert result["state"] == "superseded" and result["round"] == 0


class StandardOnlyStorage(Storage):
    """An endpoint that knows only STANDARD, as Ceph RGW out of the box."""

    def put_bytes(self, key, data, content_type="application/octet-stream", storage_class=None):
        if storage_class:
            from mlcore.errors import StorageError

            raise StorageError(
                f"put s3://x/{key} failed: InvalidStorageClass The storage class you specified is not valid"
            )
        super().put_bytes(key, data, content_type)


def test_updates_fall_back_to_standard_storage_where_the_endpoint_has_no_other_class(job_storage):
    from mlcore.training.exchange import Exchange, Timer

    exchange = Exchange(StandardOnlyStorage(job_storage.config), Timer())
    exchange.put_async("scratch/1", b"one", scratch=True)
    exchange.flush()
    exchange.put_async("scratch/2", b"two", scratch=True)
    exchange.finish()
    exchange.close()
    assert job_storage.get_bytes("scratch/1") == b"one" and job_storage.get_bytes("scratch/2") == b"two"
    assert exchange._scratch_class is None
    assert "StorageClass" not in job_storage.client.head_object(Bucket=job_storage.bucket, Key="scratch/1")


def test_a_worker_starts_from_the_newest_whole_checkpoint_and_names_the_damaged_ones(storage):
    from mlcore.training.state import newest_checkpoint, start_point, state_blob

    config = JobConfig(job="torn", **SMALL)
    create_job(storage, config)
    layout = JobLayout(config.job)
    newer = state_blob(torch.zeros(10), None, {"round": 4, "batch": 4, "k": 1})
    storage.put_bytes(layout.checkpoint(4), newer[: len(newer) - 5])  # cut short
    start = start_point(storage, config, 0)
    assert (start.round, start.source) == (0, "checkpoint")
    assert len(start.refused) == 1 and f"{layout.checkpoint(4)} is damaged" in start.refused[0]
    first = storage.get_bytes(layout.checkpoint(0))
    storage.put_bytes(layout.checkpoint(0), first[:8] + b"\0" + first[9:])
    with pytest.raises(TrainingError, match="no whole checkpoint") as refused:
        newest_checkpoint(storage, layout)
    assert layout.checkpoint(4) in str(refused.value) and layout.checkpoint(0) in str(refused.value)
