"""`deployer bench scale`'s FedAvg curves: K clients, m = C*K of them a round, on the process and Ray executors.

The paper's split: the 60,000 MNIST training examples shared IID among K clients, so more
clients means fewer examples each (600 at K = 100, 6 at K = 10,000). Each (executor, K, m)
point runs in a fresh child process, so the parent's memory peak (VmHWM) is that point's
alone; the workers' peaks are read from /proc where they run (a loopback Ray cluster's
actors are processes of this machine too). What a round costs is the wall time of
`fedavg.run`'s round minus its evaluation, and per client that divided by m.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

from .scale import growth

MODEL = "2nn"  # the paper's MLP: the memory that could grow with K is the partition's, not the model's


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _point(executor: str, clients: int, per_round: int, rounds: int, workers: int, ray_address, answer) -> None:
    """One point, in a child process: answers its measures (or its error) on `answer`."""
    try:
        import torch

        from fedavg.executors import make_factory
        from fedavg.run import RunConfig, load_data, run

        torch.set_num_threads(1)
        data = load_data(test_limit=1000)
        config = RunConfig(
            model=MODEL,
            clients=clients,
            frac=per_round / clients,
            epochs=1,
            batch_size=10,
            rounds=rounds,
            partition="iid",
            test_limit=1000,
        )
        factory = make_factory(executor, data, workers=workers, threads=1, ray_address=ray_address)
        with factory() as ex:
            t0 = time.perf_counter()
            report, _ = run(config, ex, data, stop_at_target=False)
            wall_s = time.perf_counter() - t0
            if executor == "process":
                pids = ex.worker_pids()
            else:
                pids = [slot.pid for slot in ex._slots if slot.pid]
            worker_kb = [_peak_kb(pid) for pid in pids]
        steady = report["rounds"][1:] or report["rounds"]
        train_s = [r["round_s"] - r["eval_s"] for r in steady]
        answer.put(
            {
                "s_per_round": round(sum(r["round_s"] for r in steady) / len(steady), 4),
                "train_s_per_round": round(sum(train_s) / len(train_s), 4),
                "s_per_client_update": round(sum(train_s) / len(train_s) / per_round, 5),
                "examples_per_client": len(data.train_labels) // clients,
                "failed_clients": report["failed_clients"],
                "parent_peak_rss_kb": _peak_kb(multiprocessing.current_process().pid),
                "worker_peak_rss_kb": max(worker_kb) if worker_kb else None,
                "wall_s": round(wall_s, 2),
            }
        )
    except Exception as exc:  # the point's error is data: the curve goes on
        answer.put({"error": f"{type(exc).__name__}: {exc}"})


def _measure(executor: str, clients: int, per_round: int, rounds: int, workers: int, ray_address) -> dict:
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    child = context.Process(
        target=_point, args=(executor, clients, per_round, rounds, workers, ray_address, answer), daemon=False
    )
    child.start()
    try:
        return answer.get(timeout=3600)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
            child.join()


class _LoopbackCluster:
    """A Ray head and one more node on 127.0.0.1 (ray.cluster_utils, as the executor's tests start one)."""

    def __init__(self, cpus_per_node: int) -> None:
        self.cpus_per_node = cpus_per_node
        self._nodes = None

    def __enter__(self) -> str:
        import os

        from ray.cluster_utils import Cluster

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        head = {"num_cpus": self.cpus_per_node, "node_ip_address": "127.0.0.1", "include_dashboard": False}
        self._nodes = Cluster(initialize_head=True, head_node_args=head)
        self._nodes.add_node(num_cpus=self.cpus_per_node, node_ip_address="127.0.0.1")
        self._nodes.wait_for_nodes()
        return self._nodes.address

    def __exit__(self, *exc) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        self._nodes.shutdown()


def bench_fedavg(
    clients: list[int],
    per_round: list[int],
    executors: list[str],
    rounds: int,
    workers: int,
    progress: Callable[[str], None],
) -> dict:
    """Per executor, a point for each K and each m <= K; the growth with K at each m, and with m at each K."""
    out: dict = {"model": MODEL, "rounds": rounds, "workers": workers, "executors": {}}
    for executor in executors:
        if executor == "ray":
            try:
                cluster = _LoopbackCluster(cpus_per_node=max(1, workers // 2))
                address = cluster.__enter__()
            except Exception as exc:
                out["executors"][executor] = {"skipped": f"{type(exc).__name__}: {exc}"}
                continue
        else:
            cluster, address = None, None
        try:
            points = []
            for k in clients:
                for m in per_round:
                    if m > k:
                        continue
                    progress(f"FedAvg {executor}: K={k}, {m} clients a round")
                    points.append({"k": k, "m": m, **_measure(executor, k, m, rounds, workers, address)})
        finally:
            if cluster is not None:
                cluster.__exit__(None, None, None)
        out["executors"][executor] = {"points": points, "curves": _curves(points)}
    return out


def _curves(points: list[dict]) -> dict:
    """Growth with K at fixed m (memory must stay flat) and with m at fixed K (time should be linear)."""
    good = [p for p in points if "error" not in p]
    curves: dict = {}
    for m in sorted({p["m"] for p in good}):
        line = sorted((p for p in good if p["m"] == m), key=lambda p: p["k"])
        if len(line) > 1:
            for key in ("parent_peak_rss_kb", "worker_peak_rss_kb", "s_per_round"):
                if all(p.get(key) for p in line):
                    curves[f"{key} vs K at m={m}"] = growth([p["k"] for p in line], [p[key] for p in line])
    for k in sorted({p["k"] for p in good}):
        line = sorted((p for p in good if p["k"] == k), key=lambda p: p["m"])
        if len(line) > 1:
            for key in ("train_s_per_round", "parent_peak_rss_kb"):
                curves[f"{key} vs m at K={k}"] = growth([p["m"] for p in line], [p[key] for p in line])
    return curves
