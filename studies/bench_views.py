"""The console's and the results page's view of each `deployer bench` report: platform, storage, infer, train."""

from __future__ import annotations

from pathlib import Path

from .tabular import Block, Table


def platform_view(report: dict) -> list[Block]:
    """Every path's p50/p99, the in-process call and the bare proxy first (the baselines); each mode's ratios."""

    def ms(r: dict) -> tuple[str, str]:
        return f"{r['p50_ms']:.4g}", f"{r['p99_ms']:.4g}"

    rows = [("in-process call", "", 1, *ms(report["direct_call"]), "")]
    rows.append(("proxy over HTTP", "", 1, *ms(report["proxy_direct"]), ""))
    for mode, measured in report["modes"].items():
        if "skipped" in measured:
            rows.append(("skipped", mode, "", measured["skipped"][:60], "", ""))
            continue
        for client, levels in measured["warm"].items():
            for level, r in levels.items():
                rows.append((f"warm ({client} client)", mode, level, *ms(r), r["throughput_rps"]))
        if "cold_prewarmed" in measured:
            rows.append(("cold, prewarmed", mode, 1, *ms(measured["cold_prewarmed"]), ""))
        rows.append(("cold, no stem cell", mode, 1, *ms(measured["cold_start"]), ""))
    out: list[Block] = [Table.of("bench platform", ["path", "mode", "concurrency", "p50 ms", "p99 ms", "req/s"], rows)]
    out += [f"{mode}: {m['ratios']}" for mode, m in report["modes"].items() if "ratios" in m]
    return out


STORAGE_SERVERS = (("moto_in_memory", "moto, in memory (old)"), ("durable", "embedded S3, durable"))


def storage_view(report: dict) -> list[Block]:
    """PUT and GET through the baseline (moto in memory) and through the durable embedded S3."""
    rows = []
    for server, label in STORAGE_SERVERS:
        for op in ("put", "get"):
            r = report[server][op]
            rows.append(
                (
                    label,
                    op.upper(),
                    r.get("n", 0),
                    r.get("p50_ms", ""),
                    r.get("p99_ms", ""),
                    r.get("throughput_rps", ""),
                    r["errors"],
                )
            )
    headers = ["server", "op", "n", "p50 ms", "p99 ms", "req/s", "errors"]
    return [Table.of("bench storage", headers, rows), f"ratios: {report['ratios']}"]


INFER_PATHS = {"in_process": "in-process, threads", "flask_torch": "flask + torch", "platform_warm": "platform warm"}


def infer_view(report: dict) -> list[Block]:
    """The in-process call, the plain Flask + torch server and the platform, at each concurrency."""
    levels = list(report["flask_torch"])
    latency = report["in_process"]["latency"]
    rows = [("in-process, sequential", 1, latency["p50_ms"], latency["p99_ms"], "")]
    for path, label in INFER_PATHS.items():
        for level in levels:
            r = report[path]["throughput"][level] if path == "in_process" else report[path][level]
            rows.append((label, level, r["p50_ms"], r["p99_ms"], r["throughput_rps"]))
    cold = report["platform_cold"]
    rows.append(("platform cold", 1, cold["p50_ms"], cold["p99_ms"], ""))
    headers = ["path", "concurrency", "p50 ms", "p99 ms", "req/s"]
    return [Table.of("bench infer", headers, rows), f"ratios: {report['ratios']}"]


def train_view(report: dict) -> list[Block]:
    """Each model's one-process baseline, every row with its ratios to it (×), then which topology won where."""
    out: list[Block] = [Table.of("bench train: one process per model", *_baseline_rows(report))]
    out.append(Table.of("bench train", *_train_rows(report)))
    out.append(Table.of(f"which topology reaches {_target_label(report)} first", *_winner_rows(report)))
    breakdown = _round_rows(report)
    if breakdown[1]:
        out.append(Table.of("where a round's milliseconds go (a worker's mean; CPU a round)", *breakdown))
    for model, entry in report["models"].items():
        if entry.get("recipe_differs"):
            changes = ", ".join(f"{k} {new} instead of {old}" for k, (old, new) in entry["recipe_differs"].items())
            out.append(f"{model} trains with {changes}.")
    out.append(report["note"])
    return out


def _target_label(report: dict) -> str:
    return f"{float(report['targets'][-1]):.0%}" if report["targets"] else "the target"


def _seconds(value, ratio=None) -> str:
    return "not reached" if value is None else f"{value:.1f}" + (f" ({ratio:.2f}×)" if ratio else "")


