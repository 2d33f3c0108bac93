"""`deployer train` as a library: deploy the training actions, start or resume a job, follow it, report.

The training itself is mlcore.training; this module is its edge to a platform. The job's
whole state is in object storage, so following a job means reading its metrics.jsonl and
status.json; the coordinator runs as the `mnist-train/train` action (default) or in this
process (`driver="cli"`), same code. A coordinator that dies is resumed by `follow`: the
workers it started keep running and the new one adopts them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlcore.storage import Storage, StorageConfig
from mlcore.training import data as training_data
from mlcore.training.coordinator import Coordinator, create_job, gb_s_of, load_config, read_json, read_metrics
from mlcore.training.job import JobConfig, JobLayout, TrainingError, new_job_name
from mlcore.training.report import summarise

from .errors import ConfigError, NotFoundError, OpenWhiskError
from .manifest import PROJECT_ROOT, deploy
from .target import Target

MANIFEST = PROJECT_ROOT / "manifests" / "train.yaml"
PACKAGE = "mnist-train"
FINAL_STATES = ("done", "failed")


def storage_config_for(target: Target) -> StorageConfig:
    """The target's S3; a remote OpenWhisk's actions cannot reach it without settings, so those are required."""
    config = target.storage.config
    if not target.local and not config.endpoint_url and not config.access_key:
        raise ConfigError(
            "a remote OpenWhisk needs S3 settings: export S3_ENDPOINT_URL, S3_BUCKET, "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return config


def prepare(target: Target, client, storage: Storage, data: str = "s3", manifest: Path = MANIFEST) -> list[str]:
    """Deploys train.yaml (idempotent) and puts MNIST in S3 when workers read it from there."""
    storage.ensure_bucket()
    names = deploy(client, manifest, env=target.storage.manifest_env())
    if data == "s3":
        training_data.upload_mnist(storage)
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
    ps = config.topology == "ps"
    needed = config.workers + ps + (driver == "action")
    if isinstance(capacity, int) and needed > capacity:
        raise TrainingError(
            f"the local platform runs at most {capacity} action containers and this job needs "
            f"{needed} at once ({config.workers} workers{', the parameter server' if ps else ''}"
            f"{' and the coordinator' if driver == 'action' else ''}); restart it with "
            f"`deployer down && deployer up --max-containers {needed}`"
        )


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


def drive(
    target: Target,
    storage: Storage,
    config: JobConfig,
    package: str = PACKAGE,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Runs the coordinator in this process: no 300 s limit to hand off around, same steps and metrics."""
    create_job(storage, config)
    with target.client() as client:
        coordinator = Coordinator(
            storage,
            client,
            config,
            worker_action=f"/_/{package}/worker",
            ps_action=f"/_/{package}/ps",
            owner=f"cli-{os.getpid()}-{time.time():.0f}",
            log=log,
        )
        return coordinator.run()


def status(storage: Storage, job: str) -> dict:
    return read_json(storage, JobLayout(job).status) or {}


def _coordinator_gone(client, storage: Storage, job: str, first_activation: str | None) -> str | None:
    """Why the coordinator that owns the job ended without finishing it, or None while it runs."""
    state = status(storage, job)
    owner = state.get("successor") or state.get("owner")
    if first_activation and first_activation not in (state.get("owner"), state.get("successor")):
        owner = first_activation  # started by us and not yet the owner: it is the one to watch
    if not owner or owner.startswith("cli-"):
        return None
    try:
        record = client.get_activation(owner)
    except NotFoundError:
        return None
    except OpenWhiskError as exc:
        return f"cannot read coordinator activation {owner}: {exc}"
    result = record.get("response", {}).get("result", {})
    if result.get("state") in ("continued", "done"):
        return None
    return f"coordinator activation {owner} ended: {result.get('error') or result or record['response']['status']}"


def follow(
    client,
    storage: Storage,
    job: str,
    poll_s: float = 1.0,
    timeout_s: float = 24 * 3600,
    first_activation: str | None = None,
    package: str = PACKAGE,
    resumes: int = 2,
) -> Iterator[dict]:
    """Yields each new metrics event until the job is done or failed.

    A coordinator that dies (killed container, lost platform) is resumed up to `resumes`
    times, with a `resumed` event: its workers never depended on it.

    Raises:
        TrainingError: the job failed, or its coordinator kept dying (resume it with --resume).
    """
    seen = 0
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    while True:
        events = read_metrics(storage, job)
        yield from events[seen:]
        if len(events) > seen:
            idle_since = time.monotonic()
        seen = len(events)
        state = status(storage, job).get("state")
        if state == "done":
            return
        if state == "failed":
            failure = next((e for e in reversed(events) if e.get("event") == "failed"), {})
            raise TrainingError(
                f"job {job} failed: {failure.get('error')}; fix the cause, then `deployer train --resume {job}`"
            )
        if time.monotonic() - idle_since > 3 * poll_s:
            why = _coordinator_gone(client, storage, job, first_activation)
            if why and resumes > 0:
                resumes -= 1
                first_activation = resume(client, storage, job, package)
                yield {"event": "resumed", "why": why, "activation": first_activation, "time": time.time()}
                idle_since = time.monotonic()
            elif why:
                raise TrainingError(f"job {job} stopped: {why}; continue it with `deployer train --resume {job}`")
        if time.monotonic() > deadline:
            raise TrainingError(f"job {job} did not finish in {timeout_s:.0f} s")
        time.sleep(poll_s)


def wait_coordinator_ended(client, storage: Storage, job: str, timeout_s: float = 60.0) -> None:
    """Until the activation that finished the job has its record: its bill is final, its container free."""
    owner = status(storage, job).get("owner", "")
    if not owner or owner.startswith("cli-"):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.get_activation(owner)
            return
        except NotFoundError:
            time.sleep(0.1)


def coordinator_bill(client, events: list[dict]) -> tuple[float, float]:
    """(GB-seconds, seconds) of the coordinator activations, read from their records as OpenWhisk bills them."""
    gb_s = seconds = 0.0
    for owner in {e["owner"] for e in events if e.get("event") == "start"}:
        if owner.startswith("cli-"):
            continue
        try:
            record = client.get_activation(owner)
        except OpenWhiskError:
            continue
        gb_s += gb_s_of(record)
        seconds += record.get("duration", 0) / 1000.0
    return gb_s, seconds


def report(client, storage: Storage, job: str, targets=(0.98, 0.99)) -> dict:
    """mlcore.training.report.summarise, plus the job's state and the bill of workers, PS and coordinators."""
    summary = summarise(storage, job, targets)
    events = read_metrics(storage, job)
    coordinator_gb_s, coordinator_s = coordinator_bill(client, events)
    gb_s = {"workers": summary["gb_s_workers"], "ps": summary["gb_s_ps"], "coordinator": round(coordinator_gb_s, 3)}
    seconds = {
        "workers": summary["activation_s_workers"],
        "ps": summary["activation_s_ps"],
        "coordinator": round(coordinator_s, 3),
    }
    return {
        **summary,
        "config": load_config(storage, job).as_dict(),
        "state": status(storage, job).get("state"),
        "gb_s": {**gb_s, "total": round(sum(gb_s.values()), 3)},
        "activation_s": {**seconds, "total": round(sum(seconds.values()), 3)},
    }
