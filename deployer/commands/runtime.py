"""`deployer runtime build`: the action runtime image (runtimes/Dockerfile), built locally and cached."""

from __future__ import annotations

import click

from .output import emit_json, write_report
from .params import OutputFile, Pattern

# Docker's image reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
IMAGE = Pattern(
    r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@sha256:[a-f0-9]{64})?",
    "a Docker image reference such as name:tag or registry/name:tag",
)


@click.group()
def runtime() -> None:
    """The action runtime image (Docker)."""


@runtime.command("build")
@click.option("--tag", type=IMAGE, default=None, help="Image tag (default: deployer/action-python-ml:0.1.0).")
@click.option(
    "--base-image",
    type=IMAGE,
    default=None,
    help="Build on this image (e.g. openwhisk/action-python-v3.11:nightly) instead of a Debian base "
    "made here with debootstrap.",
)
@click.option(
    "--wheelhouse/--no-wheelhouse",
    default=None,
    help="Install from wheels downloaded on the host (default with the local base) or from PyPI + "
    "PyTorch's CPU index (default with --base-image).",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Write the report here ('-': print it as JSON instead of a summary).",
)
def build(tag: str | None, base_image: str | None, wheelhouse: bool | None, json_path: str | None) -> None:
    """Build the runtime image (a second build with nothing changed takes seconds) and report what it holds."""
    from .. import runtime_image as ri

    report = ri.build_runtime_image(
        tag=tag or ri.DEFAULT_TAG,
        base_image=base_image,
        wheelhouse=wheelhouse,
        progress=lambda m: click.echo(f"... {m}", err=True),
    ).to_dict()
    if json_path == "-":
        emit_json(report)
        return
    write_report(json_path, report)
    versions = " ".join(f"{k} {v}" for k, v in report["versions"].items())
    click.echo(
        f"{report['tag']} {report['image_id'][:19]} {report['size_human']} "
        f"({'cached' if report['cached'] else 'built'} in {report['build_seconds']:.1f} s)"
    )
    click.echo(versions)