def _baseline_rows(report: dict) -> tuple[list[str], list[tuple]]:
    targets = [str(t) for t in report["targets"]]
    headers = ["model", "parameters", "epochs", "train images", "run", *[f"s to {float(t):.0%}" for t in targets]]
    headers += ["train s", "GB-s", "final acc"]
    rows = []
    for model, entry in report["models"].items():
        base, recipe = entry["baseline"], entry["recipe"]
        rows.append(
            (
                model,
                f"{entry['parameters']:,}",
                recipe["epochs"],
                recipe["train_limit"] or "all",
                f"1 process ({base['threads']} threads, {base['precision']})",
                *[_seconds(base["time_to_accuracy_s"][t]) for t in targets],
                f"{base['train_seconds']:.1f}",
                f"{base['gb_s']:.1f} ({base['memory_mb']} MB)",
                f"{base['final_accuracy']:.4f}",
            )
        )
    return headers, rows


def _train_rows(report: dict) -> tuple[list[str], list[tuple]]:
    targets = [str(t) for t in report["targets"]]
    headers = [
        "model",
        "topology",
        "mode",
        "workers",
        *[f"s to {float(t):.0%} (×)" for t in targets],
        "comm",
        "KB / requests per step",
        "round ms: compute / get / put / wait",
        "K",
        "GB-s (×)",
        "final acc",
    ]
    out = []
    for r in report["rows"]:
        named = (r["model"], r["topology"], r["mode"], r["workers"])
        if "error" in r:
            out.append((*named, f"failed: {r['error'][:160]}", *[""] * (len(headers) - len(named) - 1)))
            continue
        per = r["per_round"]
        split = " / ".join(f"{(per[k] or 0) * 1000:.1f}" for k in ("compute_s", "get_s", "put_s", "wait_s"))
        ratio = r["gb_s_ratio_to_baseline"]
        out.append(
            (
                *named,
                *[_seconds(r["time_to_accuracy_s"][t], r["ratio_to_baseline"][t]) for t in targets],
                f"{r['communication_fraction']:.0%}" if r["communication_fraction"] is not None else "-",
                f"{r['per_step']['bytes'] / 1000:.1f} / {r['per_step']['requests']:.2f}",
                split,
                ",".join(map(str, r["local_steps"])) or "-",
                f"{r['gb_s']['total']:.1f}" + (f" ({ratio:.2f}×)" if ratio else ""),
                f"{r['final_accuracy']:.4f}" if r["final_accuracy"] is not None else "-",
            )
        )
    return headers, out


def _round_rows(report: dict) -> tuple[list[str], list[tuple]]:
    """Per row: a worker's round split into compute (its CPU), other CPU and waiting; each process's CPU per round.

    The busiest process is the one nearest a whole core in its busiest second: what bounds the step.
    """
    headers = [
        "model",
        "topology",
        "mode",
        "workers",
        "round ms",
        "compute (CPU)",
        "main / exchange CPU",
        "get / put / wait",
        "CPU ms per round: workers / S3 / PS / coordinator+ / platform",
        "busiest (core share, peak)",
        "cores busy",
    ]
    rows = []
    for r in report["rows"]:
        if "error" in r or "round_ms" not in r:
            continue
        w, cpu = r["round_ms"]["worker"], r["round_ms"]["cpu"]
        processes = r.get("processes") or {}
        busiest = processes.get("busiest")
        share = processes.get("roles", {}).get(busiest, {})
        workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
        rows.append(
            (
                r["model"],
                r["topology"],
                r["mode"],
                r["workers"],
                _ms(w["wall"]),
                f"{_ms(w['compute'])} ({_ms(w['compute_cpu'])})",
                f"{_ms(w['main_other_cpu'])} / {_ms(w['exchange_cpu'])}",
                " / ".join(_ms(w[k]) for k in ("get", "put", "wait")),
                " / ".join(
                    _ms(v)
                    for v in (
                        workers if cpu else None,
                        cpu.get("s3 endpoint"),
                        cpu.get("ps"),
                        cpu.get("other actions"),
                        cpu.get("controller and invoker"),
                    )
                ),
                f"{busiest} ({share['core_share']:.2f}, {share['peak_core_share']:.2f})" if busiest else "-",
                f"{processes['cores_busy']:.2f} of {processes['cores']}" if "cores_busy" in processes else "-",
            )
        )
    return headers, rows


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _winner_rows(report: dict) -> tuple[list[str], list[tuple]]:
    from .training_speed import winners

    found = winners(report)
    topologies = list(dict.fromkeys(t for w in found for t in w["by_topology"]))
    headers = ["model", "parameters", "workers", "mode", *[f"{t}: s (×)" for t in topologies], "fastest"]
    rows = []
    for w in found:
        cells = []
        for topology in topologies:
            cell = w["by_topology"].get(topology)
            if cell is None:
                cells.append("-")
            elif "error" in cell:
                cells.append("failed")
            else:
                cells.append(_seconds(cell["seconds"], cell["ratio"]))
        parameters = report["models"][w["model"]]["parameters"]
        rows.append((w["model"], f"{parameters:,}", w["workers"], w["mode"], *cells, w["winner"] or "none reached it"))
    return headers, rows


