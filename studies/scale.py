"""`deployer bench scale`: how the cost of a read, a list and a start grows with what is stored.

Two curves, each point against a real server on 127.0.0.1: the local platform with N
activation records in its store (reads through the REST API), and the embedded S3 with N
objects in one bucket (through boto3). The records and objects are put in place through
the stores' own APIs, which is what makes 100k points take minutes instead of hours; the
servers then start on them as they would after that many invokes or PUTs. Each curve's
growth is named from a log-log fit of its points: how the cost scales with N, not what it
costs at one N.
"""

from __future__ import annotations

import math
import os
import platform as pyplatform
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .loadgen import summarize_ms

BUCKET = "bench-scale"
NAMES = 100  # distinct action names among the records: a name filter matches 1 % of them
GROWTH_LIMITS = ((0.3, "flat"), (0.8, "sublinear"), (1.2, "linear"))  # exponent below -> name; above: "worse"


def growth(sizes: list[int], values: list[float]) -> dict:
    """The exponent b of value ~ size**b (least squares on logs) and its name: flat, sublinear, linear or worse."""
    points = [(math.log(s), math.log(max(v, 1e-9))) for s, v in zip(sizes, values, strict=True)]
    if len(points) < 2 or points[0][0] == points[-1][0]:
        return {"exponent": 0.0, "growth": "flat", "last_over_first": 1.0, "size_ratio": 1.0}
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    name = next((n for limit, n in GROWTH_LIMITS if b < limit), "worse")
    return {
        "exponent": round(b, 3),
        "growth": name,
        "last_over_first": round(values[-1] / values[0], 2) if values[0] else None,
        "size_ratio": round(sizes[-1] / sizes[0], 2),
    }


def _timed(call: Callable[[], object], samples: int) -> dict:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return summarize_ms(times)


def _record(namespace: str, i: int, start_ms: int) -> dict:
    name = f"scale-{i % NAMES}"
    return {
        "activationId": uuid.uuid4().hex,
        "namespace": namespace,
        "name": name,
        "version": "0.0.1",
        "subject": namespace,
        "publish": False,
        "start": start_ms,
        "end": start_ms + 3,
        "duration": 3,
        "statusCode": 0,
        "response": {"status": "success", "statusCode": 0, "success": True, "result": {"i": i}},
        "logs": [],
        "annotations": [
            {"key": "path", "value": f"{namespace}/{name}"},
            {"key": "kind", "value": "python:3.11"},
            {"key": "limits", "value": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}},
            {"key": "waitTime", "value": 1},
        ],
    }


def _add_records(db: Path, namespace: str, first: int, upto: int) -> list[str]:
    """Records first..upto-1, written as the platform writes them: begun, then ended by the writer thread."""
    from localwhisk.store import Store

    store = Store(db)
    ids = []
    try:
        base = int(time.time() * 1000) - upto
        for i in range(first, upto):
            doc = _record(namespace, i, base + i)
            store.begin_activation(doc)
            store.end_activation(doc)
            ids.append(doc["activationId"])
        store.flush()
    finally:
        store.close()
    return ids


def _db_bytes(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.glob("platform.db*"))


def bench_activations(sizes: list[int], samples: int, progress: Callable[[str], None]) -> dict:
    """One platform's store grown through `sizes`; at each, a fresh start and the reads through the REST API."""
    from localwhisk.server import NAMESPACE
    from localwhisk.supervisor import LocalPlatform

    points = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-platform-") as tmp:
        state = Path(tmp)
        ids: list[str] = []
        for n in sizes:
            progress(f"activation records: {n}")
            ids += _add_records(state / "platform.db", NAMESPACE, len(ids), n)
            t0 = time.perf_counter()
            with LocalPlatform(state, prewarm="none", max_containers=2) as info:
                point = {"n": n, "start_s": round(time.perf_counter() - t0, 3)}
                point.update(_read_records(info, ids, samples, random.Random(n)))
            point["disk_bytes_per_record"] = round(_db_bytes(state) / n, 1)
            points.append(point)
    return _curves(points, ("get", "list_200", "list_200_name", "count", "count_name"), ("start_s",))


def _read_records(info, ids: list[str], samples: int, rng: random.Random) -> dict:
    import requests

    http = requests.Session()
    http.auth = tuple(info.auth.split(":", 1))
    base = f"{info.apihost}/api/v1/namespaces/_/activations"

    def get(url: str, **params) -> None:
        r = http.get(url, params=params, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"GET {r.url} answered {r.status_code}: {r.text[:200]}")

    def name() -> str:
        return f"scale-{rng.randrange(NAMES)}"

    try:
        return {
            "get": _timed(lambda: get(f"{base}/{rng.choice(ids)}"), samples),
            "list_200": _timed(lambda: get(base, limit=200), samples),
            "list_200_name": _timed(lambda: get(base, limit=200, name=name()), samples),
            "count": _timed(lambda: get(base, count="true"), samples),
            "count_name": _timed(lambda: get(base, count="true", name=name()), samples),
        }
    finally:
        http.close()


