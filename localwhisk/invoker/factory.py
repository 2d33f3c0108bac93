"""What an action container is: a process of the platform's (process mode) or a Docker container.

Process mode needs nothing but this machine's Python and node; docker mode runs every action in
the image its kind names in the runtime manifest (`kinds.MANIFEST`: the project's Python image, the
Node.js image) or in its blackbox image, with cgroup limits and a network of their own, as OpenWhisk's
Docker container factory does.

In docker mode a container's network is an ordinary bridge with a route out, as an invoker gives
it; the services on the host's loopback (the platform's API and S3, a page a user publishes) reach
it as Unix sockets in the state folder's `sockets/`, mounted into every container and relayed
there to the same port on the container's loopback (runtimes/relay.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from localwhisk.invoker.container import Container
from runtimes import relay
from runtimes.proxy import RELAY_DIR_ENV

SOCKETS_IN_CONTAINER = "/run/deployer"
SOCKETS_DIR = "sockets"  # in the state folder
# ports a container's own processes listen on: a published service gets another port inside
RESERVED_IN_CONTAINER = frozenset({8080})


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
        missing = docker_cli.missing_runtime_images()
        if missing:
            raise dc.ContainerError(f"runtime images not built: {', '.join(missing)}; run `deployer runtime build`")
        self.platform_id = platform_id(state_dir)
        dc.reap(self.platform_id)  # containers and network a killed platform left
        self.network = dc.DockerNetwork(self.platform_id, internal=False).create()
        self.sockets = Path(state_dir) / SOCKETS_DIR
        self.sockets.mkdir(mode=0o755, exist_ok=True)
        self._relays: list = []

    def relay(self, port: int) -> None:
        """Makes 127.0.0.1:port of the host reachable as 127.0.0.1:port inside every container."""
        self._relays.append(_publish(self.sockets, port, port))

    def __call__(self, key, *, image=None, **options):
        """Takes process_factory's options; a work_root is a process's, since a container has its own file system.

        `image` is the action's (kinds.image); without one, its runtime's default kind's (DEFAULT_IMAGES).
        """
        return self._dc.DockerContainer(
            key,
            memory_mb=options["memory_mb"],
            log_limit_bytes=options["log_limit_bytes"],
            env={**options["env"], RELAY_DIR_ENV: SOCKETS_IN_CONTAINER},
            runtime=options["runtime"],
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


def _publish(folder: Path, host_port: int, inside_port: int) -> relay.Relay:
    return relay.unix_to_tcp(str(folder / relay.socket_name(inside_port)), host_port)


class Published:
    """A service on the host's 127.0.0.1:port made reachable from a docker-mode platform's action containers
    as `http://{host}:{inside_port}`; `close()` (or the end of a `with`) withdraws it."""

    def __init__(self, relay_: relay.Relay, port: int, inside_port: int) -> None:
        self._relay = relay_
        self.port = port
        self.inside_port = inside_port
        self.host = "127.0.0.1"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.inside_port}"

    def close(self) -> None:
        self._relay.close()

    def __enter__(self) -> Published:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def docker_mode(state_dir: Path) -> bool:
    """True while the platform of this state folder runs action containers in Docker."""
    from localwhisk.server import INFO_FILE

    try:
        return json.loads((Path(state_dir) / INFO_FILE).read_text()).get("containers") == "docker"
    except (OSError, ValueError, AttributeError):
        return False


def publish_port(state_dir: Path, port: int) -> Published | None:
    """Makes the host's 127.0.0.1:port reachable from the action containers of the platform in `state_dir`, for as
    long as the caller keeps the answer; None where actions already share the host's loopback (process mode,
    or no platform running). The port inside is the same unless a container's own server holds it."""
    if not docker_mode(state_dir):
        return None
    folder = Path(state_dir) / SOCKETS_DIR
    taken = {int(p.stem) for p in folder.glob("*.sock") if p.stem.isdigit()}
    inside = port
    while inside in RESERVED_IN_CONTAINER or (inside != port and inside in taken):
        inside = inside + 1 if inside < 65535 else 1024
    return Published(_publish(folder, port, inside), port, inside)
