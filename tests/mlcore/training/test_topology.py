"""The three topologies (allreduce, scatter, ps) on a real S3 endpoint, workers and PS in threads or killed processes.

The claims are about results: the same seed and topology give the same model run after run;
in sync mode the three give the model of all-reduce (scatter with uncompressed updates:
with fp16 it rounds the reduced shards a second time); a killed worker or PS is replaced
and the job ends with the uninterrupted job's model.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
import torch

from mlcore.storage import Storage
from mlcore.training.coordinator import create_job
from mlcore.training.job import PS, TOPOLOGIES, JobConfig, JobLayout, TrainingError
from mlcore.training.ps import ParameterServer
from mlcore.training.state import read_state
from mlcore.training.topology import shard_bounds
from mlcore.training.worker import Worker

SMALL = JobConfig(
    job="small",
    workers=2,
    epochs=1,
    batch_size=64,
    lr=0.1,
    train_limit=512,
    test_limit=300,
    eval_every=4,
    data="local",
    precision="fp32",
    compress="none",
    threads=1,
    worker_timeout_s=120.0,
)
DEADLINE_S = 300.0  # tells a hung job from a slow one on a loaded 2-core machine


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def job(name: str, **settings) -> JobConfig:
    return JobConfig.from_dict({**SMALL.as_dict(), "job": name, **settings})


class GatedStorage(Storage):
    """S3 as seen by a slot whose puts under `prefix` wait for `gate`: no peer passes that round before it opens."""

    def __init__(self, config, prefix: str, gate: threading.Event) -> None:
        super().__init__(config)
        self.prefix, self.gate = prefix, gate

    def put_bytes(self, key, data, content_type="application/octet-stream", storage_class=None):
        if key.startswith(self.prefix):
            assert self.gate.wait(DEADLINE_S), f"{key} waited for its gate in vain"
        super().put_bytes(key, data, content_type, storage_class)


def make_slot(storage, config: JobConfig, slot, owner: str | None = None, gate=None, **kwargs):
    """A worker or the PS on its own S3 client; `gate` = (prefix, event) holds its puts under prefix."""
    owner = owner or f"{config.job}-{slot}"
    store = GatedStorage(storage.config, *gate) if gate else Storage(storage.config)
    if slot == PS:
        return ParameterServer(store, config, owner=owner, **kwargs)
    return Worker(store, config, slot, owner=owner, **kwargs)


def slots_of(config: JobConfig) -> list:
    return list(range(config.workers)) + ([PS] if config.topology == "ps" else [])


def run_slots(storage, config: JobConfig, slots=None, make=None) -> dict:
    """Runs the workers (and the PS) in threads to their end; returns each one's result."""
    results, errors = {}, []
    make = make or (lambda slot: make_slot(storage, config, slot))

    def run(slot) -> None:
        try:
            results[slot] = make(slot).run()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in (slots_of(config) if slots is None else slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    if errors:
        raise errors[0]
    return results


def final_state(storage, config: JobConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    layout = JobLayout(config.job)
    _, vector, momentum = read_state(storage, layout.checkpoint(storage.get_json(layout.checkpoint_pointer)["round"]))
    return vector, momentum


def run_job(storage, config: JobConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    create_job(storage, config)
    run_slots(storage, config)
    return final_state(storage, config)


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.02)


def _slot_in_process(config: dict, storage_config, slot, owner: str) -> None:
    torch.set_num_threads(1)
    config = JobConfig.from_dict(config)
    storage = Storage(storage_config)
    if slot == PS:
        ParameterServer(storage, config, owner=owner).run()
    else:
        Worker(storage, config, slot, owner=owner).run()


def test_shards_cover_the_vector_in_order_and_differ_in_length_by_one_at_most():
    for length, shards in [(10, 3), (61706, 4), (3, 3), (2, 5), (7, 1)]:
        bounds = shard_bounds(length, shards)
        assert len(bounds) == shards and bounds[0][0] == 0 and bounds[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(e - s for s, e in bounds) - min(e - s for s, e in bounds) <= 1


@pytest.mark.parametrize("topology", ["scatter", "ps"])
def test_a_quorum_outside_allreduce_is_refused_naming_the_topology(topology):
    with pytest.raises(TrainingError, match=f"quorum applies to topology allreduce only, got topology '{topology}'"):
        job("q", workers=3, batch_size=48, quorum=2, topology=topology)
    assert job("q", workers=3, batch_size=48, quorum=3, topology=topology).effective_quorum == 3


def test_a_parameter_server_refuses_a_job_without_one(storage):
    with pytest.raises(TrainingError, match="job small has topology 'allreduce': it has no parameter server"):
        ParameterServer(storage, SMALL, owner="ps")


@pytest.mark.parametrize("mode", ["sync", "local"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_same_seed_and_topology_give_the_same_model_run_after_run(storage, topology, mode):
    # Prepare
    settings = dict(topology=topology, mode=mode, local_steps=2 if mode == "local" else 0, compress="fp16")
    # Execute
    first, first_momentum = run_job(storage, job("first", **settings))
    second, second_momentum = run_job(storage, job("second", **settings))
    # Assert
    assert torch.equal(first, second)
    assert (first_momentum is None) == (mode == "local")
    assert first_momentum is None or torch.equal(first_momentum, second_momentum)


@pytest.mark.parametrize("mode", ["sync", "local"])
def test_every_topology_gives_the_model_of_allreduce(storage, mode):
    # Prepare
    settings = dict(mode=mode, local_steps=2 if mode == "local" else 0)
    # Execute
    models = {t: run_job(storage, job(t, topology=t, **settings)) for t in TOPOLOGIES}
    rounded = {t: run_job(storage, job(f"{t}-fp16", topology=t, compress="fp16", **settings)) for t in TOPOLOGIES}
    # Assert: the same mean of the same updates in the same order, the same optimizer steps
    for topology in ("scatter", "ps"):
        assert torch.equal(models[topology][0], models["allreduce"][0]), topology
        assert (models[topology][1] is None) == (models["allreduce"][1] is None)
        assert models[topology][1] is None or torch.equal(models[topology][1], models["allreduce"][1])
    # fp16 updates: the PS averages what all-reduce averages; scatter rounds its reduced shards once more
    assert torch.equal(rounded["ps"][0], rounded["allreduce"][0])
    assert not torch.equal(rounded["scatter"][0], rounded["allreduce"][0])
    assert torch.allclose(rounded["scatter"][0], rounded["allreduce"][0], atol=1e-2)


def test_the_workers_and_the_ps_report_their_requests_and_bytes(storage):
    config = job("counted", topology="ps", mode="sync")
    create_job(storage, config)
    results = run_slots(storage, config)
    # 8 rounds: a worker puts 8 updates and reads 8 models; the PS reads 16 updates and puts 8 models
    assert all(results[w]["rounds"] == 8 and results[w]["requests"]["puts"] >= 8 for w in (0, 1))
    assert results[PS]["requests"]["gets"] >= 16 and results[PS]["requests"]["puts"] >= 8
    assert results[PS]["bytes_in"] > 0 and results[PS]["bytes_out"] > 0
    layout = JobLayout(config.job)
    assert [layout.round_of(k) for k in storage.list_keys(layout.prefix + "checkpoints/")] == [0, 4, 8]
    assert not storage.exists(layout.weights(3))  # pruned at the checkpoint of round 8
    assert storage.exists(layout.weights(8))


KILL_AT = {  # a key worker 1 writes in round 6, past the checkpoint of round 4
    "scatter": lambda layout: layout.shard(6, 1, 0),
    "ps": lambda layout: layout.update(6, 1),
}


@pytest.mark.parametrize("topology", ["scatter", "ps"])
def test_a_killed_sync_worker_is_replaced_and_the_job_ends_with_the_uninterrupted_model(storage, topology):
    # Prepare: the reference run, then the same job with worker 1 as a process killed mid-job
    expected, _ = run_job(storage, job("reference", topology=topology, mode="sync"))
    config = job("killed", topology=topology, mode="sync")
    create_job(storage, config)
    layout = JobLayout(config.job)
    child = multiprocessing.get_context("spawn").Process(
        target=_slot_in_process, args=(config.as_dict(), storage.config, 1, "doomed")
    )
    child.start()
    gate = (layout.updates_of(6), threading.Event())  # the others' round 6 waits until worker 1 is dead
    others = threading.Thread(
        target=run_slots,
        args=(
            storage,
            config,
            [s for s in slots_of(config) if s != 1],
            lambda s: make_slot(storage, config, s, gate=gate),
        ),
    )
    others.start()
    # Execute: SIGKILL mid-job, then a replacement that replays from the checkpoint
    wait_for(lambda: storage.exists(KILL_AT[topology](layout)), "worker 1 reaching round 6")
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    gate[1].set()
    replacement = run_slots(storage, config, [1], make=lambda w: make_slot(storage, config, w, "replacement"))
    others.join(DEADLINE_S)
    # Assert
    assert child.exitcode == -signal.SIGKILL and not others.is_alive()
    assert replacement[1]["state"] == "done" and replacement[1]["rounds"] < 8
    assert torch.equal(final_state(storage, config)[0], expected)


@pytest.mark.parametrize("mode", ["sync", "local"])
def test_a_killed_ps_is_replaced_and_resumes_from_its_checkpoint(storage, mode):
    # Prepare: the reference run, then the same job with the PS as a process killed mid-job
    settings = dict(topology="ps", mode=mode, local_steps=2 if mode == "local" else 0)
    expected, expected_momentum = run_job(storage, job("reference", **settings))
    config = job("killed-ps", **settings)
    create_job(storage, config)
    layout = JobLayout(config.job)
    child = multiprocessing.get_context("spawn").Process(
        target=_slot_in_process, args=(config.as_dict(), storage.config, PS, "doomed")
    )
    child.start()
    killed_at = 6 if mode == "sync" else 3  # a round past the checkpoint of batch 4
    gate = (layout.updates_of(killed_at), threading.Event())  # the PS cannot pass that round before its death
    workers = threading.Thread(
        target=run_slots,
        args=(storage, config, list(range(config.workers)), lambda w: make_slot(storage, config, w, gate=gate)),
    )
    workers.start()
    # Execute: SIGKILL once it published the model of that round, then a replacement
    wait_for(lambda: storage.exists(layout.weights(killed_at)), f"the PS publishing round {killed_at}")
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    gate[1].set()
    replacement = run_slots(storage, config, [PS], make=lambda s: make_slot(storage, config, s, "replacement"))
    workers.join(DEADLINE_S)
    # Assert: it replayed from a checkpoint to the same model and momentum
    assert child.exitcode == -signal.SIGKILL and not workers.is_alive()
    assert replacement[PS]["state"] == "done" and replacement[PS]["rounds"] < killed_at
    vector, momentum = final_state(storage, config)
    assert torch.equal(vector, expected)
    assert (momentum is None) == (expected_momentum is None)
    assert momentum is None or torch.equal(momentum, expected_momentum)


def test_a_ps_handing_off_at_its_limit_leaves_the_result_unchanged(storage):
    # Prepare
    expected, _ = run_job(storage, job("reference", topology="ps", mode="sync"))
    config = job("relay", topology="ps", mode="sync", rounds_per_run=3)
    create_job(storage, config)
    chain: list[str] = []
    successors: list[threading.Thread] = []

    def make(slot, generation: int = 0):
        if slot != PS:
            return make_slot(storage, config, slot)
        owner = f"ps-g{generation}"
        chain.append(owner)

        def handoff() -> str:
            thread = threading.Thread(target=lambda: make(PS, generation + 1).run())
            successors.append(thread)
            thread.start()
            return f"ps-g{generation + 1}"

        return make_slot(storage, config, PS, owner, handoff=handoff)

    # Execute
    first = run_slots(storage, config, make=make)
    while any(t.is_alive() for t in successors):
        for t in list(successors):
            t.join(DEADLINE_S)
    # Assert: 8 rounds in runs of 3: three PS activations, the momentum handed over
    assert first[PS]["state"] == "continued" and first[PS]["successor"] == "ps-g1"
    assert chain == ["ps-g0", "ps-g1", "ps-g2"]
    assert not storage.exists(JobLayout(config.job).handoff(PS))
    assert torch.equal(final_state(storage, config)[0], expected)
