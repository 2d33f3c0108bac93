"""Which OpenWhisk to talk to: flags, then OW_APIHOST/OW_AUTH, then wskprops, else the local platform.

The same resolution serves `deploy`, `invoke`, `train`, `fedavg --executor openwhisk`
and the web page, so one command works against a real cluster or the embedded default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mlcore.openwhisk import OpenWhiskClient

from .errors import ConfigError


@dataclass(frozen=True)
class Target:
    apihost: str
    auth: str
    source: str
    local: bool = False
    insecure: bool = False

    def client(self) -> OpenWhiskClient:
        return OpenWhiskClient(self.apihost, self.auth, insecure=self.insecure)


def read_wskprops(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip().upper()] = value.strip()
    return props


def _wskprops_path() -> Path | None:
    env = os.environ.get("WSK_CONFIG_FILE")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"WSK_CONFIG_FILE={env} does not exist")
        return path
    home = Path.home() / ".wskprops"
    return home if home.is_file() else None


def resolve(apihost: str | None = None, auth: str | None = None, *, start_local: bool = True,
            insecure: bool = False) -> Target:
    """Raises ConfigError when settings are half given or nothing can be reached."""
    if apihost or auth:
        if not (apihost and auth):
            raise ConfigError("give both --apihost and --auth (or neither)")
        return Target(apihost, auth, "flags", insecure=insecure)
    env_host, env_auth = os.environ.get("OW_APIHOST"), os.environ.get("OW_AUTH")
    if env_host or env_auth:
        if not (env_host and env_auth):
            raise ConfigError("set both OW_APIHOST and OW_AUTH (or neither)")
        return Target(env_host, env_auth, "environment", insecure=insecure)
    path = _wskprops_path()
    if path is not None:
        props = read_wskprops(path)
        if not props.get("APIHOST") or not props.get("AUTH"):
            raise ConfigError(f"{path} lacks APIHOST or AUTH")
        return Target(props["APIHOST"], props["AUTH"], str(path),
                      insecure=insecure or props.get("INSECURE_SSL", "").lower() == "true")
    return local_target(start=start_local)


def local_target(start: bool = True) -> Target:
    from .local import supervisor

    info = supervisor.read_info(supervisor.default_state_dir())
    if info is None:
        if not start:
            raise ConfigError("no OpenWhisk configured and the local platform is not running; run `deployer up`")
        info, started = supervisor.up()
        if started:
            print(f"started the local platform on {info.apihost} (stop it with `deployer down`)", file=sys.stderr)
    return Target(info.apihost, info.auth, "local platform", local=True)


def resolve_client(apihost: str | None = None, auth: str | None = None, start_local: bool = True) -> OpenWhiskClient:
    return resolve(apihost, auth, start_local=start_local).client()


def local_storage_config(bucket: str | None = None):
    """The embedded S3 of the running local platform (started on demand)."""
    from .local import supervisor

    local_target(start=True)
    info = supervisor.read_info(supervisor.default_state_dir())
    return info.storage_config(bucket)


def storage_env_for(target: Target) -> dict[str, str]:
    """S3 settings for manifest `$VAR`s: the embedded S3 of the local platform; elsewhere, the user's env."""
    if not target.local:
        return {}
    from .local import supervisor

    info = supervisor.read_info(supervisor.default_state_dir())
    return info.storage_env(os.environ.get("S3_BUCKET")) if info else {}
