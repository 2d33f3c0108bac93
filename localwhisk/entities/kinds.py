"""The runtime kinds the local platform runs, resolved and detected as OpenWhisk does.

OpenWhisk stores the concrete kind a `:default` resolves to, and decides whether code is
a base64 archive from the code itself (`Exec.isBinaryCode`), ignoring the request's
`binary` flag: the official clients send a zip without the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from localwhisk.errors import BadRequest

# The images docker mode runs each kind in (built here by `deployer runtime build`; no registry).
PYTHON_IMAGE = "deployer/action-python-ml:0.1.0"
NODEJS_IMAGE = "deployer/action-nodejs:0.1.0"


@dataclass(frozen=True)
class Runtime:
    """One row of the runtime manifest, as OpenWhisk's runtimes.json has it (ExecManifest.RuntimeManifest)."""

    kind: str
    image: str
    default: bool = False
    deprecated: bool = False
    attached: bool = True
    require_main: bool = False

    @property
    def family(self) -> str:
        return self.kind.split(":", 1)[0]


# The one table: which kinds are accepted, what `<family>:default` resolves to, which image runs a kind
# in docker mode, and what `GET /` lists.
MANIFEST: tuple[Runtime, ...] = (
    Runtime("nodejs:18", NODEJS_IMAGE),
    Runtime("nodejs:20", NODEJS_IMAGE, default=True),
    Runtime("nodejs:22", NODEJS_IMAGE),
    Runtime("python:3", PYTHON_IMAGE, deprecated=True),
    Runtime("python:3.10", PYTHON_IMAGE),
    Runtime("python:3.11", PYTHON_IMAGE, default=True),
    Runtime("python:3.12", PYTHON_IMAGE),
    Runtime("python:3.13", PYTHON_IMAGE),
)
BY_KIND = {rt.kind: rt for rt in MANIFEST}
# family -> (kinds accepted, the kind `<family>:default` resolves to)
RUNTIMES = {
    fam: (
        {rt.kind for rt in MANIFEST if rt.family == fam},
        next(rt.kind for rt in MANIFEST if rt.family == fam and rt.default),
    )
    for fam in dict.fromkeys(rt.family for rt in MANIFEST)
}


def manifest_json() -> dict[str, list[dict]]:
    """The table as `GET /` lists it (ExecManifest.Runtimes.toJson): per family, every kind with its image."""
    return {
        fam: [
            {
                "kind": rt.kind,
                "image": rt.image,
                "deprecated": rt.deprecated,
                "default": rt.default,
                "attached": rt.attached,
                "requireMain": rt.require_main,
            }
            for rt in MANIFEST
            if rt.family == fam
        ]
        for fam in RUNTIMES
    }


_BASE64 = re.compile(r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$")


def family(kind: str) -> str | None:
    """'python', 'nodejs', or None for a kind no runtime here serves."""
    name = kind.split(":", 1)[0]
    if name in RUNTIMES and (kind == f"{name}:default" or kind in RUNTIMES[name][0]):
        return name
    return None


def resolve(kind: str) -> str:
    """The concrete kind, `:default` resolved. Raises BadRequest for an unknown kind."""
    runtime = family(kind) if isinstance(kind, str) else None
    if runtime is None:
        known = "', '".join(sorted(k for kinds, _ in RUNTIMES.values() for k in kinds))
        raise BadRequest(
            f"The specified runtime '{kind}' is not supported by this platform. Valid values are: '{known}'."
        )
    return RUNTIMES[runtime][1] if kind.endswith(":default") else kind


def is_binary_code(code: str) -> bool:
    """OpenWhisk's test: the trimmed code is non-empty, a multiple of 4 long, and pure base64."""
    text = code.strip()
    return bool(text) and len(text) % 4 == 0 and bool(_BASE64.match(text))


def annotation(kind: str) -> str:
    """The value of the `exec` annotation OpenWhisk puts on an action."""
    return family(kind) or kind


# Top-level modules an action may import only if it ships them, per runtime: the platform's Python
# has them all, OpenWhisk's images do not. The official python runtime has neither the ML stack nor
# this project; the project's image (runtimes/Dockerfile) adds torch & co. and mlcore/fedavg.
_PLATFORM_ONLY = ("deployer", "runtimes", "actions", "tests", "click", "yaml", "moto", "flask", "werkzeug")
_ML_STACK = ("torch", "torchvision", "numpy", "PIL", "boto3", "botocore", "s3transfer", "mlcore", "fedavg")
PROJECT_IMAGE = "deployer/action-python-ml"
# Images the platform stands in for with its own runtime: the official Python one and the project's.
LOCAL_IMAGES = ("openwhisk/action-python-v3.11", "openwhisk/python3action", PROJECT_IMAGE)


def is_local_image(image: str) -> bool:
    """True for those images under any registry and tag (REGISTRY/deployer/action-python-ml:0.2 too)."""
    repo = _repo(image)
    return any(repo == img or repo.endswith("/" + img) for img in LOCAL_IMAGES)


def _repo(image: str) -> str:
    """The image without its tag (a registry's port is not a tag)."""
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def image(exec_: dict) -> str:
    """The image docker mode runs an action in: its kind's row of MANIFEST, as OpenWhisk's runtime manifest
    picks it, or a blackbox's own image (the project's Python image for the images it stands in for)."""
    if exec_["kind"] == "blackbox":
        return PYTHON_IMAGE if is_local_image(exec_["image"]) else exec_["image"]
    return BY_KIND[resolve(exec_["kind"])].image


# What the ML image's launchers import before /init (as its stem cells wait), so a cold start of an
# inference action pays for its own code only: the ML stack and the project's storage/inference code.
ML_PRELOAD = "mlcore.preload"


def preload(runtime: str, deny: str) -> str:
    """ACTION_PRELOAD_MODULES for a container: the ML stack where the runtime has it, else nothing."""
    return ML_PRELOAD if runtime == "python" and "torch" not in deny.split(",") else ""


def container_profile(exec_: dict) -> tuple[str, str]:
    """(runtime family, modules denied) for the process that stands in for the action's container."""
    if exec_["kind"] == "blackbox":
        repo = _repo(str(exec_.get("image", "")))
        project_image = repo == PROJECT_IMAGE or repo.endswith("/" + PROJECT_IMAGE)
        return "python", ",".join(_PLATFORM_ONLY if project_image else _PLATFORM_ONLY + _ML_STACK)
    runtime = family(exec_["kind"]) or "python"
    return runtime, ",".join(_PLATFORM_ONLY + _ML_STACK) if runtime == "python" else ""
