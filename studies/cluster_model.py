"""A model of a round on N machines, from parts measured on one: what to expect of a cluster we cannot run here.

Every training topology moves the same update (B bytes) through object storage; they differ
in how many requests of which size each worker makes, and in who waits for whom. A round is
modelled as its critical path: one worker's compute, then the storage phases it must wait
for, each phase the time of its requests on one machine.

The assumptions are ASSUMPTIONS below, each a place where a real cluster may differ; every
prediction carries them, and where each part was measured (a placeholder says so). The same
model told it runs on one shared host (assumption 8) is checked against this machine's
measured rounds by studies.model_check.

Topologies (request counts per worker per round; B the update's bytes):
- allreduce: PUT its update (1 x B), GET the N-1 peers' (N-1 x B).
- scatter (LambdaML's ScatterReduce): PUT the N-1 shards the others reduce (N-1 x B/N), GET
  its shard from the N-1 others (N-1 x B/N), PUT the reduced shard (1 x B/N), GET the N-1
  other reduced shards.
- ps: workers PUT their update (1 x B); the PS GETs N (N x B) and PUTs the weights
  (1 x B); workers GET the weights (1 x B). The PS's phase is on every worker's path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

TOPOLOGIES = ("allreduce", "scatter", "ps")
ASSUMPTIONS = (
    "1. One worker per machine; workers are identical and start a round together (no stragglers).",
    "2. A storage request costs latency_s + bytes / request_bps (a PUT its own put_latency_s and put_bps where "
    "measured apart); a worker keeps up to parallel_requests in flight, and its machine's link (nic_bps) caps their "
    "sum.",
    "3. The storage service's aggregate throughput is storage_bps (infinite for S3 at these sizes: it scales per "
    "prefix); when finite, a phase lasts at least all its bytes over it.",
    "4. Compute per step (step_s, one worker's share on one thread) is given per N; the curves keep it fixed "
    "(a fixed batch per worker).",
    "5. Training workers are long-running invocations: a round pays no invocation; FedAvg's OpenWhisk executor pays "
    "one warm invocation per client update (invoke_s); cold starts fall in the first round only, not modelled.",
    "6. A round's CPU outside compute and requests (encoding one's update, decoding and averaging the others', the "
    "optimizer's step) is encode_s, decode_s, average_s and apply_s per whole update, bytes / reduce_bps each "
    "unless measured.",
    "7. Nothing fails; no retries; polls that find nothing, progress reports and checkpoints are not counted.",
    "8. Shared host (the check's mode, not the curves'): every process (workers, PS, storage endpoint, platform) "
    "runs on `cores` cores. The only change from the cluster mode: N workers computing at once take "
    "max(1, N / cores) times one's compute (and the same for their codec CPU), and a storage phase lasts at least "
    "its requests' endpoint CPU on the endpoint's one core and its requests' client plus endpoint CPU over "
    "`cores`. Where the topology's exchange floor was measured on the host (exchange_s: its own sync round, no "
    "compute, N processes and the endpoint), a round's storage phases and reduce are that floor, after the "
    "compute.",
)


@dataclass(frozen=True)
class Cost:
    """A cost per request that grows with its size: fixed_s + bytes * per_byte_s."""

    fixed_s: float = 0.0
    per_byte_s: float = 0.0

    def at(self, nbytes: float) -> float:
        return self.fixed_s + nbytes * self.per_byte_s

    @classmethod
    def fit(cls, points: list[tuple[float, float]]) -> Cost:
        """The least-squares line through (bytes, seconds) points, its slope and intercept kept at or above 0."""
        if len(points) < 2:
            raise ValueError(f"a fit needs at least 2 sizes, got {len(points)}")
        n = len(points)
        mx = sum(x for x, _ in points) / n
        my = sum(y for _, y in points) / n
        var = sum((x - mx) ** 2 for x, _ in points)
        if var == 0:
            raise ValueError("a fit needs at least 2 different sizes")
        slope = max(0.0, sum((x - mx) * (y - my) for x, y in points) / var)
        return cls(max(0.0, my - slope * mx), slope)


@dataclass(frozen=True)
class Host:
    """The shared host of assumption 8: `cores` for every process, and the storage endpoint on one of them."""

    cores: int = 2
    endpoint_cores: int = 1


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
    weights_bytes: int | None = None  # what the PS sends back (the update's bytes when None)
    reduce_bps: float = 2e9  # averaging and (de)serialising, bytes per second
    invoke_s: float = 0.003  # a warm blocking invocation, platform overhead only
    cold_start_s: float = 0.5
    put_latency_s: float | None = None  # a PUT's own fixed cost and bandwidth where measured apart from a GET's
    put_bps: float | None = None
    encode_s: float | None = None  # assumption 6, per whole update; bytes / reduce_bps when None
    decode_s: float | None = None
    average_s: float | None = None
    apply_s: float | None = None
    client_cpu: dict = field(default_factory=dict)  # "put"/"get" -> Cost: the worker's CPU per request
    endpoint_cpu: dict = field(default_factory=dict)  # "put"/"get" -> Cost: the storage endpoint's CPU per request
    exchange_s: dict = field(default_factory=dict)  # topology -> a round's exchange on the shared host, measured
    notes: dict = field(default_factory=dict, compare=False)

    def codec_s(self, name: str) -> float:
        given = getattr(self, f"{name}_s")
        return given if given is not None else self.update_bytes / self.reduce_bps


def requests_s(parts: Parts, count: int, each_bytes: float, op: str = "get") -> float:
    """`count` requests of `each_bytes` from one machine, `parallel_requests` at a time (assumption 2)."""
    if count <= 0:
        return 0.0
    latency, bps = parts.latency_s, parts.request_bps
    if op == "put":
        latency = parts.put_latency_s if parts.put_latency_s is not None else latency
        bps = parts.put_bps if parts.put_bps is not None else bps
    waves = math.ceil(count / parts.parallel_requests)
    bandwidth = min(parts.parallel_requests * bps, parts.nic_bps)
    return waves * latency + count * each_bytes / bandwidth


def _phase(parts: Parts, machines: int, count: int, each_bytes: float, op: str, host: Host | None) -> float:
    """A phase where each of `machines` makes `count` requests: its own time, or the storage's (assumption 3),
    or on a shared host what the endpoint's core and all the cores take for its requests' CPU (assumption 8)."""
    own = requests_s(parts, count, each_bytes, op)
    bound = machines * count * each_bytes / parts.storage_bps
    if host is not None and count > 0:
        total = machines * count
        endpoint = parts.endpoint_cpu.get(op, Cost()).at(each_bytes) * total
        client = parts.client_cpu.get(op, Cost()).at(each_bytes) * total
        bound = max(bound, endpoint / host.endpoint_cores, (endpoint + client) / host.cores)
    return max(own, bound)


def _shared(seconds: float, concurrent: int, host: Host | None) -> float:
    """`concurrent` processes each needing `seconds` of one core: on their own machines, or on the shared host."""
    return seconds if host is None else seconds * max(1.0, concurrent / host.cores)


def round_s(parts: Parts, topology: str, n: int, host: Host | None = None, local_steps: float = 1.0) -> dict:
    """The time of one round on `n` workers (one sync step, or `local_steps` local steps and their exchange), split
    into compute, storage and reduce; on a cluster (host None) or all on one shared host (assumption 8).

    Raises:
        ValueError: an unknown topology, n < 1 or local_steps < 1.
    """
    if n < 1:
        raise ValueError(f"need at least 1 worker, got {n}")
    if local_steps < 1:
        raise ValueError(f"a round takes at least 1 local step, got {local_steps}")
    b = parts.update_bytes
    w = parts.weights_bytes if parts.weights_bytes is not None else b
    enc, dec, avg, apply = (parts.codec_s(k) for k in ("encode", "decode", "average", "apply"))
    ps_reduce = 0.0
    if topology == "allreduce":
        phases = [(n, 1, b, "put"), (n, n - 1, b, "get")]
        reduce = enc + n * dec + n * avg + apply
    elif topology == "scatter":
        shard = b / n
        phases = [(n, n - 1, shard, "put"), (n, n - 1, shard, "get"), (n, 1, shard, "put"), (n, n - 1, shard, "get")]
        reduce = enc * (1 + 1 / n) + 2 * dec + avg + apply
    elif topology == "ps":
        phases = [(n, 1, b, "put"), (1, n, b, "get"), (1, 1, w, "put"), (n, 1, w, "get")]
        reduce = enc + dec + dec * w / b
        ps_reduce = n * dec + n * avg + apply + enc * w / b
    else:
        raise ValueError(f"unknown topology {topology!r}: one of {', '.join(TOPOLOGIES)}")
    compute = local_steps * _shared(parts.step_s + (apply if local_steps > 1 else 0.0), n, host)
    if host is not None and topology in parts.exchange_s:
        exchange = parts.exchange_s[topology]
        return {"n": n, "round_s": compute + exchange, "compute_s": compute, "exchange_s": exchange}
    storage = sum(_phase(parts, machines, count, each, op, host) for machines, count, each, op in phases)
    reduce = _shared(reduce, n, host) + ps_reduce
    return {
        "n": n,
        "round_s": compute + storage + reduce,
        "compute_s": compute,
        "storage_s": storage,
        "reduce_s": reduce,
    }


def fedavg_openwhisk_round_s(
    parts: Parts,
    clients_per_round: int,
    machines: int,
    slots_per_machine: int,
    client_update_s: float,
    host: Host | None = None,
    data_bytes: int = 0,
) -> dict:
    """FedAvg's OpenWhisk executor: the parent PUTs the weights once; each client is a warm invocation that GETs
    them (and its `data_bytes` of examples), trains and PUTs its update, which the parent's thread then GETs;
    `machines * slots_per_machine` of them at once (assumptions 1, 5, and 8 on a shared host); the parent averages
    the m updates."""
    if min(clients_per_round, machines, slots_per_machine) < 1:
        raise ValueError("clients, machines and slots must each be at least 1")
    b = parts.update_bytes
    concurrent = min(clients_per_round, machines * slots_per_machine)
    requests = [(b, "get"), (b, "put"), (b, "get")] + ([(data_bytes, "get")] if data_bytes else [])
    storage = sum(_phase(parts, concurrent if host else 1, 1, size, op, host) for size, op in requests)
    one = parts.invoke_s + storage + _shared(client_update_s, concurrent, host)
    waves = math.ceil(clients_per_round / (machines * slots_per_machine))
    storage_floor = 3 * clients_per_round * b / parts.storage_bps
    clients = max(waves * one, storage_floor)
    average = clients_per_round * parts.codec_s("average")
    return {
        "n": machines,
        "round_s": requests_s(parts, 1, b, "put") + clients + average,
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
    for name, value in (("step_s", step_s), ("update_bytes", update_bytes)):
        if value is not None:
            kwargs[name] = value
            notes[name] = f"--{name.replace('_', '-')} as given"
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
        "parts_from": {
            name: parts.notes.get(
                name,
                "placeholder, not measured: give --from a bench scale report"
                if name in ("latency_s", "request_bps", "invoke_s")
                else "assumed (a Parts default)",
            )
            for name in asdict(parts)
            if name != "notes"
        },
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
