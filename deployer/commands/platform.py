"""`deployer up | down | status | storage env`: the local platform in the background."""

from __future__ import annotations

import click

from localwhisk import supervisor
from localwhisk.invoker.prewarm import parse as parse_prewarm
from localwhisk.settings import MODES, Settings

from ..folders import platform_state_dir
from .output import emit_json
from .params import BUCKET, PORT, integer, seconds


def _check_prewarm(_ctx, _param, value: str) -> str:
    try:
        parse_prewarm(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.command()
@click.option("--port", type=PORT, default=Settings.port, show_default=True, help="OpenWhisk API port on 127.0.0.1.")
@click.option("--s3-port", type=PORT, default=Settings.s3_port, show_default=True, help="S3 port on 127.0.0.1.")
@click.option(
    "--max-containers",
    type=integer(1, 256),
    default=Settings.max_containers,
    show_default=True,
    help="Cap on concurrent action processes.",
)
@click.option(
    "--idle-timeout-s",
    type=seconds(86400, low_open=True),
    default=Settings.idle_timeout_s,
    show_default=True,
    help="Evict warm containers idle this long.",
)
@click.option(
    "--max-unpacked-mb",
    default=Settings.max_unpacked_mb,
    show_default=True,
    type=integer(1, 65536),
    help="Cap on what an action's zip may unpack to.",
)
@click.option(
    "--prewarm",
    default=Settings.prewarm,
    show_default=True,
    callback=_check_prewarm,
    help="Stem-cell containers started ahead of need, KIND@MEMORY_MBxCOUNT,...; 'none' for none.",
)
@click.option(
    "--containers",
    type=click.Choice(MODES),
    default=Settings.containers,
    show_default=True,
    help="process: actions run as processes of this machine's Python/node (no Docker needed); docker: "
    "every action runs in its kind's runtime image (deployer runtime build) with cgroup limits.",
)
def up(
    port: int,
    s3_port: int,
    max_containers: int,
    idle_timeout_s: float,
    max_unpacked_mb: int,
    prewarm: str,
    containers: str,
) -> None:
    """Start the local platform (OpenWhisk API + embedded S3) in the background."""
    settings = Settings(
        platform_state_dir(),
        port=port,
        s3_port=s3_port,
        max_containers=max_containers,
        idle_timeout_s=idle_timeout_s,
        max_unpacked_mb=max_unpacked_mb,
        prewarm=prewarm,
        containers=containers,
    )
    info, started = supervisor.up(settings)
    path = supervisor.write_wskprops(info)
    click.echo(
        ("started" if started else "already running") + f": OpenWhisk API {info.apihost}, "
        f"S3 {info.s3_endpoint}, state {info.state_dir}"
    )
    click.echo(f"APIHOST={info.apihost}\nAUTH={info.auth}")
    click.echo(f"wskprops written to {path}; for wsk: export WSK_CONFIG_FILE={path}")
    click.echo(f'S3 access key {info.s3_access_key}; for aws-cli and boto3: eval "$(deployer storage env)"')


@click.command()
def down() -> None:
    """Stop the local platform; actions, activations and S3 objects stay on disk."""
    stopped = supervisor.down(platform_state_dir())  # raises, and so exits non-zero, when it did not stop cleanly
    click.echo("stopped" if stopped else "the local platform was not running")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Where the local platform runs and what it holds; exits 1 when any of its processes is not well."""
    state_dir = platform_state_dir()
    problems = supervisor.problems(state_dir)
    info = supervisor.read_info(state_dir)
    if info is None:
        out = {"running": False, "state_dir": str(state_dir)}
    else:
        import requests

        try:
            stats = requests.get(info.apihost + "/api/v1", timeout=5).json().get("invoker", {})
        except (requests.RequestException, ValueError) as exc:
            stats = {}
            problems.append(f"the local platform (pid {info.pid}) stopped answering on {info.apihost}: {exc}")
        client = info.client()
        out = {
            "running": True,
            "pid": info.pid,
            "apihost": info.apihost,
            "s3_pid": info.s3_pid,
            "s3_endpoint": info.s3_endpoint,
            "s3_access_key": info.s3_access_key,
            "s3_secret_key": info.s3_secret_key,
            "state_dir": str(info.state_dir),
            "wskprops": str(info.wskprops_path),
            "actions": len(client.list_actions()),
            "packages": len(client.list_packages()),
            "invoker": stats,
        }
    out["problems"] = problems
    if as_json:
        emit_json(out)
    else:
        for key, value in out.items():
            if key != "problems":
                click.echo(f"{key:12} {value}")
    if problems:
        raise supervisor.SupervisorError("; ".join(problems))


def storage_exports(info: supervisor.PlatformInfo, bucket: str | None = None) -> list[str]:
    """Shell lines for aws-cli, boto3 and the project's own S3 settings (AWS_ENDPOINT_URL_S3 for the first two)."""
    import shlex

    env = info.storage_env(bucket)
    env["AWS_ENDPOINT_URL_S3"] = info.s3_endpoint
    return [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]


@click.group()
def storage() -> None:
    """The local platform's embedded S3."""


@storage.command("env")
@click.option("--bucket", type=BUCKET, default=None, help="S3_BUCKET to export (default: the project's bucket).")
def storage_env(bucket: str | None) -> None:
    """Print `export AWS_...` lines for the embedded S3: eval "$(deployer storage env)"."""
    from ..target import local_target

    local_target(start=True)
    info = supervisor.read_info(platform_state_dir())
    if info is None:
        raise click.ClickException(
            "the local platform stopped before its storage settings could be read; run `deployer up`"
        )
    for line in storage_exports(info, bucket):
        click.echo(line)
