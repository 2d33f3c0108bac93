"""`deployer bench model --calibrate`: the parts the cluster model's check needs that no committed report holds.

Each part is measured apart from every point the check compares against (no training job,
no FedAvg round runs here):
- the cost of one S3 request by size, one at a time against a real embedded S3 process
  through the signed client the workers use: its wall, the client's CPU and the endpoint's
  CPU (from /proc), at three sizes, so the model can fit a line (fixed cost + bytes / rate);
- the CPU a round spends outside compute and requests, per update: encoding one update,
  decoding and averaging the peers', the optimizer's step, timed in one thread on the
  model's size with mlcore's own functions;
- a model's compute floor (mlcore.training.baseline.compute_floor: N workers computing
  their share of the global batch at once, exchanging nothing), for the models whose study
  did not record it;
- each topology's exchange floor: N processes running the topology's own sync round
  (mlcore.training.topology, and the parameter server's round) with no compute at all,
  against an embedded S3 on this host (studies.exchange_profile). On a shared host a round's
  exchange costs more than its requests and codec add up to (wake-ups, threads and processes
  taking turns on the cores); this measures it whole, with no model and no platform.
"""

from __future__ import annotations

import os
import platform as pyplatform
import time
from collections.abc import Callable

REQUEST_SIZES = (65_536, 524_288, 4_194_304)
MODEL_PARAMS = {"lenet5": 61_706, "lenet5x4": 972_554}
TOPOLOGIES = ("allreduce", "scatter", "ps")


def request_costs_by_size(requests: int, sizes: tuple[int, ...] = REQUEST_SIZES) -> list[dict]:
    """Per size: PUT and GET wall, client CPU and endpoint CPU in ms per request, one request at a time."""
    from localwhisk.s3 import EmbeddedS3

    from .exchange_profile import _storage, request_costs

    out = []
    with EmbeddedS3() as s3:
        _storage(s3.endpoint_url, s3.access_key, s3.secret_key, "boto3").ensure_bucket()
        for size in sizes:
            costs = request_costs(s3, "signed", requests, os.urandom(size))
            out.append({"bytes": size, "requests": requests, "put": costs["put"], "get": costs["get"]})
    return out


def _thread_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    started = time.thread_time()
    for _ in range(repeats):
        fn()
    return round((time.thread_time() - started) * 1000 / repeats, 4)


def round_cpu(params: int, repeats: int) -> dict:
    """ms of one thread's CPU per update of `params`, with the functions a worker's round calls: encode (fp16),
    decode, the mean of 4 updates over 4, and the sync optimizer's step (FlatSGD, the study's recipe)."""
    import torch

    from mlcore.training.exchange import decode, encode
    from mlcore.training.job import JobConfig
    from mlcore.training.topology import mean_of
    from mlcore.training.trainer import FlatSGD

    torch.set_num_threads(1)
    vectors = [torch.randn(params) for _ in range(4)]
    blob = encode(vectors[0], {"round": 0}, "fp16")
    weights_blob = encode(vectors[0], {"round": 0}, "none")
    updates = [({}, v) for v in vectors]
    sgd = FlatSGD(JobConfig(job="calibrate"))
    return {
        "params": params,
        "update_bytes": len(blob),
        "weights_bytes": len(weights_blob),
        "encode_ms": _thread_ms(lambda: encode(vectors[0], {"round": 0}, "fp16"), repeats),
        "decode_ms": _thread_ms(lambda: decode(blob), repeats),
        "average_one_ms": round(_thread_ms(lambda: mean_of(updates), repeats) / len(updates), 4),
        "sgd_step_ms": _thread_ms(lambda: sgd.step(vectors[1], vectors[2], 0.05), repeats),
        "repeats": repeats,
    }


def compute_floors(model: str, workers: tuple[int, ...], steps: int) -> dict:
    """The compute floor of `model` at each worker count, with the bench train study's recipe (batch 128)."""
    from dataclasses import replace

    from mlcore.training.baseline import compute_floor
    from mlcore.training.job import JobConfig

    config = JobConfig(job="floor", data="local", model=model, batch_size=128, precision="auto")
    return {str(n): compute_floor(replace(config, workers=n), steps=steps) for n in workers}


def exchange_floors(workers: tuple[int, ...], steps: int, progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Per model, worker count and topology: ms of wall per sync round with no compute, and the round's CPU."""
    from localwhisk.s3 import EmbeddedS3

    from .exchange_profile import _storage, profile_exchange

    out: dict = {}
    with EmbeddedS3() as s3:
        _storage(s3.endpoint_url, s3.access_key, s3.secret_key, "boto3").ensure_bucket()
        for model, params in MODEL_PARAMS.items():
            for n in workers:
                progress(f"{model} exchange floor, {n} workers")
                for topology in TOPOLOGIES:
                    row = profile_exchange(s3, n, steps, "signed", "fp16", 0.0, params=params, topology=topology)
                    out.setdefault(model, {}).setdefault(str(n), {})[topology] = {
                        k: row[k] for k in ("wall_ms", "client_cpu_ms", "endpoint_cpu_ms", "requests", "steps")
                    }
    return out


def calibrate(
    floor_models: tuple[str, ...] = ("lenet5",),
    workers: tuple[int, ...] = (2, 4),
    requests: int = 30,
    floor_steps: int = 50,
    repeats: int = 20,
    exchange_steps: int = 100,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Every part above, as one report (`deployer bench model --calibrate --json ...`).

    The load average is read before the first part: after, it counts the calibration's own processes.
    """
    load = os.getloadavg()
    progress("S3 request costs by size")
    costs = request_costs_by_size(requests)
    progress("a round's CPU outside compute")
    codec = {model: round_cpu(params, repeats) for model, params in MODEL_PARAMS.items()}
    floors = {}
    for model in floor_models:
        progress(f"{model} compute floor at {', '.join(map(str, workers))} workers")
        floors[model] = compute_floors(model, workers, floor_steps)
    exchange = exchange_floors(workers, exchange_steps, progress)
    return {
        "benchmark": "model-calibration",
        "conditions": {
            "host_cores": os.cpu_count(),
            "python": pyplatform.python_version(),
            "load_average_1m": round(load[0], 2),  # before it started
            "client": "signed (the training workers' storage client)",
            "note": "one request at a time; CPU from thread_time (client) and /proc/<pid>/stat (endpoint)",
        },
        "request_costs": costs,
        "round_cpu": codec,
        "compute_floor": floors,
        "exchange_floor": exchange,
    }
