"""Every action, zipped as `deployer deploy` zips it, loads in the runtime with only what the project image has."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

ACTIONS = Path(__file__).resolve().parents[2] / "actions"


@pytest.mark.parametrize(
    "folder", sorted(p.parent.relative_to(ACTIONS).as_posix() for p in ACTIONS.glob("*/*/__main__.py"))
)
def test_every_action_zip_loads_and_answers_with_only_what_its_image_has(folder, runtime_proxy):
    """Zipped as `deploy` zips it and loaded by the launcher with the project image's module set: an action
    that leaned on the platform's Python (its modules, its variables) fails here as it would on a cluster."""
    from deployer import manifest
    from localwhisk.entities import kinds

    code = base64.b64encode(manifest.zip_action(ACTIONS / folder)).decode()
    _, deny = kinds.container_profile({"kind": "blackbox", "image": manifest.DEFAULT_RUNTIME_IMAGE})
    with runtime_proxy(env={"ACTION_DENY_MODULES": deny}) as c:
        status, body, logs = c.init({"name": folder, "code": code, "binary": True}, 120)
        assert status == 200, (body, logs[-5:])
        status, body = c.run({"value": {}, "activation_id": "probe"}, 120)
        assert status == 200 and isinstance(body, dict), body  # a result or an error naming what is missing