def _add_objects(root: Path, first: int, upto: int, body: bytes) -> None:
    """Objects first..upto-1 through the object store itself; REDUCED_REDUNDANCY skips the fsyncs of a filler."""
    from embedded_s3.store import Meta, ObjectStore, Payload

    store = ObjectStore(root)
    store.create_bucket(BUCKET)
    for i in range(first, upto):
        store.put(BUCKET, _key(i), Payload([body]), Meta(storage_class="REDUCED_REDUNDANCY"))


def _request_objects(s3, n: int, samples: int, body: bytes, rng: random.Random) -> dict:
    from .storage_latency import _client

    client = _client(s3.endpoint_url, s3.access_key, s3.secret_key)
    added = iter(range(samples))

    def page(after: str) -> None:
        got = client.list_objects_v2(Bucket=BUCKET, Prefix="data/", MaxKeys=1000, StartAfter=after)
        if len(got.get("Contents", [])) != min(1000, n - (int(after[5:]) + 1 if after else 0)):
            raise RuntimeError(f"a page after {after!r} listed {len(got.get('Contents', []))} keys")

    try:
        return {  # the lists first: the PUTs' objects are outside their prefix, but not outside the bucket
            "list_first_page": _timed(lambda: page(""), samples),
            "list_middle_page": _timed(lambda: page(_key(n // 2)), samples),
            "get": _timed(lambda: client.get_object(Bucket=BUCKET, Key=_key(rng.randrange(n)))["Body"].read(), samples),
            "head": _timed(lambda: client.head_object(Bucket=BUCKET, Key=_key(rng.randrange(n))), samples),
            "put": _timed(lambda: client.put_object(Bucket=BUCKET, Key=f"new/{n}/{next(added)}", Body=body), samples),
        }
    finally:
        client.close()


def _drop_new(root: Path, n: int, samples: int) -> None:
    """The PUTs' objects go, so the bucket holds exactly the next point's N."""
    from embedded_s3.store import ObjectStore

    store = ObjectStore(root)
    for i in range(samples):
        store.delete(BUCKET, f"new/{n}/{i}")


def _key(i: int) -> str:
    return f"data/{i:09d}"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_objects(sizes: list[int], samples: int, object_bytes: int, progress: Callable[[str], None]) -> dict:
    """One bucket grown through `sizes`; at each, a fresh server and its PUT/GET/HEAD/list through boto3."""
    from localwhisk.s3 import EmbeddedS3

    body = os.urandom(object_bytes)
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-s3-") as tmp:
        root, have = Path(tmp) / "objects", 0
        for n in sizes:
            progress(f"S3 objects: {n}")
            _add_objects(root, have, n, body)
            have = n
            t0 = time.perf_counter()
            with EmbeddedS3(root=root) as s3:
                point = {"n": n, "start_s": round(time.perf_counter() - t0, 3), "rss_kb_after_start": _rss_kb(s3.pid)}
                point.update(_request_objects(s3, n, samples, body, random.Random(n)))
                point["rss_kb_after_requests"] = _rss_kb(s3.pid)  # the listing's key index included
            _drop_new(root, n, samples)
            points.append(point)
    return _curves(
        points,
        ("put", "get", "head", "list_first_page", "list_middle_page"),
        ("start_s", "rss_kb_after_start", "rss_kb_after_requests"),
    )


def _curves(points: list[dict], timed: tuple[str, ...], plain: tuple[str, ...]) -> dict:
    sizes = [p["n"] for p in points]
    curves = {f"{k}_p50_ms": growth(sizes, [p[k]["p50_ms"] for p in points]) for k in timed}
    curves.update({k: growth(sizes, [p[k] for p in points]) for k in plain})
    if "disk_bytes_per_record" in points[0]:
        curves["disk_bytes_per_record"] = growth(sizes, [p["disk_bytes_per_record"] for p in points])
    return {"points": points, "curves": curves}


def run(
    record_sizes: list[int],
    object_sizes: list[int],
    samples: int = 50,
    object_bytes: int = 1000,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Both curves, one after the other, in this run."""
    report: dict = {
        "benchmark": "scale",
        "conditions": {
            "host_cores": os.cpu_count(),
            "python": pyplatform.python_version(),
            "samples_per_point": samples,
            "object_bytes": object_bytes,
            "records": f"{NAMES} action names, inserted through localwhisk.store; reads through the REST API",
            "objects": "one bucket, inserted through embedded_s3.store; requests through boto3 over HTTP",
            "growth": "exponent b of p50 ~ N**b (log-log least squares): <0.3 flat, <0.8 sublinear, <1.2 linear, "
            "else worse",
        },
    }
    if record_sizes:
        report["activations"] = bench_activations(record_sizes, samples, progress)
    if object_sizes:
        report["objects"] = bench_objects(object_sizes, samples, object_bytes, progress)
    return report
