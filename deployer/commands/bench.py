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


MODEL_CHECK_INPUTS = {
    "train": ("docs/data/bench-train.json", "docs/data/bench-train-wide.json"),
    "calibration": "docs/data/model-check/calibration.json",
    "platform": "docs/data/bench-platform.json",
    "fedavg": "docs/data/model-check/fedavg-timing.json",
}


def _read_json_object(path: str, what: str) -> dict:
    import json
    from pathlib import Path

    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(report, dict):
        raise click.ClickException(f"{path} is not {what}: not a JSON object")
    return report


@bench.command("model")
@click.option("--from", "from_path", type=click.Path(exists=True, dir_okay=False), help="A bench scale --json report.")
@click.option("--machines", type=ints(1, 100_000, example="1,2,4"), default="1,2,4,8,16,32,64", show_default=True)
@click.option("--step-s", type=Number(0.0, 3600.0, low_open=True), default=0.02, show_default=True)
@click.option("--update-bytes", type=integer(1, 10_000_000_000), default=4 * 199_210, show_default=True)
@click.option("--clients-per-round", type=integer(1, 100_000), default=100, show_default=True)
@click.option("--client-update-s", type=Number(0.0, 3600.0, low_open=True), default=0.5, show_default=True)
@click.option("--json", "json_path", type=OutputFile(), help="Write the predicted curves (or the check) here.")
@click.option("--png", "png_path", type=OutputFile(), callback=_png_name, help="Write their figure here (a .png).")
@click.option(
    "--check",
    is_flag=True,
    help="Predict this machine's measured points (shared-host mode) from the calibration and tabulate the error.",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="Measure the check's calibration parts (S3 requests by size, round CPU, compute floors) into --json.",
)
@click.option(
    "--train",
    "train_paths",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="--check: a bench train --json report (repeatable).  [default: the committed two]",
)
@click.option(
    "--calibration",
    "calibration_path",
    type=click.Path(dir_okay=False),
    default=MODEL_CHECK_INPUTS["calibration"],
    show_default=True,
    help="--check: a bench model --calibrate report.",
)
@click.option(
    "--platform",
    "platform_path",
    type=click.Path(dir_okay=False),
    default=MODEL_CHECK_INPUTS["platform"],
    show_default=True,
    help="--check: a bench platform report (the warm invoke).",
)
@click.option(
    "--fedavg",
    "fedavg_path",
    type=click.Path(dir_okay=False),
    default=MODEL_CHECK_INPUTS["fedavg"],
    show_default=True,
    help="--check: a bench fedavg report (the executors' timing).",
)
@click.option("--md", "md_path", type=OutputFile(), help="--check: write the table as markdown here.")
@click.option(
    "--requests", type=integer(2, 100_000), default=100, show_default=True, help="--calibrate: requests per size."
)
@click.option(
    "--floor-steps", type=integer(5, 100_000), default=50, show_default=True, help="--calibrate: steps per floor."
)
@click.option(
    "--floor-models",
    type=choices(("lenet5", "lenet5x4")),
    default="lenet5",
    show_default=True,
    help="--calibrate: models whose compute floor no committed study recorded.",
)
@click.option(
    "--exchange-steps",
    type=integer(5, 100_000),
    default=100,
    show_default=True,
    help="--calibrate: sync rounds per exchange floor (each topology, model and worker count).",
)
def bench_model(
    from_path,
    machines,
    step_s,
    update_bytes,
    clients_per_round,
    client_update_s,
    json_path,
    png_path,
    check,
    calibrate,
    train_paths,
    calibration_path,
    platform_path,
    fedavg_path,
    md_path,
    requests,
    floor_steps,
    floor_models,
    exchange_steps,
):
    """Predicted seconds per round on N machines for each topology and FedAvg on OpenWhisk, from measured parts;
    with --check, this machine's measured points against the model told it runs here; with --calibrate, the
    parts the check needs."""
    from pathlib import Path

    from studies import cluster_model

    if check and calibrate:
        raise click.UsageError("--check reads a calibration; --calibrate measures one: pick one", ctx=None)
    if calibrate:
        from studies import model_calibration

        report = model_calibration.calibrate(
            floor_models=tuple(floor_models),
            requests=requests,
            floor_steps=floor_steps,
            exchange_steps=exchange_steps,
            progress=lambda m: click.echo(f"... {m}", err=True),
        )
        click.echo(f"request costs at {', '.join(str(c['bytes']) for c in report['request_costs'])} bytes")
        write_report(json_path, report)
        return
    if check:
        from studies import model_check
        from studies.errors import BenchError

        train = {p: _read_json_object(p, "a bench train report") for p in train_paths or MODEL_CHECK_INPUTS["train"]}
        try:
            out = model_check.run_check(
                train,
                _read_json_object(calibration_path, "a bench model --calibrate report"),
                _read_json_object(platform_path, "a bench platform report"),
                _read_json_object(fedavg_path, "a bench fedavg report"),
            )
        except (BenchError, KeyError, TypeError, ValueError) as exc:
            raise click.ClickException(f"the model check failed: {type(exc).__name__}: {exc}") from exc
        text = model_check.markdown(out)
        click.echo(text, nl=False)
        write_report(json_path, out)
        if md_path:
            Path(md_path).parent.mkdir(parents=True, exist_ok=True)
            Path(md_path).write_text(text)
            click.echo(f"wrote {md_path}", err=True)
        if png_path:
            from studies.scale_figures import write_model_figure

            click.echo(f"wrote {write_model_figure(out, Path(png_path))}", err=True)
        return
    report = _read_json_object(from_path, "a `bench scale --json` report") if from_path else {}
    given = click.get_current_context().get_parameter_source
    try:
        parts = cluster_model.from_scale(
            report,
            step_s=step_s if given("step_s") is not click.core.ParameterSource.DEFAULT else None,
            update_bytes=update_bytes if given("update_bytes") is not click.core.ParameterSource.DEFAULT else None,
        )
    except (ValueError, TypeError, KeyError, IndexError) as exc:
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


