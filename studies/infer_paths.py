"""`deployer bench infer`: `mnist/infer` through the platform next to the two ways it is done without one.

Same work on every path (decode a real MNIST test digit PNG, preprocess, LeNet-5 forward),
measured in one run so the machine's noise hits them alike:
  in-process     the functions called directly in this process;
  flask+torch    a plain Flask server in its own process doing the work per HTTP request
                 (the course project's approach, one torch thread per request);
  platform       the action deployed from manifests/infer.yaml, invoked blocking, warm
                 at each concurrency, plus cold starts (a redeploy forces a new container).
Latency does not depend on the weights, so the model is LeNet-5 at its seed-0
initialisation unless the caller hands one in.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform as pyplatform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from procs import Child, NotReady, ReadyLine

from .errors import BenchError
from .infer_loads import Deploy, bench_baseline, bench_in_process, bench_platform

BUCKET = "bench-infer"


def sample_png(root=None) -> tuple[bytes, int]:
    """The first real MNIST test digit as PNG bytes, and its label."""
    from PIL import Image

    from mlcore.mnist import load_mnist

    images, labels = load_mnist(train=False, root=root)
    buf = io.BytesIO()
    Image.fromarray(images[0].numpy()).save(buf, "PNG")
    return buf.getvalue(), int(labels[0])


def make_classifier(state: dict) -> Callable[[bytes], dict]:
    """The work each path does per request, as one function over PNG bytes."""
    from mlcore.inference import predict
    from mlcore.model import LeNet5
    from mlcore.preprocess import preprocess_bytes

    model = LeNet5()
    model.load_state_dict(state)
    model.eval()
    return lambda data: predict(model, preprocess_bytes(data))[0]


def default_state() -> dict:
    import torch

    from mlcore.model import LeNet5

    torch.manual_seed(0)
    return LeNet5().state_dict()


def create_baseline_app(state: dict):
    """The plain Flask + torch server: POST /predict {"image": base64} -> the prediction."""
    from flask import Flask, jsonify, request

    classify = make_classifier(state)
    app = Flask("flask-torch-baseline")

    @app.post("/predict")
    def predict_route():
        return jsonify(classify(base64.b64decode(request.get_json()["image"])))

    return app


class BaselineServer:
    """The Flask + torch server as its own process on 127.0.0.1; `with` stops it."""

    def __init__(self, state_path: Path, threads: int = 1) -> None:
        self.state_path = state_path
        self.threads = threads
        self._child: Child | None = None
        self.url = ""

    def start(self, timeout_s: float = 120.0) -> BaselineServer:
        """Raises BenchError when the server exits, or prints no URL within timeout_s (it is stopped then)."""
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        log_path = self.state_path.with_suffix(".log")
        argv = [sys.executable, "-m", "studies.infer_paths", "--serve-baseline", str(self.state_path)]
        with open(log_path, "wb") as log:
            self._child = Child(
                [*argv, "--threads", str(self.threads)],
                name="the Flask baseline server",
                ready=ReadyLine("stdout"),
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
            try:
                line = self._child.start(timeout_s).strip()
            except NotReady as exc:
                self.stop()
                what = (
                    f"did not print its URL within {timeout_s:.0f} s"
                    if exc.returncode is None
                    else f"exited with status {exc.returncode} before printing its URL"
                )
                raise BenchError(f"the Flask baseline server {what}; log: {log_path.read_text()[-500:]}") from exc
        if isinstance(line, bytes):
            line = line.decode(errors="replace")
        if not line.startswith("http://"):
            self.stop()
            raise BenchError(f"the Flask baseline server did not start: {line or log_path.read_text()[-500:]}")
        self.url = line
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop(timeout_s)
            if child.popen is not None and child.popen.stdout is not None:
                child.popen.stdout.close()

    def __enter__(self) -> BaselineServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run(
    levels: list[int],
    requests_per_worker: int = 20,
    cold_runs: int = 3,
    in_process_iterations: int = 200,
    state: dict | None = None,
    apihost: str | None = None,
    auth: str | None = None,
    storage_env: dict | None = None,
    root=None,
    progress: Callable[[str], None] = lambda _m: None,
    *,
    deploy: Deploy,
) -> dict:
    """Against a given OpenWhisk (with `storage_env` for its S3), or an owned local platform.

    deploy(client, env) puts manifests/infer.yaml there; each cold run calls it again.
    """
    import torch

    torch.set_num_threads(1)
    state = state if state is not None else default_state()
    data, label = sample_png(root)
    payload = {"image": base64.b64encode(data).decode()}
    classify = make_classifier(state)
    expected = classify(data)["digit"]
    report: dict = {"benchmark": "infer", "conditions": _conditions(data, label, requests_per_worker, cold_runs)}
    progress("in-process calls")
    report["in_process"] = bench_in_process(classify, data, levels, in_process_iterations, requests_per_worker)
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        progress("plain Flask + torch server over HTTP")
        report["flask_torch"] = bench_flask_torch(state, Path(tmp), payload, levels, requests_per_worker)
        # room for the warm containers, the default stem cells (4) and each cold run's old revision
        slots = max(levels) + 4 + cold_runs
        with _platform(apihost, auth, storage_env, Path(tmp), slots) as (client, env, owned_apihost, target):
            report["conditions"]["target"] = target
            report["conditions"]["model"], measured = bench_platform(
                client,
                env,
                state,
                payload,
                expected,
                levels,
                requests_per_worker,
                cold_runs,
                owned_apihost,
                progress,
                deploy,
            )
            report.update(measured)
    report["ratios"] = ratios(report, levels)
    return report


def _conditions(data: bytes, label: int, requests_per_worker: int, cold_runs: int) -> dict:
    return {
        "host_cores": os.cpu_count(),
        "python": pyplatform.python_version(),
        "torch_threads_per_request": 1,
        "requests_per_worker": requests_per_worker,
        "cold_runs": cold_runs,
        "input": f"MNIST test image 0 (label {label}) as a {len(data)}-byte PNG, base64 in the payload",
    }


def bench_flask_torch(state: dict, workdir: Path, payload: dict, levels: list[int], requests_per_worker: int) -> dict:
    """The plain Flask + torch server, started for this measurement from the same weights."""
    import torch

    state_path = workdir / "model.pt"
    torch.save(state, state_path)
    with BaselineServer(state_path) as baseline:
        return bench_baseline(baseline.url, payload, levels, requests_per_worker)


@contextmanager
def _platform(apihost: str | None, auth: str | None, storage_env: dict | None, workdir: Path, slots: int):
    """(client, storage env, the owned platform's API host or None, what the target is); stops what it started.

    With an API host and a key, that OpenWhisk; else a local platform of `slots` containers in `workdir`.
    """
    from localwhisk.supervisor import LocalPlatform
    from mlcore.openwhisk import OpenWhiskClient
    from mlcore.storage import StorageConfig

    if apihost and auth:
        client = OpenWhiskClient(apihost, auth)
        try:
            yield client, dict(storage_env or StorageConfig.from_env().as_env()), None, apihost
        finally:
            client.close()
        return
    owned = LocalPlatform(workdir / "platform", max_containers=slots, idle_timeout_s=600)
    info = owned.start()
    client = info.client()
    try:
        yield client, info.storage_env(BUCKET), info.apihost, f"local platform (owned, max_containers={slots})"
    finally:
        client.close()
        owned.stop()


def ratios(report: dict, levels: list[int]) -> dict:
    first, last = str(levels[0]), str(levels[-1])
    direct = report["in_process"]["latency"]["p50_ms"]
    flask, warm = report["flask_torch"][first], report["platform_warm"][first]
    return {
        "platform_warm_p50_over_in_process": round(warm["p50_ms"] / direct, 1),
        "platform_warm_p50_over_flask_torch": round(warm["p50_ms"] / flask["p50_ms"], 2),
        "flask_torch_p50_over_in_process": round(flask["p50_ms"] / direct, 1),
        "platform_cold_p50_over_warm_p50": round(report["platform_cold"]["p50_ms"] / warm["p50_ms"], 1),
        f"platform_over_flask_throughput_at_{last}": round(
            report["platform_warm"][last]["throughput_rps"] / report["flask_torch"][last]["throughput_rps"], 2
        ),
    }


def _serve_baseline(argv: list[str]) -> None:
    """`python -m studies.infer_paths --serve-baseline STATE`: prints its URL, serves until terminated."""
    import logging
    import signal
    import threading

    import torch
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-baseline", required=True)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    state = torch.load(opts.serve_baseline, map_location="cpu", weights_only=True)
    server = make_server("127.0.0.1", 0, create_baseline_app(state), threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    thread.join()


if __name__ == "__main__":
    _serve_baseline(sys.argv[1:])
