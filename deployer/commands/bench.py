"""`deployer bench ...`: each benchmark writes JSON with its baseline measured in the same run."""

from __future__ import annotations

import click

from ..cli import LazyGroup
from .output import show, write_report
from .params import Number, OutputFile, OutputFolder, choices, integer, ints

LAZY = {
    "infer": "deployer.commands.ml:bench_infer_command",
    "train": "deployer.commands.train_bench:bench_train_command",
    "fedavg": "deployer.commands.fedavg_bench:bench_command",
    "hostnet": "deployer.commands.hostnet:bench_command",
}


@click.group(cls=LazyGroup, lazy=LAZY)
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
    from studies.bench_views import platform_view

    report = platform_cost.run(
        list(concurrency),
        requests_per_worker,
        cold_runs,
        apihost=obj.apihost,
        auth=obj.auth,
        progress=lambda m: click.echo(f"... {m}", err=True),
        modes=modes,
    )
    show(platform_view(report))
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
    from studies.bench_views import storage_view

    report = storage_latency.run(
        clients,
        requests_per_client,
        size_kb * 1000,
        Path(folder) if folder else None,
        progress=lambda m: click.echo(f"... {m}", err=True),
    )
    show(storage_view(report))
    write_report(json_path, report)
    if report["errors"]:
        raise click.ClickException(
            f"{report['errors']} request(s) failed; first: "
            f"{report['durable']['put'].get('first_error') or report['durable']['get'].get('first_error')}"
        )


@bench.command("scale")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.option(
    "--parts",
    type=choices(("records", "objects", "invokes", "actions", "sizes", "fedavg")),
    default="records,objects,invokes,actions,sizes,fedavg",
    show_default=True,
    help="Which curves to measure.",
)
@click.option(
    "--records",
    type=ints(1, 10_000_000, example="1000,10000"),
    default="1000,10000",
    show_default=True,
    help="Activation records in the platform's store, one point each (1000000 runs: about 10 min to insert).",
)
@click.option(
    "--objects",
    type=ints(1, 10_000_000, example="1000,10000"),
    default="1000,10000",
    show_default=True,
    help="Objects in the embedded S3's bucket, one point each.",
)
@click.option("--samples", default=30, show_default=True, type=integer(1, 100_000), help="Requests per measure.")
@click.option("--object-bytes", default=1000, show_default=True, type=integer(1, 10_000_000))
@click.option(
    "--concurrency",
    type=ints(1, 256, example="1,4,16"),
    default="1,4,16",
    show_default=True,
    help="Blocking no-op invokes at once, one point each.",
)
@click.option("--requests", "requests_per_worker", default=20, show_default=True, type=integer(1, 100_000))
@click.option(
    "--actions",
    type=ints(1, 1_000_000, example="100,1000"),
    default="100,1000",
    show_default=True,
    help="Actions in one namespace, one point each.",
)
@click.option(
    "--sizes",
    type=ints(1, 4_000_000_000, example="1000,1000000"),
    default="1000,1000000,10000000",
    show_default=True,
    help="Object sizes in bytes, one point each.",
)
@click.option(
    "--clients", type=ints(1, 60_000, example="100,1000"), default="100,1000", show_default=True, help="FedAvg K."
)
@click.option(
    "--per-round",
    type=ints(1, 60_000, example="10,100"),
    default="10,100",
    show_default=True,
    help="FedAvg clients a round (C*K); points with more than K are left out.",
)
@click.option("--executors", type=choices(("process", "ray")), default="process,ray", show_default=True)
@click.option("--rounds", default=3, show_default=True, type=integer(2, 1000), help="FedAvg rounds per point.")
@click.option("--workers", default=2, show_default=True, type=integer(1, 256), help="FedAvg executor workers.")
@click.option("--figures", type=OutputFolder(), help="Write a PNG per curve into this folder.")
def bench_scale(
    json_path,
    parts,
    records: tuple[int, ...],
    objects: tuple[int, ...],
    samples: int,
    object_bytes: int,
    concurrency,
    requests_per_worker: int,
    actions,
    sizes,
    clients,
    per_round,
    executors,
    rounds: int,
    workers: int,
    figures,
) -> None:
    """How cost grows with what is stored, sent at once or trained: records, objects, invokes, actions, object
    sizes and FedAvg clients, each curve's growth named."""
    from studies import scale
    from studies.bench_views import scale_view

    report = scale.run(
        sorted(set(records)),
        sorted(set(objects)),
        samples,
        object_bytes,
        progress=lambda m: click.echo(f"... {m}", err=True),
        parts=tuple(parts),
        concurrencies=sorted(set(concurrency)),
        requests_per_worker=requests_per_worker,
        action_sizes=sorted(set(actions)),
        byte_sizes=sorted(set(sizes)),
        fedavg_clients=sorted(set(clients)),
        fedavg_per_round=sorted(set(per_round)),
        fedavg_executors=list(dict.fromkeys(executors)),
        fedavg_rounds=rounds,
        fedavg_workers=workers,
    )
    show(scale_view(report))
    write_report(json_path, report)
    if figures:
        from pathlib import Path

        from studies.scale_figures import write_figures

        for path in write_figures(report, Path(figures)):
            click.echo(f"wrote {path}", err=True)