def plot_train(report: dict, path: Path) -> list[Path]:
    """Accuracy against wall time (a panel per model, mode and workers, a line per topology) at `path`,
    and each job's GB-s against its wall time (a panel per model) at <path>-cost.png."""
    from .figures import plot_panels, plot_points

    path = Path(path)
    panels: dict[str, dict] = {}
    costs: dict[str, dict] = {}
    lowest = [0.97]
    for r in report["rows"]:
        base = report["models"][r["model"]]["baseline"]
        name = f"{r['model']}, {r['mode']}, {r['workers']} workers"
        lines = panels.setdefault(
            name, {"baseline (1 process)": [(h["seconds"], h["accuracy"]) for h in base["history"]]}
        )
        lowest += [h["accuracy"] for h in base["history"]]
        series = costs.setdefault(r["model"], {"baseline (1 process)": [(base["train_seconds"], base["gb_s"], "1")]})
        if "error" in r:
            continue
        lines[r["topology"]] = [(e["seconds"], e["accuracy"]) for e in r["evaluations"] if e.get("seconds") is not None]
        if r["elapsed_s"] is not None:
            series.setdefault(f"{r['topology']}, {r['mode']}", []).append(
                (r["elapsed_s"], r["gb_s"]["total"], f"×{r['workers']}")
            )
    accuracy = plot_panels(
        panels,
        path,
        title="bench train: test accuracy against wall time, per topology",
        xlabel="wall time since the start (s), evaluation excluded",
        ylabel="test accuracy",
        hlines=report["targets"],
        floor=max(0.9, min(lowest) - 0.01),
    )
    cost = plot_points(
        costs,
        path.with_name(path.stem + "-cost.png"),
        title="bench train: GB-s billed against wall time (×N: workers)",
        xlabel="job wall time (s)",
        ylabel="GB-s (workers + PS + coordinator)",
    )
    return [accuracy, cost]


SCALE_SECTIONS = (
    ("activations", "activation records"),
    ("objects", "S3 objects in one bucket"),
    ("invokes", "blocking no-op invokes at once"),
    ("actions", "actions in one namespace"),
    ("object_sizes", "S3 object size (bytes)"),
)


def _scale_cell(value) -> object:
    if isinstance(value, dict):
        return f"{value['p50_ms']:.4g}" if "p50_ms" in value else " ".join(f"{k}:{v}" for k, v in value.items())
    return value


def _growth_table(title: str, curves: dict) -> Table:
    rows = [
        (k, c["growth"], c["exponent"], c["last_over_first"], c["size_ratio"])
        for k, c in curves.items()
        if "growth" in c
    ]
    return Table.of(f"growth: {title}", ["measure", "growth", "exponent", "last/first", "N ratio"], rows)


def scale_view(report: dict) -> list[Block]:
    """Per curve, a row per N with each measure (p50 ms where timed), then each measure's growth."""
    out: list[Block] = []
    for section, title in SCALE_SECTIONS:
        if section not in report:
            continue
        points = report[section]["points"]
        measures = [k for k in points[0] if k not in ("n", "first_error")]
        headers = [
            "N",
            *[f"{k} p50 ms" if isinstance(points[0][k], dict) and "p50_ms" in points[0][k] else k for k in measures],
        ]
        rows = [(p["n"], *[_scale_cell(p.get(k)) for k in measures]) for p in points]
        out.append(Table.of(f"bench scale: {title}", headers, rows))
        out.append(_growth_table(title, report[section]["curves"]))
    for executor, part in report.get("fedavg", {}).get("executors", {}).items():
        if "skipped" in part:
            continue
        title = f"FedAvg, {executor} executor"
        keys = ["s_per_round", "s_per_client_update", "examples_per_client", "parent_peak_rss_kb", "worker_peak_rss_kb"]
        rows = [(p["k"], p["m"], *[p.get(k, p.get("error", "")) for k in keys]) for p in part["points"]]
        out.append(Table.of(f"bench scale: {title}", ["K", "m", *keys], rows))
        out.append(_growth_table(title, part["curves"]))
    return out


def model_view(out: dict) -> list[Block]:
    """`bench model`'s prediction: seconds per round against machines per curve, the parts it used, and where
    each part was measured; its assumptions are the caller's to print (they are lines, not a table)."""
    curves = out["curves"]
    names = list(curves)
    machines = [p["n"] for p in curves[names[0]]] if names else []
    rows = [(n, *[f"{curves[name][i]['round_s']:.4g}" for name in names]) for i, n in enumerate(machines)]
    parts_from = out.get("parts_from", {})
    parts = [(k, v, parts_from.get(k, "assumed")) for k, v in out["parts"].items()]
    fedavg = out.get("fedavg", {})
    return [
        Table.of("bench model: predicted seconds per round on N machines", ["N", *names], rows),
        Table.of("bench model: the parts", ["part", "value", "measured as"], parts),
        Table.of("bench model: FedAvg on OpenWhisk", ["setting", "value"], list(fedavg.items())),
    ]
