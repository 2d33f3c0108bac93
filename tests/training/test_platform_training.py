"""Training jobs through a real local platform: real action processes, real S3, real MNIST.

Faults are injected at the edge only: a test deploys a worker whose `main` wraps the real
worker and crashes or stalls once, in its own package, so the coordinator under test is
the real one, invoking through the real OpenWhisk API.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from deployer import train as training
from deployer.manifest import PROJECT_ROOT, deploy
from mlcore import dist_data
from mlcore.dist_coordinator import read_metrics
from mlcore.dist_job import JobConfig, JobLayout
from mlcore.dist_steps import create_job, evaluate_version
from mlcore.storage import Storage

SMALL = dict(workers=2, epochs=2, batch_size=64, train_limit=2048, test_limit=1000, lr=0.05, eval_every=32)
# Deadlines here only tell a hung job from a slow one; a loaded 2-core machine can be very slow.
JOB_DEADLINE_S = 900.0
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def deployed(platform, mnist_root):
    storage = Storage(platform.storage_config)
    deploy(platform.client, training.MANIFEST, env={**os.environ, **platform.storage_env})
    dist_data.upload_mnist(storage, mnist_root)
    return storage


def wait_done(platform, storage, job, activation, timeout_s=JOB_DEADLINE_S) -> list[dict]:
    list(training.follow(platform.client, storage, job, poll_s=0.5, timeout_s=timeout_s,
                         first_activation=activation))
    return read_metrics(storage, job)


def test_a_short_job_through_the_platform_improves_accuracy(platform, deployed):
    # Prepare
    config = JobConfig(job="short", **SMALL)
    create_job(deployed, config)
    before = evaluate_version(deployed, config, 0)["accuracy"]
    # Execute
    activation = training.start(platform.client, config)
    events = wait_done(platform, deployed, config.job, activation)
    # Assert
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [32, 64]
    assert before < 0.2 and evals[-1]["accuracy"] > 0.4
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == list(range(64))
    assert all(s["compute_s"] > 0 and s["s3_get_s"] > 0 and s["bytes"] > 0 and s["gb_s"] > 0 for s in steps)
    summary = training.report(platform.client, deployed, config.job)
    assert summary["state"] == "done" and summary["gb_s"]["coordinator"] > 0
    layout = JobLayout(config.job)
    assert deployed.exists(layout.final)
    # only the newest two versions stay: model and optimizer 63 and 64, the updates that made 64
    assert sorted(deployed.list_keys(layout.prefix + "model/")) == [layout.model(63), layout.model(64)]
    assert sorted(deployed.list_keys(layout.prefix + "opt/")) == [layout.opt(63), layout.opt(64)]
    assert sorted(deployed.list_keys(layout.prefix + "grads/")) == [layout.grads(63, 0), layout.grads(63, 1)]
    print({k: summary[k] for k in ("elapsed_s", "step_mean", "communication_fraction", "gb_s", "final_accuracy")})


FLAKY_WORKER = '''
import os
import time

import real_worker
from mlcore.storage import Storage, StorageConfig


def main(args):
    """Crashes (process exit) once, or stalls until the job has moved past its step, for one worker and step."""
    kind, worker, step = "{kind}", {worker}, {step}
    if int(args["worker"]) == worker and int(args["step"]) == step:
        storage = Storage(StorageConfig.from_params(args))
        prefix = "jobs/%s/" % args["job"]
        marker = prefix + "fault-%d-%d" % (worker, step)
        if not storage.exists(marker):
            storage.put_bytes(marker, b"1")
            if kind == "crash":
                os._exit(3)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if storage.get_json(prefix + "status.json").get("step", 0) > step:
                    storage.put_bytes(prefix + "straggler-saw-step-applied", b"1")
                    break
                time.sleep(0.05)
    return real_worker.main(args)
'''


def deploy_package(platform, tmp_path: Path, package: str, worker_dir: Path | None = None) -> None:
    """manifests/train.yaml under another package name, optionally with a replaced worker."""
    manifest = (PROJECT_ROOT / "manifests/train.yaml").read_text()
    manifest = manifest.replace("    mnist-train:\n", f"    {package}:\n")
    if worker_dir is not None:
        manifest = manifest.replace("../actions/mnist-train/worker", str(worker_dir))
    manifest = manifest.replace("../actions/mnist-train/", str(PROJECT_ROOT / "actions/mnist-train") + "/")
    path = tmp_path / f"{package}.yaml"
    path.write_text(manifest)
    deploy(platform.client, path, env={**os.environ, **platform.storage_env})


def deploy_faulty(platform, tmp_path: Path, package: str, kind: str, worker: int, step: int) -> None:
    worker_dir = tmp_path / package / "worker"
    worker_dir.mkdir(parents=True)
    real = (PROJECT_ROOT / "actions/mnist-train/worker/__main__.py").read_text()
    (worker_dir / "real_worker.py").write_text(real)
    (worker_dir / "__main__.py").write_text(FLAKY_WORKER.format(kind=kind, worker=worker, step=step))
    deploy_package(platform, tmp_path, package, worker_dir=worker_dir)


def test_a_crashed_worker_is_retried_and_the_job_completes(platform, deployed, tmp_path):
    # Prepare
    deploy_faulty(platform, tmp_path, "train-crash", "crash", worker=1, step=2)
    config = JobConfig(job="crash", **{**SMALL, "train_limit": 512, "epochs": 1, "eval_every": 0})
    # Execute
    activation = training.start(platform.client, config, package="train-crash")
    events = wait_done(platform, deployed, config.job, activation)
    # Assert
    steps = {e["step"]: e for e in events if e["event"] == "step"}
    assert steps[2]["retries"] == 1 and "exited unexpectedly" in steps[2]["errors"][0]
    assert all(steps[s]["retries"] == 0 for s in steps if s != 2)
    assert steps[2]["included"] == [0, 1] and deployed.get_json(JobLayout("crash").applied(2))["workers"] == [0, 1]


def test_quorum_leaves_a_straggler_out_and_records_it(platform, deployed, tmp_path):
    # Prepare
    # the straggler of step 1 runs until the job has moved past step 1; the others get a generous
    # straggler wait, so only a worker that really cannot finish is left out
    deploy_faulty(platform, tmp_path, "train-slow", "stall", worker=2, step=1)
    config = JobConfig(job="quorum", **{**SMALL, "workers": 3, "batch_size": 48, "train_limit": 480,
                                        "quorum": 2, "straggler_wait_s": 5.0, "epochs": 1,
                                        "eval_every": 0})
    # Execute
    activation = training.start(platform.client, config, package="train-slow")
    events = wait_done(platform, deployed, config.job, activation)
    # Assert
    steps = {e["step"]: e for e in events if e["event"] == "step"}
    assert steps[1]["left_out"] == [2] and steps[1]["included"] == [0, 1]
    assert deployed.get_json(JobLayout("quorum").applied(1))["workers"] == [0, 1]
    # step 1 was applied while its straggler was still running
    assert deployed.exists("jobs/quorum/straggler-saw-step-applied")
    summary = training.report(platform.client, deployed, "quorum")
    assert {"step": 1, "workers": [2]} in summary["left_out"]
    # the straggler still ran (and is billed): its GB-s arrive as a late event and count in the total
    late = [e for e in events if e["event"] == "late"]
    left_out = {(s["step"], w) for s in steps.values() for w in s["left_out"]}
    assert sorted((e["step"], e["worker"]) for e in late) == sorted(left_out) and (1, 2) in left_out
    # billed, and not retried: the step was applied without them (and may be pruned by now)
    assert all(e["gb_s"] > 0 and e["attempts"] == 1 for e in late), late
    assert summary["gb_s"]["late_stragglers"] == round(sum(e["gb_s"] for e in late), 3)
    assert summary["gb_s"]["workers_and_ps"] == round(sum(e["gb_s"] for e in events
                                                          if e["event"] in ("step", "late")), 3)


def test_coordinators_hand_off_to_their_successors_through_the_platform(platform, deployed, tmp_path):
    # Prepare: each coordinator activation may run 40 steps (the deadline-driven hand-off, which the
    # machine's speed decides, is tested on its own in test_coordinator.py); the job needs 128
    deploy_package(platform, tmp_path, "train-handoff")
    config = JobConfig(job="handoff", **{**SMALL, "epochs": 4, "eval_every": 64, "steps_per_run": 40})
    # Execute
    activation = training.start(platform.client, config, package="train-handoff")
    events = wait_done(platform, deployed, config.job, activation)
    # Assert: four coordinators in a chain, each starting where the last stopped, every step once
    starts = [e for e in events if e["event"] == "start"]
    handed = [e for e in events if e["event"] == "handed_off"]
    assert [s["step"] for s in starts] == [0, 40, 80, 120] and len(handed) == 3
    assert [s["owner"] for s in starts[1:]] == [h["successor"] for h in handed]
    assert [s["step"] for s in starts[1:]] == [h["step"] for h in handed]
    assert starts[0]["owner"] == activation
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(128))
    records = [platform.client.get_activation(s["owner"]) for s in starts]
    assert all(r["response"]["status"] == "success" for r in records)
    assert [r["response"]["result"]["state"] for r in records] == ["continued"] * 3 + ["done"]
    summary = training.report(platform.client, deployed, config.job)
    assert summary["state"] == "done" and summary["coordinator_runs"] == len(starts)


def test_resume_after_the_platform_restarts_loses_at_most_the_step_in_flight(platform, deployed, tmp_path):
    # Prepare: worker 1 stalls in step 6 (the job cannot pass it), so the restart lands mid-job
    # however fast the machine is; the fault fires once, so the resumed job runs clean
    deploy_faulty(platform, tmp_path, "train-resume", "stall", worker=1, step=6)
    config = JobConfig(job="resume", **{**SMALL, "train_limit": 2048, "epochs": 1, "eval_every": 0})
    layout = JobLayout(config.job)
    activation = training.start(platform.client, config, package="train-resume")
    deadline = time.monotonic() + JOB_DEADLINE_S
    while not deployed.exists(f"{layout.prefix}fault-1-6"):
        assert time.monotonic() < deadline, "the job never reached step 6"
        time.sleep(0.2)
    # Execute
    platform.restart()
    at_restart = layout.latest_model_step(deployed)
    # the stop killed the coordinator's container and closed its record; nothing of the old job runs on
    record = platform.client.get_activation(activation)
    assert record["response"]["status"] == "whisk internal error", record["response"]
    resumed = training.resume(platform.client, deployed, config.job, package="train-resume")
    events = wait_done(platform, deployed, config.job, resumed)
    # Assert: the step in flight (6) is the only one run again
    starts = [e for e in events if e["event"] == "start"]
    assert at_restart == 6 and [s["step"] for s in starts] == [0, 6]
    # (step events the stopped coordinator had not flushed yet are gone; its model versions are not)
    assert [e["step"] for e in events if e["event"] == "step" and e["step"] >= 6] == list(range(6, 32))
    assert layout.latest_model_step(deployed) == 32
    kept = sorted(int(k.rsplit("/", 1)[1]) for k in deployed.list_keys(layout.prefix + "model/"))
    assert kept[-2:] == [31, 32] and len(kept) <= 3, kept  # a prune in flight at the restart may be lost
    assert training.report(platform.client, deployed, config.job)["state"] == "done"
    assert activation != resumed


def test_a_crash_mid_job_loses_no_acknowledged_object_and_the_resumed_job_ends_alike(platform, deployed):
    # Prepare: the job uninterrupted, for the accuracy to match; then the same job, crashed
    settings = {**SMALL, "train_limit": 2048, "epochs": 1, "eval_every": 0, "keep_versions": 0}
    base = JobConfig(job="crash-base", **settings)
    base_events = wait_done(platform, deployed, base.job, training.start(platform.client, base))
    config = JobConfig(job="crash-kill", **settings)
    layout = JobLayout(config.job)
    training.start(platform.client, config)
    deadline = time.monotonic() + JOB_DEADLINE_S
    while (layout.latest_model_step(deployed) or 0) < 8:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.2)
    # versioned objects never change once written: each one read now must survive the crash as it is
    immutable = ("config.json", "model/", "opt/", "grads/", "applied/")
    acknowledged = {key: deployed.get_bytes(key) for key in deployed.list_keys(layout.prefix)
                    if key[len(layout.prefix):].startswith(immutable)}
    # Execute
    platform.crash_and_start()
    # Assert
    assert len(acknowledged) >= 4 * 8
    lost = [key for key, blob in acknowledged.items() if not deployed.exists(key) or deployed.get_bytes(key) != blob]
    assert lost == []
    events = wait_done(platform, deployed, config.job, training.resume(platform.client, deployed, config.job))
    final = [e for e in events if e["event"] == "eval"][-1]
    expected = [e for e in base_events if e["event"] == "eval"][-1]
    assert final["step"] == expected["step"] == 32
    assert abs(final["accuracy"] - expected["accuracy"]) <= 0.005, (final, expected)
    print(f"crash after step 8: {len(acknowledged)} acknowledged objects intact; accuracy "
          f"{final['accuracy']:.4f} resumed vs {expected['accuracy']:.4f} uninterrupted")
