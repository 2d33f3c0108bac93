"""The per-user folders of the deployer: platform state, FedAvg checkpoints, caches (via platformdirs).

One lookup for every command and the local platform, so they agree on where things are.
MNIST's folder stays with mlcore (`mlcore.mnist.default_root`): actions bundle mlcore,
and their runtime has no platformdirs.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "deployer"


def user_path(text: str) -> Path:
    """`~` and `~user` expanded as a shell does: a `~name` naming no user stays as written (Path.expanduser
    raises instead)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def data_dir(*parts: str) -> Path:
    """`$XDG_DATA_HOME/deployer/...` (`~/.local/share/deployer/...`) on Linux, the platform's own elsewhere."""
    return Path(platformdirs.user_data_dir(APP, appauthor=False)).joinpath(*parts)


def cache_dir(*parts: str) -> Path:
    """`$XDG_CACHE_HOME/deployer/...` (`~/.cache/deployer/...`) on Linux, the platform's own elsewhere."""
    return Path(platformdirs.user_cache_dir(APP, appauthor=False)).joinpath(*parts)


def platform_state_dir() -> Path:
    """The local platform's state folder: `$DEPLOYER_HOME` when set, else the per-user data folder's `platform`."""
    env = os.environ.get("DEPLOYER_HOME")
    return user_path(env) if env else data_dir("platform")
