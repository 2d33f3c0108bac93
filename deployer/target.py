"""Where the OpenWhisk API and the object storage are: one Target, resolved once, for every command.

The API: flags, then OW_APIHOST/OW_AUTH, then wskprops, else the local platform. The
same resolution serves `deploy`, `invoke`, `train`, `fedavg --executor openwhisk`
and the web page, so one command works against a real cluster or the embedded default.
The storage: see `resolve_storage`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlcore.openwhisk import OpenWhiskClient
from mlcore.storage import StorageConfig

from .errors import ConfigError
from .folders import user_path

EMBEDDED = "local platform"
ENVIRONMENT = "environment"


@dataclass(frozen=True)
class S3Settings:
    """The S3 the commands and the deployed actions use, and where its settings came from."""

    config: StorageConfig
    source: str = ENVIRONMENT
    env: Mapping[str, str] = field(default_factory=dict)  # the settings as S3_*/AWS_* variables

    def manifest_env(self) -> dict[str, str]:
        """What manifests' `$VAR`s are read from: the user's environment, with the embedded S3's settings over it."""
        return {**os.environ, **self.env}


@dataclass(frozen=True)
class Target:
    apihost: str
    auth: str
    source: str
    local: bool = False
    insecure: bool = False
    storage: S3Settings = field(default_factory=lambda: resolve_storage(None))

    def client(self) -> OpenWhiskClient:
        return OpenWhiskClient(self.apihost, self.auth, insecure=self.insecure)


def resolve_storage(embedded_env: Mapping[str, str] | None, environ: Mapping[str, str] | None = None) -> S3Settings:
    """One rule for every command: the user's S3 when the environment names an endpoint, else the embedded S3.

    In order: the environment, when it sets S3_ENDPOINT_URL (taken whole: endpoint, keys,
    region); else the embedded S3 of the local platform (`embedded_env`, given only when the
    target is the local platform); else the environment as it is (AWS S3 through boto3's
    own credential chain). The bucket is S3_BUCKET wherever it is set, else the project's.
    There are no S3 flags: exporting the variables is the explicit choice.

    Why this order: what a user exports is what they asked for (as `deployer deploy` and the
    ML commands always did), yet AWS keys exported for other work must not be sent to the
    embedded endpoint (as `deployer train` and `fedavg --executor openwhisk` avoided by
    preferring the embedded S3): keys without an endpoint do not select an S3.
    """
    environ = os.environ if environ is None else environ
    if environ.get("S3_ENDPOINT_URL") or not embedded_env:
        return S3Settings(StorageConfig.from_env(environ))
    env = {**embedded_env, **({"S3_BUCKET": environ["S3_BUCKET"]} if environ.get("S3_BUCKET") else {})}
    return S3Settings(StorageConfig.from_env(env), EMBEDDED, env)


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
        path = user_path(env)
        if not path.is_file():
            raise ConfigError(f"WSK_CONFIG_FILE={env} does not exist")
        return path
    home = Path.home() / ".wskprops"
    return home if home.is_file() else None


def resolve(
    apihost: str | None = None, auth: str | None = None, *, start_local: bool = True, insecure: bool = False
) -> Target:
    """Raises ConfigError when settings are half given or nothing can be reached."""
    if apihost or auth:
        if not (apihost and auth):
            raise ConfigError("give both --apihost and --auth (or neither)")
        return Target(apihost, auth, "flags", insecure=insecure)
    env_host, env_auth = os.environ.get("OW_APIHOST"), os.environ.get("OW_AUTH")
    if env_host or env_auth:
        if not (env_host and env_auth):
            raise ConfigError("set both OW_APIHOST and OW_AUTH (or neither)")
        return Target(env_host, env_auth, ENVIRONMENT, insecure=insecure)
    path = _wskprops_path()
    if path is not None:
        props = read_wskprops(path)
        if not props.get("APIHOST") or not props.get("AUTH"):
            raise ConfigError(f"{path} lacks APIHOST or AUTH")
        return Target(
            props["APIHOST"],
            props["AUTH"],
            str(path),
            insecure=insecure or props.get("INSECURE_SSL", "").lower() == "true",
        )
    return local_target(start=start_local)


def local_target(start: bool = True) -> Target:
    from localwhisk import supervisor
    from localwhisk.settings import Settings

    from .folders import platform_state_dir

    info = supervisor.read_info(platform_state_dir())
    if info is None:
        if not start:
            raise ConfigError("no OpenWhisk configured and the local platform is not running; run `deployer up`")
        info, started = supervisor.up(Settings(platform_state_dir()), reuse_ports=True)
        if started:
            print(f"started the local platform on {info.apihost} (stop it with `deployer down`)", file=sys.stderr)
    return Target(info.apihost, info.auth, EMBEDDED, local=True, storage=resolve_storage(info.storage_env()))
