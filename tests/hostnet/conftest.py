"""Fixtures for hostnet tests: one guest image per session, leftovers checked.

Integration tests (marked hostnet) skip with the name of what is missing.
"""

from __future__ import annotations

import pytest

from hostnet.host import detect_accelerator, missing_components


def require(backend: str | None = None) -> None:
    missing = missing_components(backend)
    if missing:
        pytest.skip("hostnet needs: " + ", ".join(missing) + " (run scripts/install-hostnet-deps.sh as root)")


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory):
    """The guest image, built once (reused from the cache when it is there)."""
    require("virtio-net")
    from hostnet.errors import ImageError
    from hostnet.image import build_image

    try:
        return build_image()
    except ImageError as exc:
        pytest.skip(f"cannot build the guest image: {exc}")


@pytest.fixture(scope="session")
def accel():
    return detect_accelerator()


@pytest.fixture()
def run_root(tmp_path_factory):
    # Unix socket paths cap at 108 bytes: keep the lab's run dir short.
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="hn", dir="/tmp"))
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)
