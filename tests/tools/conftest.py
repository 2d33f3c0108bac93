"""OpenWhisk CLIs written by others (npm, pinned in package.json here) against the local platform, in both modes."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def tool_platform(request, tmp_path_factory):
    """A local platform of the module's own, in process mode and in docker mode (skipped where Docker is not)."""
    from localwhisk.invoker import docker_container as dc
    from localwhisk.invoker.factory import platform_id
    from localwhisk.supervisor import LocalPlatform

    mode = request.param
    if mode == "docker":
        request.getfixturevalue("runtime_image")
    state = tmp_path_factory.mktemp(f"platform-{mode}")
    with LocalPlatform(state, containers=mode, prewarm="none") as info:
        yield info
    if mode == "docker":
        assert dc.leftovers(platform_id(state)) == {"containers": [], "networks": []}


@pytest.fixture(scope="module")
def client(tool_platform):
    """The platform's own REST client: to wait for what a tool started without waiting, and to check what it made."""
    with tool_platform.client() as c:
        yield c
