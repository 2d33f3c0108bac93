"""`deployer bench exchange`: where a synchronous step's exchange spends its milliseconds.

N worker processes run the exchange of a sync all-reduce step as mlcore.training.worker does
it, without the model: CPU spent as compute (a spin of `compute_ms` over N, the gradient of
one worker's share of the global batch, so that wall over `compute_ms` is the ratio to one
process that computes the whole batch and exchanges nothing),
an update of LeNet-5's size encoded as configured and put in the background, the peers'
updates of the same round gathered (polling for the ones not there yet) and decoded. They
talk to a real embedded S3 process over HTTP, whose CPU is read from /proc before and after.

Per step it reports the workers' own CPU (process and main thread), the endpoint's CPU, wall,
time waiting for peers, requests, bytes and misses (polls that found nothing). The
`request_costs` part puts single PUTs and GETs of the same blob through boto3 and through
the storage client's own signed path, one at a time, for each one's client and endpoint CPU
per request.
"""

from __future__ import annotations

import json
import os
import platform as pyplatform
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from mlcore.mnist import TRAIN_SIZE
from procs import cpu_s

from .errors import BenchError

BUCKET = "bench-exchange"
LENET5_PARAMS = 61_706
CLIENTS = ("boto3", "signed")


def process_cpu_s(pid: int) -> float:
    """Raises BenchError when the process is gone: a profile that lost its endpoint measured nothing."""
    used = cpu_s(pid)
    if used is None:
        raise BenchError(f"process {pid} ended during the profile")
    return used


class _Counted:
    """The storage a worker uses, counting its requests (each miss is one too)."""

    def __init__(self, storage) -> None:
        self.storage = storage
        self.requests = 0
        self._lock = threading.Lock()

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def put_bytes(self, *args, **kwargs) -> None:
        self._count()
        return self.storage.put_bytes(*args, **kwargs)

    def get_bytes(self, key: str, **kwargs) -> bytes:
        self._count()
        return self.storage.get_bytes(key, **kwargs)


def _spin(cpu_s: float) -> None:
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def _storage(endpoint: str, access_key: str, secret_key: str, client: str):
    from mlcore.storage import Storage, StorageConfig

    config = StorageConfig(endpoint, BUCKET, access_key, secret_key)
    return Storage(config, signed_path=client == "signed")


def _worker(args: dict) -> dict:  # pragma: no cover - runs in a child, `python -m studies.exchange_profile`
    """One worker's steps (or, with role "ps", the parameter server's rounds), timed from the moment its parent says
    go (a line on stdin); the topology is mlcore.training.topology's own, with a spin in place of the gradient."""
    import torch

    from mlcore.training.exchange import Exchange, Timer
    from mlcore.training.job import JobConfig, JobLayout
    from mlcore.training.topology import Cursor, Link, for_worker

    torch.set_num_threads(1)
    n, steps = args["workers"], args["steps"]
    config = JobConfig(args["run"], workers=n, mode="sync", topology=args["topology"], compress=args["compress"])
    storage = _Counted(_storage(args["endpoint"], args["access_key"], args["secret_key"], args["client"]))
    timer = Timer()
    exchange = Exchange(storage, timer, threads=n + 3)
    index = args["index"]
    vector = torch.randn(args["params"], generator=torch.Generator().manual_seed(index if index != "ps" else n))
    if index == "ps":
        serve = _ps_rounds(config, storage, exchange, vector)
    else:
        link = Link(config, JobLayout(config.job), index, storage, exchange, timer, lambda: False)
        topology = for_worker(link, None)
    print("ready", flush=True)
    sys.stdin.readline()
    wall0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
    for step in range(steps):
        if index == "ps":
            serve(step)
            continue
        _spin(args["compute_ms"] / 1000 / n)  # the global batch's compute, split as sync training splits it
        header = {"round": step, "batch": step, "k": 1, "worker": index}
        own = topology.put(step, vector, header)
        topology.reduce(Cursor(step, step, 1, vector, replaying=False), own, TRAIN_SIZE, False)
    exchange.finish()
    wall, cpu, main = time.perf_counter() - wall0, time.process_time() - cpu0, time.thread_time() - main0
    exchange.close()
    return {"wall_s": wall, "cpu_s": cpu, "main_cpu_s": main, "requests": storage.requests, **timer.report()}


