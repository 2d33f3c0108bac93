"""Training jobs through a real local platform: real action processes, real S3, real MNIST.

Faults are injected at the edge only: a test deploys, in its own package, a worker or
coordinator whose `main` runs the real one and kills its own container (os._exit) once,
mid-job, so everything under test is the real code invoking through the real OpenWhisk API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from deployer import training_driver as training
from deployer.manifest import PROJECT_ROOT, deploy
from mlcore.errors import ObjectNotFoundError
from mlcore.storage import Storage
from mlcore.training import data
from mlcore.training.coordinator import read_metrics
from mlcore.training.job import JobConfig, JobLayout
from mlcore.training.state import SCRATCH_FOLDERS

SMALL = dict(
    workers=2,
    epochs=2,
    batch_size=64,
    lr=0.1,
    train_limit=2048,
    test_limit=1000,
    eval_every=16,
    mode="sync",
    precision="fp32",
    compress="none",
)
# Deadlines here only tell a hung job from a slow one; a loaded 2-core machine can be very slow.
JOB_DEADLINE_S = 900.0
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def deployed(platform, mnist_root):
    storage = Storage(platform.storage_config)
    deploy(platform.client, training.MANIFEST, env={**os.environ, **platform.storage_env})
    data.upload_mnist(storage, mnist_root)
    return storage


def wait_done(platform, storage, job, activation, package=training.PACKAGE) -> list[dict]:
    list(
        training.follow(
            platform.client,
            storage,
            job,
            poll_s=0.5,
            timeout_s=JOB_DEADLINE_S,
            first_activation=activation,
            package=package,
        )
    )
    return read_metrics(storage, job)


def final_accuracy(events: list[dict]) -> float:
    return [e for e in events if e["event"] == "eval"][-1]["accuracy"]


@pytest.fixture(scope="module")
def reference(platform, deployed) -> list[dict]:
    """The uninterrupted job that the interrupted ones must match."""
    config = JobConfig(job="reference", **SMALL)
    return wait_done(platform, deployed, config.job, training.start(platform.client, config))


def test_a_job_through_the_platform_learns_reports_and_cleans_up(platform, deployed):
    # Prepare
    config = JobConfig(
        job="short", **{**SMALL, "mode": "local", "local_steps": 4, "precision": "auto", "compress": "fp16"}
    )
    # Execute
    events = wait_done(platform, deployed, config.job, training.start(platform.client, config))
    # Assert
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["batch"] for e in evals] == [16, 32, 48, 64] and evals[-1]["accuracy"] > 0.6
    summary = training.report(platform.client, deployed, config.job)
    assert summary["state"] == "done" and summary["gb_s"]["coordinator"] > 0 and summary["gb_s"]["workers"] > 0
    assert summary["workers"]["totals"]["compute_s"] > 0 and summary["time_to_accuracy_s"]["0.98"] is None
    assert 0 < summary["workers"]["communication_fraction"] < 1
    layout = JobLayout(config.job)
    assert deployed.exists(layout.final)
    # while it ran, what no replacement could need went at each checkpoint (rounds before the previous one), so the
    # end found at most two checkpoint intervals of updates (4 rounds of 2 workers each) and deleted them too
    checkpoints = sorted(layout.round_of(k) for k in deployed.list_keys(layout.prefix + "checkpoints/"))
    deleted = next(e for e in events if e["event"] == "done")["scratch_deleted"]
    assert len(checkpoints) == 2 and 0 < deleted <= 2 * 4 * 2
    assert [k for f in SCRATCH_FOLDERS for k in deployed.list_keys(layout.prefix + f)] == []


KILL_ONCE = '''
import os
import threading
import time

import real_main
from mlcore.storage import Storage, StorageConfig


def main(args):
    """Runs the real action; kills this container once, when {key!r} of the job exists."""
    storage = Storage(StorageConfig.from_params(args))
    job = args.get("job", "")
    marker = "jobs/%s/killed-{role}" % job
    if {only_worker} is not None and int(args.get("worker", -1)) != {only_worker}:
        return real_main.main(args)
    if storage.exists(marker):
        return real_main.main(args)
    result = {{}}
    thread = threading.Thread(target=lambda: result.update(real_main.main(args)), daemon=True)
    thread.start()
    key = "jobs/%s/{key}" % job
    while thread.is_alive():
        if storage.exists(key):
            storage.put_bytes(marker, b"1")
            os._exit(3)
        time.sleep(0.01)
    return result
'''


def deploy_package(platform, tmp_path: Path, package: str, replace: dict[str, Path] | None = None) -> None:
    """manifests/train.yaml under another package name, with some actions replaced."""
    manifest = (PROJECT_ROOT / "manifests/train.yaml").read_text()
    manifest = manifest.replace("    mnist-train:\n", f"    {package}:\n")
    for action, folder in (replace or {}).items():
        manifest = manifest.replace(f"../actions/mnist-train/{action}", str(folder))
    manifest = manifest.replace("../actions/mnist-train/", str(PROJECT_ROOT / "actions/mnist-train") + "/")
    path = tmp_path / f"{package}.yaml"
    path.write_text(manifest)
    deploy(platform.client, path, env={**os.environ, **platform.storage_env})


def deploy_killer(platform, tmp_path: Path, package: str, action: str, key: str, only_worker: int | None) -> None:
    folder = tmp_path / package / action
    folder.mkdir(parents=True)
    (folder / "real_main.py").write_text((PROJECT_ROOT / f"actions/mnist-train/{action}/__main__.py").read_text())
    (folder / "__main__.py").write_text(KILL_ONCE.format(role=action, key=key, only_worker=only_worker))
    deploy_package(platform, tmp_path, package, replace={action: folder})


def test_a_worker_container_killed_mid_job_is_replaced_and_the_job_ends_alike(platform, deployed, reference, tmp_path):
    # Prepare: worker 1 kills its container once round 20 of it is in storage (past a checkpoint)
    deploy_killer(platform, tmp_path, "train-kill-worker", "worker", "updates/000000020/1", only_worker=1)
    config = JobConfig(job="kill-worker", **SMALL)
    # Execute
    events = wait_done(
        platform,
        deployed,
        config.job,
        training.start(platform.client, config, package="train-kill-worker"),
        package="train-kill-worker",
    )
    # Assert
    failed = [e for e in events if e["event"] == "worker_failed"]
    assert len(failed) == 1 and failed[0]["worker"] == 1 and "exited unexpectedly" in failed[0]["error"]
    assert deployed.exists("jobs/kill-worker/killed-worker")
    assert abs(final_accuracy(events) - final_accuracy(reference)) <= 0.005
    summary = training.report(platform.client, deployed, config.job)
    assert summary["state"] == "done" and summary["replacements"] == 1
    # the killed activation is billed too
    assert len({e["activation"] for e in events if e["event"] == "billed"}) == 3


def test_a_coordinator_container_killed_mid_job_is_resumed_and_adopts_the_workers(
    platform, deployed, reference, tmp_path
):
    # Prepare: the coordinator kills its container once the checkpoint of round 16 exists
    deploy_killer(platform, tmp_path, "train-kill-coord", "train", "checkpoints/000000016", only_worker=None)
    config = JobConfig(job="kill-coord", **SMALL)
    # Execute
    events = []
    for event in training.follow(
        platform.client,
        deployed,
        config.job,
        poll_s=0.5,
        timeout_s=JOB_DEADLINE_S,
        first_activation=training.start(platform.client, config, package="train-kill-coord"),
        package="train-kill-coord",
    ):
        events.append(event)
    # Assert: resumed once; the workers were adopted, not restarted; same result
    assert [e["event"] for e in events].count("resumed") == 1
    stored = read_metrics(deployed, config.job)
    launched = [e["reason"] for e in stored if e["event"] == "launched"]
    assert launched[:2] == ["new", "new"] and "replace" not in launched
    assert abs(final_accuracy(stored) - final_accuracy(reference)) <= 0.005
    assert training.report(platform.client, deployed, config.job)["coordinator_runs"] == 2


def test_workers_hand_off_to_successors_through_the_platform(platform, deployed):
    # Prepare: each worker activation may run 12 rounds; the job needs 64
    config = JobConfig(job="relay", **{**SMALL, "rounds_per_run": 12})
    # Execute
    events = wait_done(platform, deployed, config.job, training.start(platform.client, config))
    # Assert: six activations per worker in a chain, each billed
    billed = [e for e in events if e["event"] == "billed"]
    assert sorted(e["state"] for e in billed if e["worker"] == 0) == ["continued"] * 5 + ["done"]
    assert training.report(platform.client, deployed, config.job)["state"] == "done"
    assert final_accuracy(events) > 0.6


MID_JOB = {  # a key worker 1 writes in round 24, past the checkpoint of round 16
    "allreduce": lambda layout: layout.update(24, 1),
    "scatter": lambda layout: layout.shard(24, 1, 0),
    "ps": lambda layout: layout.update(24, 1),
}


@pytest.mark.parametrize("topology", list(MID_JOB))
def test_a_platform_crash_mid_job_loses_no_acknowledged_update_and_the_resumed_job_ends_alike(
    platform, deployed, reference, topology
):
    # Prepare: sync scatter and ps (uncompressed) take all-reduce's steps, so all end as the reference
    config = JobConfig(job=f"crash-{topology}", topology=topology, **SMALL)
    layout = JobLayout(config.job)
    training.start(platform.client, config)
    deadline = time.monotonic() + JOB_DEADLINE_S
    while not deployed.exists(MID_JOB[topology](layout)):
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.1)
    acknowledged = {}
    for key in deployed.list_keys(layout.prefix + "updates/"):
        try:
            acknowledged[key] = deployed.get_bytes(key)
        except ObjectNotFoundError:
            pass  # pruned by worker 0 since the listing: the job is still running
    # Execute: SIGKILL the platform (containers and S3 with it), start it again, resume
    platform.crash_and_start()
    # what worker 0 pruned before the crash (rounds before the previous checkpoint) may be gone
    kept_from = deployed.get_json(layout.checkpoint_pointer)["round"] - config.eval_every
    lost = [
        key
        for key, blob in acknowledged.items()
        if (layout.round_of(key) >= kept_from and not deployed.exists(key))
        or (deployed.exists(key) and deployed.get_bytes(key) != blob)
    ]
    resumed = training.resume(platform.client, deployed, config.job)
    events = wait_done(platform, deployed, config.job, resumed)
    # Assert
    assert len(acknowledged) >= 8 and lost == []
    assert abs(final_accuracy(events) - final_accuracy(reference)) <= 0.005
    assert training.report(platform.client, deployed, config.job)["state"] == "done"


def test_a_ps_container_killed_mid_job_is_replaced_and_the_job_ends_alike(platform, deployed, reference, tmp_path):
    # Prepare: the parameter server kills its container once it published the model of round 20
    deploy_killer(platform, tmp_path, "train-kill-ps", "ps", "weights/000000020", only_worker=None)
    config = JobConfig(job="kill-ps", topology="ps", **SMALL)
    # Execute
    events = wait_done(
        platform,
        deployed,
        config.job,
        training.start(platform.client, config, package="train-kill-ps"),
        package="train-kill-ps",
    )
    # Assert: replaced once, resumed from its checkpoint, the reference's result; its bill is in the report
    failed = [e for e in events if e["event"] == "worker_failed"]
    assert [e["worker"] for e in failed] == ["ps"] and "exited unexpectedly" in failed[0]["error"]
    assert deployed.exists("jobs/kill-ps/killed-ps")
    assert abs(final_accuracy(events) - final_accuracy(reference)) <= 0.005
    summary = training.report(platform.client, deployed, config.job)
    assert summary["state"] == "done" and summary["replacements"] == 1
    assert summary["gb_s"]["ps"] > 0 and summary["activation_s"]["ps"] > 0 and summary["per_step"]["requests"] > 0
