"""What a finished (or running) job measured, read back from its metrics and its workers' reports."""

from __future__ import annotations

from .coordinator import read_json, read_metrics
from .job import JobLayout

PHASES = ("compute_s", "get_s", "put_s", "wait_s", "startup_s")


def job_start(events: list[dict]) -> float | None:
    starts = [e["time"] for e in events if e.get("event") == "start"]
    return starts[0] if starts else None


def time_to_accuracy(events: list[dict], target: float) -> float | None:
    """Seconds from the job's start until the first checkpoint that evaluates at or above `target` was written.

    The model's own time, not the evaluation's: evaluating is measurement, not training,
    and the baseline is timed the same way.
    """
    start = job_start(events)
    for e in events:
        if e.get("event") == "eval" and e["accuracy"] >= target and start is not None:
            return round(e.get("model_time", e["time"]) - start, 3)
    return None


def worker_totals(workers: list[dict]) -> dict:
    """Each phase summed over the workers' activations, plus the split per round and the communication share.

    `requests` are the exchange's S3 requests (PUTs, GETs and the polls that found nothing),
    the load a round puts on the endpoint; a report written before they were counted has none.
    """
    totals = {k: round(sum(w.get(k, 0.0) for w in workers), 4) for k in PHASES}
    rounds = sum(w.get("rounds", 0) for w in workers)
    active = sum(w.get("active_s", 0.0) for w in workers)
    totals.update(
        rounds=rounds,
        active_s=round(active, 3),
        misses=sum(w.get("misses", 0) for w in workers),
        bytes=sum(w.get("bytes_in", 0) + w.get("bytes_out", 0) for w in workers),
        requests=sum(w.get("requests", 0) for w in workers),
    )
    per_round = {k: round(totals[k] / rounds, 5) if rounds else None for k in PHASES + ("bytes", "requests")}
    fraction = round(1.0 - totals["compute_s"] / active, 4) if active else None
    return {"totals": totals, "per_round": per_round, "communication_fraction": fraction}


def summarise(storage, job: str, targets=(0.98, 0.99)) -> dict:
    """Accuracy per evaluation, time to each target, the workers' time split, and GB-s billed to workers."""
    events = read_metrics(storage, job)
    evals = [e for e in events if e.get("event") == "eval"]
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    workers = (
        done["workers"]
        if done
        else [read_json(storage, JobLayout(job).worker_stats(w)) or {} for w in _worker_range(events)]
    )
    billed = {e["activation"]: e for e in events if e.get("event") == "billed"}
    start = job_start(events)
    ends = [e["time"] for e in events if e.get("event") in ("done", "failed")]
    return {
        "job": job,
        "evaluations": [
            {
                **{k: e[k] for k in ("round", "batch", "epoch", "accuracy", "loss")},
                "seconds": round(e.get("model_time", e["time"]) - start, 3) if start else None,
            }
            for e in evals
        ],
        "final_accuracy": evals[-1]["accuracy"] if evals else None,
        "elapsed_s": round(ends[-1] - start, 3) if start and ends else None,
        "time_to_accuracy_s": {str(t): time_to_accuracy(events, t) for t in targets},
        "workers": worker_totals([w for w in workers if w]),
        "local_steps": sorted({w.get("k") for w in workers if w and w.get("k")}),
        "replacements": sum(1 for e in events if e.get("event") == "worker_failed"),
        "left_out": [item for w in workers if w for item in w.get("left_out", [])],
        "coordinator_runs": sum(1 for e in events if e.get("event") == "start"),
        "gb_s_workers": round(sum(e["gb_s"] for e in billed.values()), 3),
        "model_key": JobLayout(job).final,
    }


def _worker_range(events: list[dict]) -> range:
    config = next((e["config"] for e in events if e.get("event") == "start"), {"workers": 0})
    return range(config["workers"])