def _ps_rounds(config, storage, exchange, vector):  # pragma: no cover - runs in a child
    """mlcore.training.ps's round without its checkpoints and progress: gather, mean, SGD step, publish."""
    from mlcore.training.exchange import decode
    from mlcore.training.job import JobLayout
    from mlcore.training.state import state_blob
    from mlcore.training.topology import in_worker_order, mean_of
    from mlcore.training.trainer import FlatSGD

    layout, sgd = JobLayout(config.job), FlatSGD(config)

    def serve(step: int) -> None:
        keys = [layout.update(step, w) for w in range(config.workers)]
        blobs = exchange.gather(keys, config.worker_timeout_s)
        exchange.flush()
        updates = {int(key.rsplit("/", 1)[1]): decode(blob, key) for key, blob in blobs.items()}
        model = sgd.step(vector, mean_of(in_worker_order(step, step, 1, updates)), config.lr)
        header = {"round": step + 1, "batch": step + 1, "k": 1}
        exchange.put_async(layout.weights(step + 1), state_blob(model, None, header), scratch=True)

    return serve


def profile_exchange(
    s3,
    workers: int,
    steps: int,
    client: str,
    compress: str = "fp16",
    compute_ms: float = 0.0,
    params: int = LENET5_PARAMS,
    topology: str = "allreduce",
) -> dict:
    """One row: `workers` processes (and with `ps` the parameter server's) running `steps` sync rounds of
    `topology` against `s3` (an EmbeddedS3), per step."""
    base = {
        "topology": topology,
        "workers": workers,
        "steps": steps,
        "client": client,
        "compress": compress,
        "compute_ms": compute_ms,
        "params": params,
        "endpoint": s3.endpoint_url,
        "access_key": s3.access_key,
        "secret_key": s3.secret_key,
        "run": f"run-{topology}-{client}-{workers}-{time.monotonic_ns()}",
    }
    roles = [*range(workers), *(["ps"] if topology == "ps" else [])]
    procs: list[subprocess.Popen] = []
    try:
        for i in roles:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "studies.exchange_profile", json.dumps({**base, "index": i})],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise BenchError(f"an exchange worker exited before it was ready (status {p.wait()})")
        endpoint0 = process_cpu_s(s3.pid)
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        endpoint = process_cpu_s(s3.pid) - endpoint0  # idle once the steps are done
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [p.returncode for p in procs if p.returncode]
    if failed:
        raise BenchError(f"exchange profile ({client}, {workers} workers): a worker exited {failed[0]}; see stderr")
    everyone = [json.loads(out.strip().splitlines()[-1]) for out in outputs]  # the workers, then any PS
    rows = everyone[:workers]
    wall = max(r["wall_s"] for r in rows)  # the slowest worker's steps, without its start and exit
    per_step = 1000.0 / steps

    def mean(field: str) -> float:
        return round(sum(r[field] for r in rows) / len(rows) * per_step, 3)

    client_cpu = sum(r["cpu_s"] for r in everyone)
    return {
        "topology": topology,
        "client": client,
        "workers": workers,
        "steps": steps,
        "compress": compress,
        "compute_ms": compute_ms,
        "wall_ms": round(wall * per_step, 3),
        "endpoint_cpu_ms": round(endpoint * per_step, 3),
        "client_cpu_ms": round(client_cpu * per_step, 3),  # all workers (and the PS) together
        "worker_cpu_ms": mean("cpu_s"),
        "worker_main_cpu_ms": mean("main_cpu_s"),
        "worker_wait_ms": mean("wait_s"),
        "worker_get_ms": mean("get_s"),
        "worker_put_ms": mean("put_s"),
        "requests": round(sum(r["requests"] for r in everyone) / steps, 2),
        "misses": round(sum(r["misses"] for r in everyone) / steps, 2),
        "bytes_out": round(sum(r["bytes_out"] for r in rows) / steps),
        "bytes_in": round(sum(r["bytes_in"] for r in rows) / steps),
        "cores_busy": round((endpoint + client_cpu) / wall, 2),
        # the share of one core each process used: the one near 1.0 is what bounds the step
        "endpoint_core": round(endpoint / wall, 2),
        "worker_core": round(max(r["cpu_s"] for r in rows) / wall, 2),
        # one process computes the whole batch in compute_ms a step and exchanges nothing
        "vs_one_process": round(wall * per_step / compute_ms, 2) if compute_ms else None,
    }