def _png_name(ctx, param, value):
    if value is not None and not str(value).lower().endswith(".png"):
        raise click.BadParameter(f"{value} does not end in .png", param_hint="'--png'")
    return value


@bench.command("model")
@click.option("--from", "from_path", type=click.Path(exists=True, dir_okay=False), help="A bench scale --json report.")
@click.option("--machines", type=ints(1, 100_000, example="1,2,4"), default="1,2,4,8,16,32,64", show_default=True)
@click.option("--step-s", type=Number(0.0, 3600.0, low_open=True), default=0.02, show_default=True)
@click.option("--update-bytes", type=integer(1, 10_000_000_000), default=4 * 199_210, show_default=True)
@click.option("--clients-per-round", type=integer(1, 100_000), default=100, show_default=True)
@click.option("--client-update-s", type=Number(0.0, 3600.0, low_open=True), default=0.5, show_default=True)
@click.option("--json", "json_path", type=OutputFile(), help="Write the predicted curves here.")
@click.option("--png", "png_path", type=OutputFile(), callback=_png_name, help="Write their figure here (a .png).")
def bench_model(from_path, machines, step_s, update_bytes, clients_per_round, client_update_s, json_path, png_path):
    """Predicted seconds per round on N machines for each topology and FedAvg on OpenWhisk, from measured parts."""
    import json
    from pathlib import Path

    from studies import cluster_model

    try:
        report = json.loads(Path(from_path).read_text()) if from_path else {}
        if not isinstance(report, dict):
            raise TypeError("not a JSON object")
        parts = cluster_model.from_scale(report, step_s=step_s, update_bytes=update_bytes)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise click.ClickException(
            f"{from_path} is not a `bench scale --json` report: {type(exc).__name__}: {exc}"
        ) from exc
    out = cluster_model.predict(parts, sorted(set(machines)), clients_per_round, client_update_s)
    for name, curve in out["curves"].items():
        click.echo(f"{name}: " + "  ".join(f"N={p['n']}: {p['round_s']:.4g} s" for p in curve))
    write_report(json_path, out)
    if png_path:
        from studies.scale_figures import write_model_figure

        click.echo(f"wrote {write_model_figure(out, Path(png_path))}", err=True)


@bench.command("report")
@click.option(
    "--from",
    "from_dir",
    type=click.Path(exists=True, file_okay=False),
    default="docs/data",
    show_default=True,
    help="The folder of the benches' --json reports.",
)
@click.option("--out", "out_path", type=OutputFile(), default="docs/results.md", show_default=True)
@click.option("--check", is_flag=True, help="Write nothing; fail when the page differs from what the JSON renders.")
def bench_report(from_dir: str, out_path: str, check: bool) -> None:
    """The results page from the benches' JSON: conditions, tables with the baseline beside, ratios."""
    from pathlib import Path

    from studies.results_page import render

    page = render(Path(from_dir), Path(out_path))
    if check:
        if not Path(out_path).is_file() or Path(out_path).read_text() != page:
            raise click.ClickException(
                f"{out_path} is not what {from_dir} renders: "
                f"run `deployer bench report --from {from_dir} --out {out_path}`"
            )
        click.echo(f"{out_path} is what {from_dir} renders")
        return
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(page)
    click.echo(f"wrote {out_path}", err=True)
