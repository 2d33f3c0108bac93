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

import base64
import http.client
import io
import json
import math
import os
import platform as pyplatform
import random
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

from .loadgen import closed_loop, summarize_ms

BUCKET = "bench-scale"
NAMES = 100  # distinct action names among the records: a name filter matches 1 % of them
# exponent below -> name; above: "worse". A cost that falls as N grows (a warmer cache, a cost paid once and
# shared) is not flat: it says the small points pay something the large ones do not.
GROWTH_LIMITS = ((-0.2, "falls"), (0.3, "flat"), (0.8, "sublinear"), (1.2, "linear"))


def growth(sizes: list[int], values: list[float]) -> dict:
    """The exponent b of value ~ size**b (least squares on logs) and its name: falls, flat, ..., worse."""
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


def _rss(pid: int) -> dict:
    """The process's resident memory now and at its peak (VmHWM), in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "peak_rss_kb": int(fields["VmHWM"].split()[0])}


class _RepeatingBody(io.RawIOBase):
    """`size` bytes of a repeated random block, made as they are read: a 1 GB body without 1 GB in this process.
    Seekable, as boto3 reads a body once to sign it and again to send it."""

    def __init__(self, size: int, block: bytes) -> None:
        self.size, self._block, self._at = size, memoryview(block), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._at = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self.size}[whence] + offset
        return self._at

    def readinto(self, buffer) -> int:
        start = self._at % len(self._block)
        n = max(0, min(len(buffer), self.size - self._at, len(self._block) - start))
        buffer[:n] = self._block[start : start + n]
        self._at += n
        return n


def bench_object_sizes(sizes: list[int], progress: Callable[[str], None]) -> dict:
    """One object of each size PUT and read back through boto3 (one request each, no multipart); the server's
    resident memory after each, and its peak so far: a server that streams keeps both flat as objects grow."""
    from localwhisk.s3 import EmbeddedS3

    from .storage_latency import _client

    block = os.urandom(1 << 20)
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-sizes-") as tmp, EmbeddedS3(root=Path(tmp)) as s3:
        client = _client(s3.endpoint_url, s3.access_key, s3.secret_key)
        try:
            client.create_bucket(Bucket=BUCKET)
            point = {"bytes": 0, **_rss(s3.pid)}
            for size in sizes:
                progress(f"S3 object of {size} bytes")
                key = f"size/{size}"
                t0 = time.perf_counter()
                client.put_object(Bucket=BUCKET, Key=key, Body=_RepeatingBody(size, block), ContentLength=size)
                put_s = time.perf_counter() - t0
                after_put = _rss(s3.pid)
                t0 = time.perf_counter()
                body, got = client.get_object(Bucket=BUCKET, Key=key)["Body"], 0
                for chunk in body.iter_chunks(1 << 20):
                    got += len(chunk)
                get_s = time.perf_counter() - t0
                if got != size:
                    raise RuntimeError(f"GET of {key} read {got} of {size} bytes")
                client.delete_object(Bucket=BUCKET, Key=key)
                point = {
                    "n": size,
                    "put_s": round(put_s, 4),
                    "get_s": round(get_s, 4),
                    "put_mb_s": round(size / put_s / 1e6, 2),
                    "get_mb_s": round(size / get_s / 1e6, 2),
                    "rss_kb_after_put": after_put["rss_kb"],
                    **{f"{k}_after_get": v for k, v in _rss(s3.pid).items()},
                }
                points.append(point)
        finally:
            client.close()
    curves = {k: growth([p["n"] for p in points], [p[k] for p in points]) for k in _SIZE_CURVES}
    return {"points": points, "curves": curves}


_SIZE_CURVES = ("put_s", "get_s", "rss_kb_after_put", "rss_kb_after_get", "peak_rss_kb_after_get")


class _CountingInvoker:
    """A blocking no-op invoke on one kept connection per thread, as platform_cost.RawInvoker, that also counts
    each answer's status and checks every refusal is OpenWhisk's: a 429 or 503 whose body is its JSON error. A
    wait past `timeout_s` counts as a hang."""

    def __init__(self, apihost: str, auth: str, action: str, timeout_s: float = 90.0) -> None:
        url = urllib.parse.urlsplit(apihost)
        self._netloc, self._timeout_s = url.netloc, timeout_s
        self._path = f"/api/v1/namespaces/_/actions/{action}?blocking=true&result=true"
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
            "Content-Type": "application/json",
        }
        self._local = threading.local()
        self._lock = threading.Lock()
        self.statuses: dict[str, int] = {}
        self.malformed_refusals = 0

    def _count(self, status: str) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def __call__(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._netloc, timeout=self._timeout_s)
        try:
            conn.request("POST", self._path, body=b"{}", headers=self._headers)
            response = conn.getresponse()
            body = response.read()
        except TimeoutError:
            conn.close()
            self._local.conn = None
            self._count("hang")
            raise
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            self._count(type(exc).__name__)
            raise
        self._count(str(response.status))
        if response.status == 200:
            return
        if response.status in (429, 503):
            try:
                if set(json.loads(body)) != {"error", "code"}:
                    raise ValueError(body[:100])
            except ValueError:
                with self._lock:
                    self.malformed_refusals += 1
        raise RuntimeError(f"invoke answered {response.status}: {body[:200]!r}")


def bench_invokes(concurrencies: list[int], requests_per_worker: int, progress: Callable[[str], None]) -> dict:
    """Blocking no-op invokes from `c` threads at once, each on its own kept connection, for each c; per point the
    throughput, p50/p99 and every answer's status."""
    from localwhisk.supervisor import LocalPlatform

    from .platform_cost import NOOP_SOURCE, warm_up

    points = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-invokes-") as tmp:
        with LocalPlatform(Path(tmp), prewarm="none", idle_timeout_s=600) as info:
            client = info.client()
            try:
                client.create_action("scale-noop", {"kind": "python:3.11", "code": NOOP_SOURCE})
                for c in concurrencies:
                    progress(f"blocking no-op invokes at concurrency {c}")
                    invoke = _CountingInvoker(info.apihost, info.auth, "scale-noop")
                    warm_up(invoke, min(c, info_max_containers(info)), info.apihost)
                    invoke.statuses.clear()
                    measured = closed_loop(invoke, c, requests_per_worker)
                    point = {"n": c, "answered": measured.pop("n"), **measured}
                    point["statuses"] = dict(invoke.statuses)
                    point["malformed_refusals"] = invoke.malformed_refusals
                    points.append(point)
            finally:
                client.close()
    sizes = [p["n"] for p in points]
    answered = [p for p in points if p.get("p50_ms")]
    curves = {
        k: growth([p["n"] for p in answered], [p[k] for p in answered]) for k in ("p50_ms", "p99_ms", "throughput_rps")
    }
    curves["errors"] = {"per_point": dict(zip(map(str, sizes), (p["errors"] for p in points), strict=True))}
    first = next((p["n"] for p in points if p["errors"]), None)
    return {"points": points, "curves": curves, "first_errors_at": first}