def request_costs(s3, client: str, requests: int, blob: bytes) -> dict:
    """Client CPU (this thread) and endpoint CPU per PUT and per GET of `blob`, one request at a time."""
    from mlcore.storage import WEIGHTS_TYPE

    storage = _storage(s3.endpoint_url, s3.access_key, s3.secret_key, client)
    storage.put_bytes("warm", blob)  # the connection and the signing key, outside the measure
    storage.get_bytes("warm")
    out = {"client": client}
    for op in ("put", "get"):
        endpoint0, cpu0, wall0 = process_cpu_s(s3.pid), time.thread_time(), time.perf_counter()
        for i in range(requests):
            if op == "put":
                storage.put_bytes(f"costs/{client}/{i}", blob, WEIGHTS_TYPE, "REDUCED_REDUNDANCY")  # as an update
            elif storage.get_bytes(f"costs/{client}/{i}") != blob:
                raise BenchError(f"GET costs/{client}/{i} through {client} returned other bytes than were PUT")
        per = 1000.0 / requests
        out[op] = {
            "client_cpu_ms": round((time.thread_time() - cpu0) * per, 3),
            "endpoint_cpu_ms": round((process_cpu_s(s3.pid) - endpoint0) * per, 3),
            "wall_ms": round((time.perf_counter() - wall0) * per, 3),
        }
    return out


def run(
    workers: tuple[int, ...] = (2, 4),
    steps: int = 200,
    clients: tuple[str, ...] = CLIENTS,
    compress: str = "fp16",
    compute_ms: float = 6.0,
    requests: int = 200,
    progress: Callable[[str], None] = lambda _m: None,
    topologies: tuple[str, ...] = ("allreduce",),
) -> dict:
    """Request costs per client, then a row per topology, client and worker count, all against one embedded S3."""
    import torch

    from localwhisk.s3 import EmbeddedS3
    from mlcore.training.exchange import encode

    blob = encode(torch.randn(LENET5_PARAMS), {"round": 0}, compress)
    report: dict = {
        "benchmark": "exchange",
        "conditions": {
            "host_cores": os.cpu_count(),
            "python": pyplatform.python_version(),
            "update_params": LENET5_PARAMS,
            "update_bytes": len(blob),
            "compress": compress,
            "compute_ms": compute_ms,
            "steps": steps,
            "pattern": "mlcore.training.topology's sync round with a spin for the gradient: put the update, reduce "
            "(gather, decode, mean, SGD step); ps adds mlcore.training.ps's round without checkpoints",
            "endpoint": "embedded S3 in its own process, REDUCED_REDUNDANCY updates; CPU from /proc/<pid>/stat",
            "per_step": "ms per step; client_cpu_ms sums the workers, worker_* are one worker's mean",
        },
        "request_costs": [],
        "rows": [],
    }
    with EmbeddedS3() as s3:
        _storage(s3.endpoint_url, s3.access_key, s3.secret_key, "boto3").ensure_bucket()
        for client in clients:
            progress(f"request costs through {client}")
            report["request_costs"].append(request_costs(s3, client, requests, blob))
        for topology in topologies:
            for n in workers:
                for client in clients:
                    progress(f"{topology}, {n} workers through {client}")
                    report["rows"].append(
                        profile_exchange(s3, n, steps, client, compress, compute_ms, topology=topology)
                    )
    return report


def view(report: dict) -> list:
    """Per-request costs, then a row per client and worker count (ms per step)."""
    from .tabular import Table

    costs = [
        (c["client"], op.upper(), c[op]["client_cpu_ms"], c[op]["endpoint_cpu_ms"], c[op]["wall_ms"])
        for c in report["request_costs"]
        for op in ("put", "get")
    ]
    fields = (
        "wall_ms",
        "client_cpu_ms",
        "endpoint_cpu_ms",
        "worker_wait_ms",
        "worker_get_ms",
        "requests",
        "misses",
        "cores_busy",
        "vs_one_process",
    )
    rows = [
        (r.get("topology", "allreduce"), r["client"], r["workers"], *(r[f] for f in fields)) for r in report["rows"]
    ]
    return [
        Table.of("one request at a time, ms each", ["client", "op", "client CPU", "endpoint CPU", "wall"], costs),
        Table.of(
            f"sync exchange per step ({report['conditions']['update_bytes']} bytes an update)",
            ["topology", "client", "workers", "wall", "client CPU", "endpoint CPU", "wait", "get", "requests"]
            + ["misses"]
            + ["cores", "x one process"],
            rows,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))), flush=True)
