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
    """The single-process baseline's row first, then each serverless row with its ratio to it."""
    return [Table.of("bench train", *_train_rows(report)), report["note"]]


def _train_rows(report: dict) -> tuple[list[str], list[tuple]]:
    targets = [str(t) for t in report["targets"]]
    base = report["baseline"]
    headers = [
        "run",
        "workers",
        *[f"s to {float(t):.0%} (× baseline)" for t in targets],
        "communicating",
        "per round: compute / get / put / wait ms",
        "K",
        "GB-s",
        "final acc",
    ]

    def cell(value, ratio) -> str:
        return "not reached" if value is None else f"{value:.1f}" + (f" ({ratio:.2f}×)" if ratio else "")

    out = [
        (
            f"baseline ({base['threads']} threads, {base['precision']})",
            1,
            *[cell(base["time_to_accuracy_s"][t], None) for t in targets],
            "-",
            "-",
            "-",
            "-",
            f"{base['final_accuracy']:.4f}",
        )
    ]
    for r in report["rows"]:
        per = r["per_round"]
        split = " / ".join(f"{(per[k] or 0) * 1000:.1f}" for k in ("compute_s", "get_s", "put_s", "wait_s"))
        out.append(
            (
                r["mode"],
                r["workers"],
                *[cell(r["time_to_accuracy_s"][t], r["ratio_to_baseline"][t]) for t in targets],
                f"{r['communication_fraction']:.0%}" if r["communication_fraction"] is not None else "-",
                split,
                ",".join(map(str, r["local_steps"])) or "-",
                f"{r['gb_s']['total']:.1f}",
                f"{r['final_accuracy']:.4f}" if r["final_accuracy"] is not None else "-",
            )
        )
    return headers, out


def plot_train(report: dict, path: Path) -> Path:
    """Test accuracy against wall time: the baseline and one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    base = report["baseline"]["history"]
    ax.plot(
        [h["seconds"] for h in base], [h["accuracy"] for h in base], "k-o", label="baseline (1 process)", linewidth=2
    )
    for r in report["rows"]:
        points = [(e["seconds"], e["accuracy"]) for e in r["evaluations"] if e.get("seconds") is not None]
        if points:
            ax.plot(*zip(*points), "-o", label=f"{r['mode']}, {r['workers']} workers", linewidth=1.3)
    for t in report["targets"]:
        ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(max(0.9, min([h["accuracy"] for h in base] + [0.97]) - 0.01), 1.0)
    ax.set_xlabel("wall time since the start (s), evaluation excluded")
    ax.set_ylabel("test accuracy")
    ax.set_title("bench train: accuracy against wall time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    parts = [(k, v, parts_from.get(k, "default")) for k, v in out["parts"].items()]
    fedavg = out.get("fedavg", {})
    return [
        Table.of("bench model: predicted seconds per round on N machines", ["N", *names], rows),
        Table.of("bench model: the parts", ["part", "value", "measured as"], parts),
        Table.of("bench model: FedAvg on OpenWhisk", ["setting", "value"], list(fedavg.items())),
    ]
