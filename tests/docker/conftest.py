"""Docker mode: the runtime image built once per session, and a label per test that must end empty.

Skips with the reason where docker cannot run here (no client, no engine, not root for debootstrap).
The first build takes minutes (a ~5 GB image); later sessions find it cached in seconds.
"""

from __future__ import annotations

import uuid

import pytest

from deployer import runtime_image as ri


@pytest.fixture(scope="session")
def docker_engine() -> str:
    try:
        return ri.check_docker()
    except ri.DockerUnavailable as exc:
        pytest.skip(f"docker mode: {exc}")


@pytest.fixture(scope="session")
def runtime_build(docker_engine) -> dict:
    """The runtime image, built (or found cached) by the library function; its report."""
    try:
        return ri.build_runtime_image().to_dict()
    except ri.DockerUnavailable as exc:  # debootstrap missing, not root
        pytest.skip(f"docker mode: the runtime image cannot be built here: {exc}")


@pytest.fixture(scope="session")
def runtime_image(runtime_build) -> str:
    if not ri.image_id(runtime_build["tag"]):
        pytest.skip(f"docker mode: image {runtime_build['tag']} missing")
    return runtime_build["tag"]


@pytest.fixture
def platform_id(docker_engine):
    """A platform label of the test's own; at teardown nothing may carry it (it is reaped either way)."""
    from localwhisk.invoker import docker_container as dc

    value = f"test-{uuid.uuid4().hex[:10]}"
    yield value
    left = dc.leftovers(value)
    dc.reap(value)
    assert left == {"containers": [], "networks": []}, f"the test left docker objects behind: {left}"


@pytest.fixture
def network(platform_id):
    from localwhisk.invoker.docker_container import DockerNetwork

    net = DockerNetwork(platform_id).create()
    try:
        yield net
    finally:
        net.remove()
