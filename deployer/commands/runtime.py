"""`deployer runtime build`: the action runtime images (runtimes/Dockerfile, runtimes/nodejs/Dockerfile), built
locally and cached."""

from __future__ import annotations

import click

from localwhisk.entities.kinds import MANIFEST

from .output import emit_json, write_report
from .params import OutputFile, Pattern

# Docker's image reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
IMAGE = Pattern(
    r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@sha256:[a-f0-9]{64})?",
    "a Docker image reference such as name:tag or registry/name:tag",
)


RUNTIMES = tuple(dict.fromkeys(rt.family for rt in MANIFEST))


@click.group()
def runtime() -> None:
    """The action runtime images (Docker)."""


@runtime.command("build")
@click.option(
    "--runtime",
    "runtimes",
    type=click.Choice(RUNTIMES),
    multiple=True,
    help="Build this runtime's image only (repeatable; default: every runtime's).",
)
@click.option(
    "--tag", type=IMAGE, default=None, help="Image tag, with one --runtime (default: the image kinds.MANIFEST names)."
)
@click.option(
    "--base-image",
    type=IMAGE,
    default=None,
    help="Build the python image on this image (e.g. openwhisk/action-python-v3.11:nightly) instead of a "
    "Debian base made here with debootstrap.",
)
@click.option(
    "--wheelhouse/--no-wheelhouse",
    default=None,
    help="Install the python image from wheels downloaded on the host (default with the local base) or from "
    "PyPI + PyTorch's CPU index (default with --base-image).",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Write the reports, by runtime, here ('-': print them as JSON instead of a summary).",
)
def build(
    runtimes: tuple[str, ...], tag: str | None, base_image: str | None, wheelhouse: bool | None, json_path: str | None
) -> None:
    """Build the runtime images (a second build with nothing changed takes seconds) and report what they hold."""
    from .. import runtime_image as ri

    runtimes = tuple(dict.fromkeys(runtimes)) or ri.RUNTIMES
    if tag is not None and len(runtimes) != 1:
        raise click.BadParameter("names one image: choose it with one --runtime", param_hint="'--tag'")
    if (base_image is not None or wheelhouse is not None) and "python" not in runtimes:
        raise click.BadParameter("applies to the python image only", param_hint="'--base-image' / '--wheelhouse'")
    reports = {
        runtime: report.to_dict()
        for runtime, report in ri.build_runtime_images(
            runtimes,
            tag=tag,
            base_image=base_image,
            wheelhouse=wheelhouse,
            progress=lambda m: click.echo(f"... {m}", err=True),
        ).items()
    }
    if json_path == "-":
        emit_json(reports)
        return
    write_report(json_path, reports)
    for report in reports.values():
        versions = " ".join(f"{k} {v}" for k, v in report["versions"].items())
        click.echo(
            f"{report['tag']} {report['image_id'][:19]} {report['size_human']} "
            f"({'cached' if report['cached'] else 'built'} in {report['build_seconds']:.1f} s)"
        )
        click.echo(f"  {versions}")
