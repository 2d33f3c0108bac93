"""`deployer bench model --check`: the cluster model told it runs on this machine, against what this machine measured.

The checked points are the bench train study's rows (time per round of one worker: its
active seconds over the rounds it ran, 2 and 4 workers, every topology and mode) and FedAvg's
executors timed side by side (seconds per round). The model predicts each from calibration
inputs measured apart from them, in its shared-host mode (cluster_model, assumption 8):
- compute per step: a model's compute floor (its study's where recorded, else
  `bench model --calibrate`), CPU per step over the workers;
- S3 requests: walls and CPU by size, one at a time (`bench model --calibrate`), fitted to a line;
- a round's codec CPU: `bench model --calibrate`, per model;
- a warm invocation: `bench platform`'s concurrency-1 point;
- a FedAvg client update: the serial executor's round (one thread, same arithmetic) over m.
`calibrate` reads only those keys: a test changes every checked number and finds the same parts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

from . import cluster_model as cm
from .errors import BenchError

TOLERANCE = 0.25
HOST = cm.Host(cores=2, endpoint_cores=1)
# the bench train study's recipe: 60,000 examples, global batch 128, per model its epochs
TRAIN_EXAMPLES = 60_000
FEDAVG_SERIAL = "serial bf16 channels-last"
# the bench fedavg timing configuration (PAPER_CONFIG): CNN, K=100, C=0.1, 600 IID examples a client
FEDAVG_CLIENTS_PER_ROUND = 10
FEDAVG_SLOTS = 2
CNN_PARAMS = 1_663_370
FEDAVG_DATA_BYTES = 600 * (28 * 28 + 8)  # uint8 images and int64 labels


def _point_name(row: dict) -> str:
    return f"{row['model']} {row['topology']} {row['mode']} N={row['workers']}"


def training_points(report: dict, source: str) -> tuple[list[dict], list[dict]]:
    """(points, rows that measured nothing): per row, a worker's seconds per round and the round's mean K."""
    points, failed = [], []
    for row in report.get("rows", []):
        totals = row.get("totals") or {}
        if row.get("error") or not totals.get("rounds"):
            failed.append({"point": _point_name(row), "source": source, "error": row.get("error", "no rounds")})
            continue
        recipe = report["models"][row["model"]]["recipe"]
        steps = recipe["epochs"] * math.ceil(TRAIN_EXAMPLES / recipe["batch_size"])
        n = row["workers"]
        k = 1.0 if row["mode"] == "sync" else steps / (totals["rounds"] / n)
        points.append(
            {
                "point": _point_name(row),
                "kind": "train",
                "source": source,
                "model": row["model"],
                "topology": row["topology"],
                "mode": row["mode"],
                "workers": n,
                "local_steps": round(k, 3),
                "measured_s": totals["active_s"] / totals["rounds"],
                "measured_split": {k2: row["per_round"][k2] for k2 in ("compute_s", "get_s", "put_s", "wait_s")},
            }
        )
    return points, failed


def fedavg_points(report: dict, source: str) -> list[dict]:
    """Each timed executor but the serial ones (which calibrate the client's compute): its seconds per round."""
    points = []
    for label, entry in report.get("executors", {}).get("executors", {}).items():
        if label.startswith("serial") or entry.get("mean_round_s") is None:
            continue
        points.append(
            {
                "point": f"fedavg {label}",
                "kind": "fedavg",
                "source": source,
                "executor": label.split()[0],
                "measured_s": entry["mean_round_s"],
            }
        )
    return points


def _fit(costs: list[dict], op: str, field: str) -> cm.Cost:
    return cm.Cost.fit([(c["bytes"], c[op][field] / 1000) for c in costs])


def calibrate(train_reports: dict, calibration: dict, platform: dict | None, fedavg: dict | None) -> dict:
    """Per model: the parts at each worker count, and where each came from; FedAvg's parts if given.

    Reads only calibration keys: the train reports' `models.<m>.compute_floor` and recipe, never their rows;
    the fedavg report's serial executor, never the checked ones.

    Raises:
        BenchError: a part the check needs is in none of the reports.
    """
    costs = calibration.get("request_costs") or []
    if len(costs) < 2:
        raise BenchError("the calibration report has no request costs by size: run `deployer bench model --calibrate`")
    get_wall, put_wall = _fit(costs, "get", "wall_ms"), _fit(costs, "put", "wall_ms")
    common = {
        "latency_s": get_wall.fixed_s,
        "request_bps": 1 / get_wall.per_byte_s if get_wall.per_byte_s else math.inf,
        "put_latency_s": put_wall.fixed_s,
        "put_bps": 1 / put_wall.per_byte_s if put_wall.per_byte_s else math.inf,
        "client_cpu": {op: _fit(costs, op, "client_cpu_ms") for op in ("put", "get")},
        "endpoint_cpu": {op: _fit(costs, op, "endpoint_cpu_ms") for op in ("put", "get")},
        "nic_bps": math.inf,
    }
    loaded = f"bench model --calibrate (load {calibration.get('conditions', {}).get('load_average_1m', '?')})"
    sources = {
        "latency_s, request_bps": f"{loaded}: GET wall by size, fitted",
        "put_latency_s, put_bps": f"{loaded}: PUT wall by size, fitted",
        "client_cpu, endpoint_cpu": f"{loaded}: client thread CPU and endpoint process CPU per request by size",
        "encode_s, decode_s, average_s, apply_s": f"{loaded}: round_cpu, one thread, per model",
        "exchange_s": f"{loaded}: exchange_floor, each topology's sync round with no compute, per model and N"
        if calibration.get("exchange_floor")
        else "not calibrated: a round's storage phases and reduce from the request costs and codec",
        "nic_bps": "loopback: unbounded",
        "parallel_requests": "cluster_model default (8)",
    }
    models: dict = {}
    for source, report in train_reports.items():
        if not isinstance(report.get("models"), dict) or not isinstance(report.get("rows"), list):
            raise BenchError(f"{source} is not a bench train report: it has no models and rows")
        for name, model in report.get("models", {}).items():
            floors, floor_source = model.get("compute_floor"), f"{source}: models.{name}.compute_floor (quiet)"
            if not floors:
                floors = calibration.get("compute_floor", {}).get(name)
                floor_source = f"{loaded}: compute_floor.{name}"
            codec = calibration.get("round_cpu", {}).get(name)
            if not floors or not codec:
                raise BenchError(
                    f"no compute floor or round CPU for {name}: run `deployer bench model --calibrate` "
                    "with its --floor-models"
                )
            base = cm.Parts(
                **common,
                update_bytes=codec["update_bytes"],
                weights_bytes=codec["weights_bytes"],
                encode_s=codec["encode_ms"] / 1000,
                decode_s=codec["decode_ms"] / 1000,
                average_s=codec["average_one_ms"] / 1000,
                apply_s=codec["sgd_step_ms"] / 1000,
            )
            exchange = calibration.get("exchange_floor", {}).get(name, {})
            models[name] = {
                "parts": {
                    int(n): replace(
                        base,
                        step_s=f["cpu_per_step_s"] / int(n),
                        exchange_s={t: e["wall_ms"] / 1000 for t, e in exchange.get(n, {}).items()},
                    )
                    for n, f in floors.items()
                },
                "step_s_from": f"{floor_source}: cpu_per_step_s / N",
            }
    out = {"models": models, "sources": sources, "fedavg": None}
    if fedavg is not None and platform is not None:
        serial = fedavg.get("executors", {}).get("executors", {}).get(FEDAVG_SERIAL, {}).get("mean_round_s")
        invoke = platform.get("modes", {}).get("process", {}).get("warm", {}).get("sdk", {}).get("1", {})
        if serial is None or "p50_ms" not in invoke:
            raise BenchError(f"FedAvg needs the {FEDAVG_SERIAL!r} timing and bench platform's warm concurrency-1 p50")
        out["fedavg"] = {
            "parts": cm.Parts(
                **common,
                update_bytes=4 * CNN_PARAMS,
                invoke_s=invoke["p50_ms"] / 1000,
                average_s=calibration["round_cpu"]["lenet5x4"]["average_one_ms"] / 1000 * CNN_PARAMS / 972_554,
            ),
            "client_update_s": serial / FEDAVG_CLIENTS_PER_ROUND,
        }
        out["sources"]["invoke_s"] = "bench platform: modes.process.warm.sdk.1.p50_ms (quiet)"
        out["sources"]["client_update_s"] = f"bench fedavg: {FEDAVG_SERIAL!r} mean_round_s / m (quiet)"
    return out


def predict_point(point: dict, calibrated: dict, host: cm.Host = HOST) -> dict:
    """The shared-host prediction of one checked point, with its split.

    Raises:
        BenchError: no calibration for the point's model, worker count or executor.
    """
    if point["kind"] == "train":
        parts = calibrated["models"].get(point["model"], {}).get("parts", {}).get(point["workers"])
        if parts is None:
            raise BenchError(f"no calibration for {point['point']}: no compute floor at {point['workers']} workers")
        return cm.round_s(parts, point["topology"], point["workers"], host, point["local_steps"])
    fed = calibrated.get("fedavg")
    if fed is None:
        raise BenchError(f"no FedAvg calibration for {point['point']}")
    if point["executor"] == "openwhisk":
        got = cm.fedavg_openwhisk_round_s(
            fed["parts"], FEDAVG_CLIENTS_PER_ROUND, 1, FEDAVG_SLOTS, fed["client_update_s"], host, FEDAVG_DATA_BYTES
        )
        return got
    seconds = cm.executor_round_s(
        FEDAVG_CLIENTS_PER_ROUND, host.cores, fed["client_update_s"] * max(1.0, FEDAVG_SLOTS / host.cores)
    )
    return {"round_s": seconds + FEDAVG_CLIENTS_PER_ROUND * fed["parts"].codec_s("average")}


def cluster_curves(calibrated: dict, machines: list[int], model: str = "lenet5", at: int = 2) -> dict:
    """The cluster mode's curves (one worker per machine, assumption 1-7) from the same calibration: each topology
    with `model`'s compute per worker at `at` workers kept fixed (assumption 4), and FedAvg's OpenWhisk executor
    with one slot per machine. Its storage costs are this machine's loopback endpoint's, not a cloud service's."""
    if model not in calibrated["models"]:
        model = next(iter(calibrated["models"]))
    parts = calibrated["models"][model]["parts"][at]
    curves = {t: [cm.round_s(parts, t, n) for n in machines] for t in cm.TOPOLOGIES}
    fed = calibrated.get("fedavg")
    if fed is not None:
        curves["fedavg-openwhisk"] = [
            cm.fedavg_openwhisk_round_s(
                fed["parts"], FEDAVG_CLIENTS_PER_ROUND, n, 1, fed["client_update_s"], data_bytes=FEDAVG_DATA_BYTES
            )
            for n in machines
        ]
    return curves


def check_points(points: list[dict], predicted: list[float], tolerance: float = TOLERANCE) -> list[dict]:
    """Each point with its prediction, the error against the measured value and whether within `tolerance`."""
    if len(points) != len(predicted):
        raise ValueError(f"{len(points)} points but {len(predicted)} predictions")
    return [{**p, **cm.check(s, p["measured_s"], tolerance)} for p, s in zip(points, predicted, strict=True)]


def run_check(
    train_reports: dict,
    calibration: dict,
    platform: dict | None = None,
    fedavg: dict | None = None,
    tolerance: float = TOLERANCE,
) -> dict:
    """Every checked point against its prediction, with the calibration's sources."""
    calibrated = calibrate(train_reports, calibration, platform, fedavg)
    points, failed = [], []
    for source, report in train_reports.items():
        got, bad = training_points(report, source)
        points += got
        failed += bad
    if fedavg is not None:
        points += fedavg_points(fedavg, "bench fedavg")
    splits = [predict_point(p, calibrated) for p in points]
    machines = [1, 2, 4, 8, 16, 32, 64]
    rows = check_points(points, [s["round_s"] for s in splits], tolerance)
    for row, split in zip(rows, splits, strict=True):
        row["predicted_split"] = {k: round(v, 6) for k, v in split.items() if k.endswith("_s") and k != "round_s"}
    return {
        "benchmark": "model-check",
        "tolerance": tolerance,
        "host": {"cores": HOST.cores, "endpoint_cores": HOST.endpoint_cores},
        "measured": "train: a worker's active seconds over the rounds it ran; fedavg: mean seconds per round",
        "calibration": calibrated["sources"]
        | {f"step_s ({m})": v["step_s_from"] for m, v in calibrated["models"].items()},
        "assumptions": list(cm.ASSUMPTIONS),
        "points": rows,
        "not_measured": failed,
        "within": sum(r["within"] for r in rows),
        "outside": [r["point"] for r in rows if not r["within"]],
        "curves": cluster_curves(calibrated, machines),
    }


def markdown(report: dict) -> str:
    """The check as a table: point, measured, predicted, error, within or not."""
    lines = [
        f"| point | measured s | predicted s | error | within {report['tolerance']:.0%} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["points"]:
        lines.append(
            f"| {r['point']} | {r['measured_s']:.4g} | {r['predicted_s']:.4g} | {r['error']:+.0%} | "
            f"{'yes' if r['within'] else 'no'} |"
        )
    for r in report["not_measured"]:
        lines.append(f"| {r['point']} | not measured | - | - | - |")
    lines += ["", f"{report['within']} of {len(report['points'])} points within {report['tolerance']:.0%}.", ""]
    lines += ["Calibration (measured apart from every point above):", ""]
    lines += [f"- {k}: {v}" for k, v in report["calibration"].items()]
    return "\n".join(lines) + "\n"


def without_checked_points(train_reports: dict, fedavg: dict | None) -> tuple[dict, dict | None]:
    """Copies with every checked number replaced: what calibrate must not see (the test's witness)."""
    train = copy.deepcopy(train_reports)
    for report in train.values():
        for row in report.get("rows", []):
            for key in ("totals", "per_round", "per_step", "elapsed_s", "time_to_accuracy_s", "local_steps"):
                row[key] = None
    fed = copy.deepcopy(fedavg)
    if fed is not None:
        for label, entry in fed.get("executors", {}).get("executors", {}).items():
            if not label.startswith("serial"):
                entry["mean_round_s"] = -1.0
    return train, fed
