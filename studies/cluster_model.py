"""A model of a round on N machines, from parts measured on one: what to expect of a cluster we cannot run here.

Every training topology moves the same update (B bytes) through object storage; they differ
in how many requests of which size each worker makes, and in who waits for whom. A round is
modelled as its critical path: one worker's compute, then the storage phases it must wait
for, each phase the time of its requests on one machine.

The assumptions are ASSUMPTIONS below, each a place where a real cluster may differ; every
prediction carries them.

Topologies (request counts per worker per round; B the update's bytes):
- allreduce: PUT its update (1 x B), GET the N-1 peers' (N-1 x B).
- scatter (LambdaML's ScatterReduce): PUT N shards (N x B/N), GET its shard from the N-1
  others (N-1 x B/N), PUT the reduced shard (1 x B/N), GET the N-1 other reduced shards.
- ps: workers PUT their update (1 x B); the PS GETs N (N x B) and PUTs the weights
  (1 x B); workers GET the weights (1 x B). The PS's phase is on every worker's path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

TOPOLOGIES = ("allreduce", "scatter", "ps")
ASSUMPTIONS = (
    "1. One worker per machine; workers are identical and start a round together (no stragglers).",
    "2. A storage request costs latency_s + bytes / request_bps; a worker keeps up to parallel_requests in flight, "
    "and its machine's link (nic_bps) caps their sum.",
    "3. The storage service's aggregate throughput is storage_bps (infinite for S3 at these sizes: it scales per "
    "prefix); when finite, a phase lasts at least all its bytes over it.",
    "4. Compute per step does not depend on N (data parallel, a fixed batch per worker).",
    "5. Training workers are long-running invocations: a round pays no invocation; FedAvg's OpenWhisk executor pays "
    "one warm invocation per client update (invoke_s); cold starts fall in the first round only, not modelled.",
    "6. Averaging and (de)serialising an update cost reduce_bps bytes per second of one core.",
    "7. Nothing fails; no retries.",
)


@dataclass(frozen=True)
class Parts:
    """The measured parts; the defaults are placeholders for a model run without a report (see `from_scale`)."""

    latency_s: float = 0.005  # one small request's round trip
    request_bps: float = 100e6  # one request's bytes per second
    nic_bps: float = 1.25e9  # a machine's link (10 Gbit/s)
    storage_bps: float = math.inf  # the storage service, all machines together
    parallel_requests: int = 8
    step_s: float = 0.02  # compute of one training step on one worker
    update_bytes: int = 4 * 199_210  # the 2NN's float32 weights
    reduce_bps: float = 2e9  # averaging and (de)serialising, bytes per second
    invoke_s: float = 0.003  # a warm blocking invocation, platform overhead only
    cold_start_s: float = 0.5
    notes: dict = field(default_factory=dict, compare=False)


def requests_s(parts: Parts, count: int, each_bytes: float) -> float:
    """`count` requests of `each_bytes` from one machine, `parallel_requests` at a time (assumption 2)."""
    if count <= 0:
        return 0.0
    waves = math.ceil(count / parts.parallel_requests)
    bandwidth = min(parts.parallel_requests * parts.request_bps, parts.nic_bps)
    return waves * parts.latency_s + count * each_bytes / bandwidth


def _phase(parts: Parts, machines: int, count: int, each_bytes: float) -> float:
    """A phase where each of `machines` makes `count` requests: its own time, or the storage's (assumption 3)."""
    own = requests_s(parts, count, each_bytes)
    return max(own, machines * count * each_bytes / parts.storage_bps)


def round_s(parts: Parts, topology: str, n: int) -> dict:
    """The time of one synchronous step on `n` workers, split into compute, storage and reduce.

    Raises:
        ValueError: an unknown topology or n < 1.
    """
    if n < 1:
        raise ValueError(f"need at least 1 worker, got {n}")
    b = parts.update_bytes
    if topology == "allreduce":
        storage = _phase(parts, n, 1, b) + _phase(parts, n, n - 1, b)
        reduce = n * b / parts.reduce_bps
    elif topology == "scatter":
        shard = b / n
        storage = (
            _phase(parts, n, n, shard)
            + _phase(parts, n, n - 1, shard)
            + _phase(parts, n, 1, shard)
            + _phase(parts, n, n - 1, shard)
        )
        reduce = 2 * b / parts.reduce_bps
    elif topology == "ps":
        storage = _phase(parts, n, 1, b) + _phase(parts, 1, n, b) + _phase(parts, 1, 1, b) + _phase(parts, n, 1, b)
        reduce = n * b / parts.reduce_bps
    else:
        raise ValueError(f"unknown topology {topology!r}: one of {', '.join(TOPOLOGIES)}")
    return {
        "n": n,
        "round_s": parts.step_s + storage + reduce,
        "compute_s": parts.step_s,
        "storage_s": storage,
        "reduce_s": reduce,
    }


