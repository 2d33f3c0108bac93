"""What a finished (or running) job measured, read back from its metrics and its workers' (and PS's) reports."""

from __future__ import annotations

from .coordinator import read_json, read_metrics
from .job import PS, JobLayout

PHASES = ("compute_s", "get_s", "put_s", "wait_s", "startup_s")
CPU = ("compute_cpu_s", "cpu_s", "main_cpu_s")  # the main thread's CPU in compute, all threads', the main thread's


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

    `requests` are every S3 request of the slot (the exchange's PUTs, GETs and polls that found
    nothing, and its claims, stats and checkpoints): the load a round puts on the endpoint.
    """
    totals = {k: round(sum(w.get(k, 0.0) for w in workers), 4) for k in PHASES + CPU}
    rounds = sum(w.get("rounds", 0) for w in workers)
    active = sum(w.get("active_s", 0.0) for w in workers)
    totals.update(
        rounds=rounds,
        active_s=round(active, 3),
        misses=sum(w.get("misses", 0) for w in workers),
        bytes=sum(w.get("bytes_in", 0) + w.get("bytes_out", 0) for w in workers),
        requests=sum(_requests(w) for w in workers),
    )
    per_round = {k: round(totals[k] / rounds, 5) if rounds else None for k in PHASES + CPU + ("bytes", "requests")}
    fraction = round(1.0 - totals["compute_s"] / active, 4) if active else None
    return {"totals": totals, "per_round": per_round, "communication_fraction": fraction}


def _requests(stats: dict) -> int:
    """Every storage request of a slot's activation (its exchange, claims, stats and checkpoints)."""
    counted = stats.get("requests")
    return counted.get("total", 0) if isinstance(counted, dict) else 0


def exchange_per_step(workers: list[dict], ps: dict | None, rounds: int, steps: int) -> dict:
    """Requests and bytes of the workers and the PS together, per round of the job and per step of a worker.

    A round is one step in sync mode and K local steps in local mode; the bytes count both ways.
    """
    everyone = [w for w in workers if w] + ([ps] if ps else [])
    requests = sum(_requests(w) for w in everyone)
    moved = sum(w.get("bytes_in", 0) + w.get("bytes_out", 0) for w in everyone)
    return {
        "rounds": rounds,
        "steps": steps,
        "requests": round(requests / steps, 2) if steps else None,
        "bytes": round(moved / steps) if steps else None,
        "requests_per_round": round(requests / rounds, 2) if rounds else None,
        "bytes_per_round": round(moved / rounds) if rounds else None,
    }


def summarise(storage, job: str, targets=(0.98, 0.99)) -> dict:
    """Accuracy per evaluation, time to each target, the workers' and PS's time split, requests, GB-s billed."""
    events = read_metrics(storage, job)
    evals = [e for e in events if e.get("event") == "eval"]
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    layout = JobLayout(job)
    workers = (
        done["workers"] if done else [read_json(storage, layout.worker_stats(w)) or {} for w in _worker_range(events)]
    )
    ps = done.get("ps") if done else read_json(storage, layout.worker_stats(PS))
    billed = {e["activation"]: e for e in events if e.get("event") == "billed"}
    of_ps = [e for e in billed.values() if e.get("worker") == PS]
    of_workers = [e for e in billed.values() if e.get("worker") != PS]
    rounds = done["round"] if done else max((w.get("round", 0) for w in workers if w), default=0)
    steps = done["batch"] if done else max((w.get("batch", 0) for w in workers if w), default=0)
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
        "ps": worker_totals([ps])["totals"] if ps else None,
        "per_step": exchange_per_step(workers, ps, rounds, steps),
        "local_steps": sorted({w.get("k") for w in workers if w and w.get("k")}),
        "replacements": sum(1 for e in events if e.get("event") == "worker_failed"),
        "left_out": [item for w in workers if w for item in w.get("left_out", [])],
        "coordinator_runs": sum(1 for e in events if e.get("event") == "start"),
        "gb_s_workers": round(sum(e["gb_s"] for e in of_workers), 3),
        "gb_s_ps": round(sum(e["gb_s"] for e in of_ps), 3),
        "activation_s_workers": round(sum(e.get("duration_ms", 0) for e in of_workers) / 1000.0, 3),
        "activation_s_ps": round(sum(e.get("duration_ms", 0) for e in of_ps) / 1000.0, 3),
        "model_key": JobLayout(job).final,
        "started_at": start,
        # the processes that ran the slots' last activations, for a profile of the machine during the job
        "pids": {
            **{w["pid"]: f"worker {i}" for i, w in enumerate(workers) if w and w.get("pid")},
            **({ps["pid"]: "ps"} if ps and ps.get("pid") else {}),
        },
    }


def _worker_range(events: list[dict]) -> range:
    config = next((e["config"] for e in events if e.get("event") == "start"), {"workers": 0})
    return range(config["workers"])