@bench.command("exchange")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report here.")
@click.option(
    "--workers",
    type=ints(2, 64, example="2,4"),
    default="2,4",
    show_default=True,
    help="Worker processes, one row each.",
)
@click.option("--steps", default=200, show_default=True, type=integer(1, 100_000), help="Sync steps per row.")
@click.option(
    "--clients",
    type=choices(("boto3", "signed")),
    default="boto3,signed",
    show_default=True,
    help="S3 clients to compare: boto3 alone, or storage's signed GET/PUT path.",
)
@click.option(
    "--topologies",
    type=choices(("allreduce", "scatter", "ps")),
    default="allreduce",
    show_default=True,
    help="The training topologies' own exchanges to run (ps adds the parameter server's process).",
)
@click.option("--compress", type=click.Choice(["none", "fp16"]), default="fp16", show_default=True)
@click.option(
    "--compute-ms",
    default=6,
    show_default=True,
    type=integer(0, 10_000),
    help="One process's compute per step (LeNet-5, global batch 128: about 6 ms), spun split over the workers "
    "as the gradient's stand-in; 0 measures the exchange alone.",
)
@click.option(
    "--requests",
    default=200,
    show_default=True,
    type=integer(1, 100_000),
    help="Single PUTs (then GETs) per client for the per-request costs.",
)
def bench_exchange(
    json_path, workers, steps: int, clients, topologies, compress: str, compute_ms: int, requests: int
) -> None:
    """Where a sync step's exchange goes: client CPU, endpoint CPU, waiting, requests and misses per step."""
    from studies import exchange_profile

    report = exchange_profile.run(
        tuple(workers),
        steps,
        tuple(clients),
        compress,
        float(compute_ms),
        requests,
        topologies=tuple(topologies),
        progress=lambda m: click.echo(f"... {m}", err=True),
    )
    show(exchange_profile.view(report))
    write_report(json_path, report)


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
