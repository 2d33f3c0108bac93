"""`deployer bench storage`: the durable embedded S3 against the in-memory moto server it replaced.

Both run in the same benchmark run, driven the same way: N client threads, each with its
own authenticated boto3 client, first PUT then GET M objects of the same size. The
baseline is moto's ThreadedMotoServer in this process, keeping objects in memory (how the
platform ran before); the embedded S3 is its own process writing every object through to
disk (write, fsync, rename, fsync of the folder) before it answers.
"""

from __future__ import annotations

import itertools
import os
import platform as pyplatform
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .errors import BenchError
from .loadgen import closed_loop

BUCKET = "bench-storage"


def _client(endpoint: str, access_key: str, secret_key: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, max_pool_connections=4),
    )


def drive(
    endpoint: str, access_key: str, secret_key: str, clients: int, requests_per_client: int, size_bytes: int
) -> dict:
    """PUT then GET `clients` x `requests_per_client` objects; latencies, throughput and errors of each."""
    _client(endpoint, access_key, secret_key).create_bucket(Bucket=BUCKET)
    body = os.urandom(size_bytes)

    def op(kind: str) -> Callable[[], None]:
        """One call of `kind`; each of closed_loop's threads gets a client and a worker number of its own."""
        local, numbers = threading.local(), itertools.count()

        def call() -> None:
            if not hasattr(local, "client"):
                local.client, local.worker, local.i = _client(endpoint, access_key, secret_key), next(numbers), 0
            key = f"bench/{local.worker}/{local.i}"
            local.i += 1
            if kind == "put":
                local.client.put_object(Bucket=BUCKET, Key=key, Body=body)
            elif local.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() != body:
                raise RuntimeError(f"GET {key} returned other bytes than were PUT")

        return call

    return {
        "put": closed_loop(op("put"), clients, requests_per_client),
        "get": closed_loop(op("get"), clients, requests_per_client),
    }


def bench_durable(clients: int, requests_per_client: int, size_bytes: int, folder: Path | None) -> dict:
    from localwhisk.s3 import EmbeddedS3

    with tempfile.TemporaryDirectory(prefix="bench-storage-", dir=folder) as tmp:
        with EmbeddedS3(root=Path(tmp) / "objects") as s3:
            return drive(s3.endpoint_url, s3.access_key, s3.secret_key, clients, requests_per_client, size_bytes)


def bench_moto(clients: int, requests_per_client: int, size_bytes: int) -> dict:
    import logging

    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise BenchError(
            "the baseline is moto's in-memory S3, which is not installed: pip install 'ow-ml-toolkit[bench]' "
            "(./run setup installs it)"
        ) from exc

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        port = server.get_host_and_port()[1]
        return drive(f"http://127.0.0.1:{port}", "moto", "moto-secret", clients, requests_per_client, size_bytes)
    finally:
        server.stop()


def run(
    clients: int = 4,
    requests_per_client: int = 500,
    size_bytes: int = 250_000,
    folder: Path | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Both servers, one after the other, in this run; `folder` is where the durable store writes."""
    report: dict = {
        "benchmark": "storage",
        "conditions": {
            "host_cores": os.cpu_count(),
            "python": pyplatform.python_version(),
            "clients": clients,
            "requests_per_client": requests_per_client,
            "object_bytes": size_bytes,
            "store_folder": str(folder or tempfile.gettempdir()),
            "durable": "own process; write, fsync, rename, fsync folder before 200; SigV4 checked",
            "baseline": "moto ThreadedMotoServer in this process, objects in memory",
        },
    }
    progress("moto in memory (baseline)")
    report["moto_in_memory"] = bench_moto(clients, requests_per_client, size_bytes)
    progress("embedded S3, durable")
    report["durable"] = bench_durable(clients, requests_per_client, size_bytes, folder)
    ratios = {}
    for op in ("put", "get"):
        base, ours = report["moto_in_memory"][op], report["durable"][op]
        if base.get("n") and ours.get("n"):
            ratios[f"{op}_p50_durable_over_moto"] = round(ours["p50_ms"] / base["p50_ms"], 2)
            ratios[f"{op}_p99_durable_over_moto"] = round(ours["p99_ms"] / base["p99_ms"], 2)
    report["ratios"] = ratios
    report["errors"] = sum(report[s][op]["errors"] for s in ("moto_in_memory", "durable") for op in ("put", "get"))
    return report
