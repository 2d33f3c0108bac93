"""The Docker engine as the platform uses it: the docker CLI, whether an engine answers, which images exist.

Docker mode runs action containers through the docker CLI (no Python SDK: the CLI is what a
user has and what `dockerd` answers), so a failure message is the CLI's own last line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from localwhisk.entities import kinds
from localwhisk.entities.kinds import PYTHON_IMAGE
from localwhisk.errors import LocalWhiskError

RUNTIME_IMAGE = PYTHON_IMAGE  # the project's runtime image, built by `deployer runtime build`


class DockerUnavailable(LocalWhiskError):
    """No docker client, or no engine answering it; the message names the fix."""


class RuntimeBuildError(LocalWhiskError):
    """A step of the image build failed; the message names the step and the tail of its output."""


def docker_binary() -> str:
    return os.environ.get("DEPLOYER_DOCKER") or shutil.which("docker") or "docker"


def docker(
    *args: str, check: bool = True, timeout: float | None = 120, input: bytes | None = None, text: bool = True
) -> subprocess.CompletedProcess:
    """Runs one docker CLI command; with check, a failure raises RuntimeBuildError with its stderr."""
    try:
        done = subprocess.run(
            [docker_binary(), *args],
            capture_output=True,
            timeout=timeout,
            input=input,
            text=text if input is None else False,
        )
    except FileNotFoundError as exc:
        raise DockerUnavailable(
            "docker is not installed: run `./run setup` as root (installs docker.io and starts dockerd)"
        ) from exc
    if check and done.returncode != 0:
        err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode(errors="replace")
        raise RuntimeBuildError(f"docker {' '.join(args[:3])} failed: {err.strip()[-800:]}")
    return done


def check_docker() -> str:
    """The engine's version, or DockerUnavailable saying how to get one."""
    if shutil.which(docker_binary()) is None and not Path(docker_binary()).is_file():
        raise DockerUnavailable(
            "docker is not installed: run `./run setup` as root (installs docker.io and starts dockerd)"
        )
    try:
        done = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise DockerUnavailable(
            "the Docker engine does not answer `docker info` within 30 s: restart dockerd "
            "(scripts/start-dockerd.sh as root)"
        ) from exc
    version = done.stdout.strip()
    if done.returncode != 0 or not version or "error" in version.lower():
        reason = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise DockerUnavailable(
            f"the Docker engine is not running ({reason}): start it with `scripts/start-dockerd.sh` as root"
        )
    return version


def image_id(ref: str) -> str | None:
    done = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def missing_runtime_images() -> list[str]:
    """The images of the runtime manifest's kinds that this engine does not have (docker mode needs them all)."""
    return [img for img in dict.fromkeys(rt.image for rt in kinds.MANIFEST) if not image_id(img)]