def info_max_containers(info) -> int:
    from .platform_cost import invoker_stats

    return (invoker_stats(info.apihost) or {}).get("max_containers") or 1


def _action_doc(name: str, template: dict) -> dict:
    return {**template, "name": name}


def bench_actions(sizes: list[int], samples: int, progress: Callable[[str], None]) -> dict:
    """N actions in one namespace, listed a page (200) at a time through the REST API: the first page, one
    in the middle, the last; and a count. The actions are written through the store as copies of one PUT."""
    from localwhisk.server import NAMESPACE
    from localwhisk.store import Store
    from localwhisk.supervisor import LocalPlatform

    from .platform_cost import NOOP_SOURCE

    points = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-actions-") as tmp:
        state, have = Path(tmp), 1  # the template is the first
        with LocalPlatform(state, prewarm="none") as info:
            client = info.client()
            try:
                client.create_action("scale-a-000000000", {"kind": "python:3.11", "code": NOOP_SOURCE})
            finally:
                client.close()
        for n in sizes:
            progress(f"actions in one namespace: {n}")
            store = Store(state / "platform.db")
            try:
                template = store.get(NAMESPACE, "actions", "scale-a-000000000")
                for i in range(have, n):
                    name = f"scale-a-{i:09d}"
                    store.put(NAMESPACE, "actions", name, _action_doc(name, template), 0)
            finally:
                store.close()
            have = max(have, n)
            with LocalPlatform(state, prewarm="none") as info:
                point = {"n": n, **_page_actions(info, n, samples)}
            points.append(point)
    return _curves(points, ("list_first_page", "list_middle_page", "list_last_page"), ())