def fedavg_openwhisk_round_s(
    parts: Parts, clients_per_round: int, machines: int, slots_per_machine: int, client_update_s: float
) -> dict:
    """FedAvg's OpenWhisk executor: the parent PUTs the weights once; each client is a warm invocation that GETs
    them, trains and PUTs its update, which the parent's thread then GETs; `machines * slots_per_machine` of
    them at once (assumptions 1, 5); the parent averages the m updates."""
    if min(clients_per_round, machines, slots_per_machine) < 1:
        raise ValueError("clients, machines and slots must each be at least 1")
    b = parts.update_bytes
    one = parts.invoke_s + 3 * requests_s(parts, 1, b) + client_update_s
    waves = math.ceil(clients_per_round / (machines * slots_per_machine))
    storage_floor = 3 * clients_per_round * b / parts.storage_bps
    clients = max(waves * one, storage_floor)
    average = clients_per_round * b / parts.reduce_bps
    return {
        "n": machines,
        "round_s": requests_s(parts, 1, b) + clients + average,
        "waves": waves,
        "client_s": one,
        "average_s": average,
    }


def executor_round_s(clients_per_round: int, workers: int, client_update_s: float, overhead_s: float = 0.0) -> float:
    """A process or Ray executor's round on `workers` cores: the clients in waves, plus the round's fixed cost."""
    return math.ceil(clients_per_round / workers) * client_update_s + overhead_s


def from_scale(report: dict, step_s: float | None = None, update_bytes: int | None = None) -> Parts:
    """The parts `bench scale` measured: latency from the smallest bucket's GET p50, per-request bandwidth from
    the largest object's GET and PUT, the warm invoke from one at a time."""
    kwargs: dict = {}
    notes: dict = {}
    objects = report.get("objects", {}).get("points")
    if objects:
        kwargs["latency_s"] = objects[0]["get"]["p50_ms"] / 1000
        notes["latency_s"] = f"GET p50 with {objects[0]['n']} objects"
    sizes = report.get("object_sizes", {}).get("points")
    if sizes:
        big = sizes[-1]
        kwargs["request_bps"] = 1e6 * min(big["put_mb_s"], big["get_mb_s"])
        notes["request_bps"] = f"the slower of PUT and GET of {big['n']} bytes"
    invokes = report.get("invokes", {}).get("points")
    if invokes:
        kwargs["invoke_s"] = invokes[0]["p50_ms"] / 1000
        notes["invoke_s"] = f"blocking no-op p50 at concurrency {invokes[0]['n']}"
    if step_s is not None:
        kwargs["step_s"] = step_s
    if update_bytes is not None:
        kwargs["update_bytes"] = update_bytes
    return Parts(**kwargs, notes=notes)


def predict(parts: Parts, machines: list[int], clients_per_round: int = 100, client_update_s: float = 0.5) -> dict:
    """Curves of seconds per round against machines, each topology and FedAvg's OpenWhisk executor."""
    curves = {t: [round_s(parts, t, n) for n in machines] for t in TOPOLOGIES}
    curves["fedavg-openwhisk"] = [
        fedavg_openwhisk_round_s(parts, clients_per_round, n, 1, client_update_s) for n in machines
    ]
    return {
        "benchmark": "model",
        "parts": {k: v for k, v in asdict(parts).items() if k != "notes"} | {"storage_bps": str(parts.storage_bps)},
        "parts_from": parts.notes,
        "fedavg": {"clients_per_round": clients_per_round, "client_update_s": client_update_s, "slots_per_machine": 1},
        "assumptions": list(ASSUMPTIONS),
        "curves": curves,
    }


def check(predicted: float, measured: float, tolerance: float = 0.25) -> dict:
    """How far a prediction is from a measured point, and whether within `tolerance` of it."""
    error = (predicted - measured) / measured
    return {
        "predicted_s": predicted,
        "measured_s": measured,
        "error": round(error, 3),
        "within": abs(error) <= tolerance,
    }
