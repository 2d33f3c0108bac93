"""`deployer train` as a library: deploy the training actions, start or resume a job, follow it, report.

The job's whole state is in object storage (see mlcore.dist_job), so following a job means
reading its metrics.jsonl and status.json; the coordinator runs either as the
`mnist-train/train` action (default) or in this process (`driver="cli"`), same code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

from mlcore import dist_data
from mlcore.dist_coordinator import Coordinator, read_metrics
from mlcore.dist_job import JobConfig, JobLayout, TrainingError, new_job_name
from mlcore.dist_steps import create_job, load_config
from mlcore.errors import ObjectNotFoundError
from mlcore.owapi import OpenWhiskInvoker
from mlcore.storage import Storage, StorageConfig

from .errors import ConfigError, NotFoundError, OpenWhiskError
from .manifest import PROJECT_ROOT, deploy
from .target import Target, storage_env_for

MANIFEST = PROJECT_ROOT / "manifests" / "train.yaml"
PACKAGE = "mnist-train"
FINAL_STATES = ("done", "failed")


def storage_config_for(target: Target) -> StorageConfig:
    """The embedded S3 of the local platform, else the S3 named by the user's environment."""
    if target.local:
        from .local import supervisor

        info = supervisor.read_info(supervisor.default_state_dir())
        if info is None:
            raise ConfigError("the local platform stopped; run `deployer up`")
        return info.storage_config(os.environ.get("S3_BUCKET"))
    config = StorageConfig.from_env()
    if not config.endpoint_url and not config.access_key:
        raise ConfigError("a remote OpenWhisk needs S3 settings: export S3_ENDPOINT_URL, S3_BUCKET, "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return config


def prepare(target: Target, client, storage: Storage, data: str = "s3", manifest: Path = MANIFEST) -> list[str]:
    """Deploys train.yaml (idempotent) and puts MNIST in S3 when workers read it from there."""
    storage.ensure_bucket()
    env = {**os.environ, **storage_env_for(target)}
    names = deploy(client, manifest, env=env)
    if data == "s3":
        dist_data.upload_mnist(storage)
    return names


def new_config(**settings) -> JobConfig:
    """Raises TrainingError naming a bad setting."""
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.setdefault("job", new_job_name())
    return JobConfig.from_dict(settings)


def check_capacity(client, config: JobConfig, driver: str = "action") -> None:
    """Refuses a job the local platform cannot hold warm.

    With more concurrent actions than containers, every step evicts a warm container and
    cold-starts another (seconds each: measured 8.5 s per step for 8 workers on 8 containers
    against 0.2 s for 4). Real OpenWhisk does not report its pool, so nothing is checked there.

    Raises:
        TrainingError: the workers, the PS and the coordinator do not fit.
    """
    try:
        invoker = client.platform_info().get("invoker") or {}
    except OpenWhiskError:
        return
    capacity = invoker.get("max_containers")
    needed = config.workers + 1 + (driver == "action")
    if isinstance(capacity, int) and needed > capacity:
        raise TrainingError(f"the local platform runs at most {capacity} action containers and this job needs "
                            f"{needed} at once ({config.workers} workers, the PS"
                            f"{', the coordinator' if driver == 'action' else ''}); restart it with "
                            f"`deployer down && deployer up --max-containers {needed}`")


def start(client, config: JobConfig, package: str = PACKAGE) -> str:
    """Invokes the coordinator action (non-blocking) for a new job; returns its activation id."""
    reply = client.invoke(f"{package}/train", config.as_dict(), blocking=False)
    return reply["activationId"]


def resume(client, storage: Storage, job: str, package: str = PACKAGE) -> str:
    """Restarts the coordinator of `job` from its newest model version; returns the activation id.

    Raises:
        TrainingError: there is no such job.
    """
    load_config(storage, job)
    reply = client.invoke(f"{package}/train", {"job": job, "resume": True}, blocking=False)
    return reply["activationId"]


def drive(target: Target, storage: Storage, config: JobConfig, package: str = PACKAGE,
          log: Callable[[str], None] = lambda _: None) -> dict:
    """Runs the coordinator in this process: no 300 s limit to hand off around, same steps and metrics."""
    create_job(storage, config)
    invoker = OpenWhiskInvoker(target.apihost, target.auth, insecure=target.insecure)
    try:
        coordinator = Coordinator(storage, invoker, config, worker_action=f"/_/{package}/worker",
                                  ps_action=f"/_/{package}/ps", owner=f"cli-{os.getpid()}-{time.time():.0f}",
                                  log=log)
        return coordinator.run()
    finally:
        invoker.close()


def status(storage: Storage, job: str) -> dict:
    try:
        return storage.get_json(JobLayout(job).status)
    except ObjectNotFoundError:
        return {}


def _coordinator_gone(client, events: list[dict]) -> str | None:
    """Why the newest coordinator activation ended without finishing the job, or None while it runs."""
    starts = [e for e in events if e.get("event") == "start"]
    handoffs = [e for e in events if e.get("event") == "handed_off"]
    owner = (handoffs[-1]["successor"] if handoffs and (not starts or handoffs[-1]["time"] > starts[-1]["time"])
             else starts[-1]["owner"] if starts else None)
    if not owner or owner.startswith("cli-"):
        return None
    try:
        record = client.get_activation(owner)
    except NotFoundError:
        return None
    except OpenWhiskError as exc:
        return f"cannot read coordinator activation {owner}: {exc}"
    result = record.get("response", {}).get("result", {})
    if result.get("state") == "continued":
        return None
    return f"coordinator activation {owner} ended: {result.get('error') or result or record['response']['status']}"


def follow(client, storage: Storage, job: str, poll_s: float = 1.0, timeout_s: float = 24 * 3600,
           first_activation: str | None = None) -> Iterator[dict]:
    """Yields each new metrics event until the job is done or failed.

    Raises:
        TrainingError: the job failed, or its coordinator died (resume it with --resume).
    """
    seen = 0
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    while True:
        events = read_metrics(storage, job)
        for event in events[seen:]:
            yield event
        if len(events) > seen:
            idle_since = time.monotonic()
        seen = len(events)
        state = status(storage, job).get("state")
        if state == "done":
            return
        if state == "failed":
            failure = next((e for e in reversed(events) if e.get("event") == "failed"), {})
            raise TrainingError(f"job {job} failed at step {failure.get('step')}: {failure.get('error')}; "
                                f"fix the cause, then `deployer train --resume {job}`")
        if time.monotonic() - idle_since > 5 * poll_s:
            owners = {e.get("owner") for e in events if e.get("event") == "start"}
            if first_activation and first_activation not in owners:
                why = _coordinator_gone(client, [{"event": "start", "owner": first_activation, "time": 0}])
            else:
                why = _coordinator_gone(client, events)
            if why:
                raise TrainingError(f"job {job} stopped: {why}; continue it with `deployer train --resume {job}`")
        if time.monotonic() > deadline:
            raise TrainingError(f"job {job} did not finish in {timeout_s:.0f} s")
        time.sleep(poll_s)


def time_to_accuracy(events: list[dict], target: float) -> float | None:
    """Seconds from the job's first start to the first evaluation at or above `target`."""
    starts = [e["time"] for e in events if e.get("event") == "start"]
    for e in events:
        if e.get("event") == "eval" and e["accuracy"] >= target and starts:
            return round(e["time"] - starts[0], 3)
    return None


def coordinator_gb_s(client, events: list[dict]) -> float:
    """GB-seconds of the coordinator activations, read from their records as OpenWhisk bills them."""
    from mlcore.owapi import record_memory_mb

    total = 0.0
    for owner in {e["owner"] for e in events if e.get("event") == "start"}:
        if owner.startswith("cli-"):
            continue
        try:
            record = client.get_activation(owner)
        except OpenWhiskError:
            continue
        total += (record_memory_mb(record) or 256) / 1024.0 * record.get("duration", 0) / 1000.0
    return total


def report(client, storage: Storage, job: str, targets=(0.98, 0.99)) -> dict:
    """Accuracy per evaluation, the per-step breakdown summed and averaged, GB-seconds, time to targets."""
    events = read_metrics(storage, job)
    config = load_config(storage, job)
    steps = [e for e in events if e.get("event") == "step"]
    evals = [e for e in events if e.get("event") == "eval"]
    keys = ("wall_s", "compute_s", "s3_get_s", "s3_put_s", "wait_s")
    totals = {k: round(sum(s.get(k, 0.0) for s in steps), 3) for k in keys}
    totals["bytes"] = sum(s.get("bytes", 0) for s in steps)
    per_step = {k: round(totals[k] / len(steps), 5) if steps else None for k in keys + ("bytes",)}
    wall = totals["wall_s"] or 1.0
    starts = [e["time"] for e in events if e.get("event") == "start"]
    ends = [e["time"] for e in events if e.get("event") in ("done", "failed")]
    return {
        "job": job, "config": config.as_dict(), "state": status(storage, job).get("state"),
        "steps": len(steps), "evaluations": [{k: e[k] for k in ("step", "epoch", "accuracy", "loss")} for e in evals],
        "final_accuracy": evals[-1]["accuracy"] if evals else None,
        "elapsed_s": round(ends[-1] - starts[0], 3) if starts and ends else None,
        "time_to_accuracy_s": {str(t): time_to_accuracy(events, t) for t in targets},
        "step_totals": totals, "step_mean": per_step,
        "communication_fraction": round(1.0 - totals["compute_s"] / wall, 4) if steps else None,
        "left_out": [{"step": s["step"], "workers": s["left_out"]} for s in steps if s.get("left_out")],
        "retries": sum(s.get("retries", 0) for s in steps),
        "coordinator_runs": len(starts),
        "gb_s": {"workers_and_ps": round(sum(e.get("gb_s", 0.0) for e in events
                                             if e.get("event") in ("step", "late")), 3),
                 "late_stragglers": round(sum(e.get("gb_s", 0.0) for e in events if e.get("event") == "late"), 3),
                 "coordinator": round(coordinator_gb_s(client, events), 3)},
        "model_key": JobLayout(job).final,
    }
