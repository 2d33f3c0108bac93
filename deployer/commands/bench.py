"""`deployer bench ...`: each benchmark writes JSON with its baseline measured in the same run."""

from __future__ import annotations

import click

from ..cli import LazyGroup
from .output import table, write_report
from .params import OutputFile, OutputFolder, choices, integer, ints

LAZY = {
    "infer": "deployer.commands.ml:bench_infer_command",
    "train": "deployer.commands.train:bench_train_command",
    "fedavg": "deployer.commands.fedavg_bench:bench_command",
    "hostnet": "deployer.commands.hostnet:bench_command",
}


HELP = {
    "platform": "No-op action: warm/cold latency and throughput vs an in-process call.",
    "infer": "mnist/infer through the platform vs in-process and a plain Flask server.",
    "train": "Time to accuracy with 1-8 serverless workers vs one process.",
    "fedavg": "Time per round per executor; rounds to 99% vs the paper.",
    "hostnet": "virtio-net vs vhost-user throughput/latency, multiqueue, migration.",
    "storage": "Durable embedded S3 vs in-memory moto: authenticated PUT/GET latency.",
}


@click.group(cls=LazyGroup, lazy=LAZY, help_texts=HELP)
def bench() -> None:
    """Benchmarks (JSON out, baseline side by side)."""


@bench.command("platform")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.option(
    "--concurrency",
    type=ints(1, 256, example="1,4,16"),
    default="1,4,16",
    show_default=True,
    help="Comma-separated levels.",
)
@click.option(
    "--requests",
    "requests_per_worker",
    default=50,
    show_default=True,
    type=integer(1, 100_000),
    help="Per worker per level.",
)
@click.option("--cold-runs", default=5, show_default=True, type=integer(1, 1000))
@click.option(
    "--modes",
    type=choices(("process", "docker")),
    default="process,docker",
    show_default=True,
    help="Container modes to measure, one owned platform each (docker is skipped, with the reason, "
    "where it cannot run).",
)
@click.pass_obj
def bench_platform(
    obj, json_path, concurrency: tuple[int, ...], requests_per_worker: int, cold_runs: int, modes: tuple[str, ...]
) -> None:
    """Warm latency and throughput of a no-op action, cold starts with and without a stem cell, per mode."""
    from studies import platform_cost

    report = platform_cost.run(
        list(concurrency),
        requests_per_worker,
        cold_runs,
        apihost=obj.apihost,
        auth=obj.auth,
        progress=lambda m: click.echo(f"... {m}", err=True),
        modes=modes,
    )

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
    table(["path", "mode", "concurrency", "p50 ms", "p99 ms", "req/s"], rows, title="bench platform")
    for mode, measured in report["modes"].items():
        if "ratios" in measured:
            click.echo(f"{mode}: {measured['ratios']}")
    write_report(json_path, report)


@bench.command("storage")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.option("--clients", default=4, show_default=True, type=integer(1, 256), help="Concurrent boto3 clients.")
@click.option(
    "--requests",
    "requests_per_client",
    default=500,
    show_default=True,
    type=integer(1, 1_000_000),
    help="PUTs (then GETs) per client.",
)
@click.option(
    "--size-kb", default=250, show_default=True, type=integer(1, 1_000_000), help="Object size in KB (1000 bytes)."
)
@click.option(
    "--folder",
    type=OutputFolder(),
    default=None,
    help="Where the durable store writes (default: the temp folder); put it on the disk you care about.",
)
def bench_storage(json_path, clients: int, requests_per_client: int, size_kb: int, folder: str | None) -> None:
    """Authenticated PUT/GET through the durable embedded S3 and through in-memory moto, same run."""
    from pathlib import Path

    from studies import storage_latency

    report = storage_latency.run(
        clients,
        requests_per_client,
        size_kb * 1000,
        Path(folder) if folder else None,
        progress=lambda m: click.echo(f"... {m}", err=True),
    )
    rows = []
    for server, label in (("moto_in_memory", "moto, in memory (old)"), ("durable", "embedded S3, durable")):
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
    table(["server", "op", "n", "p50 ms", "p99 ms", "req/s", "errors"], rows, title="bench storage")
    click.echo(f"ratios: {report['ratios']}")
    write_report(json_path, report)
    if report["errors"]:
        raise click.ClickException(
            f"{report['errors']} request(s) failed; first: "
            f"{report['durable']['put'].get('first_error') or report['durable']['get'].get('first_error')}"
        )
