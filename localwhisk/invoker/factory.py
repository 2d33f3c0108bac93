"""What an action container is: a process of the platform's (process mode) or a Docker container.

Process mode needs nothing but this machine's Python and node; docker mode runs Python actions
in the project's runtime image with cgroup limits and a network of their own, as OpenWhisk's
Docker container factory does. Node.js actions stay processes in both modes: the image is Python's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from localwhisk.invoker.container import Container
from runtimes import relay

SOCKETS_IN_CONTAINER = "/run/deployer"


def process_factory(key, *, image=None, **options) -> Container:
    """A proxy process of this machine's: `image` is docker mode's, so a process has none."""
    return Container(key, **options)


def platform_id(state_dir: Path) -> str:
    """Stable per state folder, so the next start finds and reaps what a killed platform left."""
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]


class DockerFactory:
    """Owns the platform's Docker network and the relays to its API and S3; `close()` removes them."""

    def __init__(self, state_dir: Path) -> None:
        from localwhisk.invoker import docker_cli
        from localwhisk.invoker import docker_container as dc

        self._dc = dc
        try:
            docker_cli.check_docker()
        except docker_cli.DockerUnavailable as exc:
            raise dc.ContainerError(str(exc)) from exc
        if not docker_cli.image_id(docker_cli.RUNTIME_IMAGE):
            raise dc.ContainerError(
                f"the runtime image {docker_cli.RUNTIME_IMAGE} is not built: run `deployer runtime build`"
            )
        self.platform_id = platform_id(state_dir)
        dc.reap(self.platform_id)  # containers and network a killed platform left
        self.network = dc.DockerNetwork(self.platform_id).create()
        self.sockets = Path(state_dir) / "sockets"
        self.sockets.mkdir(mode=0o755, exist_ok=True)
        self._relays: list = []
        self._spec = ""

    def relay(self, name: str, port: int) -> None:
        """Makes 127.0.0.1:port of the host reachable as 127.0.0.1:port inside every container."""
        path = self.sockets / f"{name}.sock"
        self._relays.append(relay.unix_to_tcp(str(path), port))
        entry = f"{port}={SOCKETS_IN_CONTAINER}/{path.name}"
        self._spec = f"{self._spec},{entry}" if self._spec else entry

    def __call__(self, key, *, image=None, **options):
        """Takes process_factory's options; a work_root is a process's, since a container has its own file system."""
        if options["runtime"] != "python":
            return process_factory(key, **options)
        return self._dc.DockerContainer(
            key,
            memory_mb=options["memory_mb"],
            log_limit_bytes=options["log_limit_bytes"],
            env={**options["env"], "DEPLOYER_RELAYS": self._spec},
            runtime="python",
            max_unpacked_bytes=options["max_unpacked_bytes"],
            platform_id=self.platform_id,
            network=self.network,
            image=image,
            mounts={str(self.sockets): SOCKETS_IN_CONTAINER},
        )

    def close(self) -> None:
        for r in self._relays:
            r.close()
        self._dc.reap(self.platform_id)
        self.network.remove()