def _page_actions(info, n: int, samples: int) -> dict:
    import requests

    http_ = requests.Session()
    http_.auth = tuple(info.auth.split(":", 1))
    url = f"{info.apihost}/api/v1/namespaces/_/actions"

    def page(skip: int, expect: int) -> None:
        got = http_.get(url, params={"limit": 200, "skip": skip}, timeout=60)
        if got.status_code != 200 or len(got.json()) != expect:
            raise RuntimeError(f"GET {got.url} answered {got.status_code} with {len(got.content)} bytes")

    try:
        return {
            "list_first_page": _timed(lambda: page(0, min(200, n)), samples),
            "list_middle_page": _timed(lambda: page(n // 2, min(200, n - n // 2)), samples),
            "list_last_page": _timed(lambda: page(max(0, n - 200), min(200, n)), samples),
        }
    finally:
        http_.close()


def _curves(points: list[dict], timed: tuple[str, ...], plain: tuple[str, ...]) -> dict:
    sizes = [p["n"] for p in points]
    curves = {f"{k}_p50_ms": growth(sizes, [p[k]["p50_ms"] for p in points]) for k in timed}
    curves.update({k: growth(sizes, [p[k] for p in points]) for k in plain})
    if "disk_bytes_per_record" in points[0]:
        curves["disk_bytes_per_record"] = growth(sizes, [p["disk_bytes_per_record"] for p in points])
    return {"points": points, "curves": curves}


PARTS = ("records", "objects", "invokes", "actions", "sizes", "fedavg")


def run(
    record_sizes: list[int],
    object_sizes: list[int],
    samples: int = 50,
    object_bytes: int = 1000,
    progress: Callable[[str], None] = lambda _m: None,
    *,
    parts: tuple[str, ...] = ("records", "objects"),
    concurrencies: list[int] = (),
    requests_per_worker: int = 20,
    action_sizes: list[int] = (),
    byte_sizes: list[int] = (),
    fedavg_clients: list[int] = (),
    fedavg_per_round: list[int] = (),
    fedavg_executors: list[str] = ("process", "ray"),
    fedavg_rounds: int = 3,
    fedavg_workers: int = 2,
) -> dict:
    """The curves named in `parts`, one after the other, in this run."""
    report: dict = {
        "benchmark": "scale",
        "conditions": {
            "host_cores": os.cpu_count(),
            "python": pyplatform.python_version(),
            "samples_per_point": samples,
            "object_bytes": object_bytes,
            "requests_per_worker": requests_per_worker,
            "records": f"{NAMES} action names, inserted through localwhisk.store; reads through the REST API",
            "objects": "one bucket, inserted through embedded_s3.store; requests through boto3 over HTTP",
            "invokes": "blocking no-op, one kept connection per thread, statuses counted; 90 s without answer = hang",
            "actions": "copies of one action written through the store; pages of 200 through the REST API",
            "sizes": "one object per size, a single PUT and a streamed GET through boto3; server RSS from /proc",
            "fedavg": "2NN, E=1, B=10, IID split of the 60,000 examples among K; a child process per point",
            "growth": "exponent b of p50 ~ N**b (log-log least squares): <-0.2 falls, <0.3 flat, <0.8 sublinear, "
            "<1.2 linear, else worse",
        },
    }
    if "records" in parts and record_sizes:
        report["activations"] = bench_activations(record_sizes, samples, progress)
    if "objects" in parts and object_sizes:
        report["objects"] = bench_objects(object_sizes, samples, object_bytes, progress)
    if "invokes" in parts and concurrencies:
        report["invokes"] = bench_invokes(list(concurrencies), requests_per_worker, progress)
    if "actions" in parts and action_sizes:
        report["actions"] = bench_actions(list(action_sizes), samples, progress)
    if "sizes" in parts and byte_sizes:
        report["object_sizes"] = bench_object_sizes(list(byte_sizes), progress)
    if "fedavg" in parts and fedavg_clients:
        from .scale_fedavg import bench_fedavg

        report["fedavg"] = bench_fedavg(
            list(fedavg_clients),
            list(fedavg_per_round),
            list(fedavg_executors),
            fedavg_rounds,
            fedavg_workers,
            progress,
        )
    return report
