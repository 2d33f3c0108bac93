"""The action runtime images, built locally: `deployer runtime build`.

Docker mode runs each kind in the image `localwhisk/entities/kinds.py` names for it: Python kinds in
`runtimes/Dockerfile` (the ML stack), Node.js kinds in `runtimes/nodejs/Dockerfile` (Debian's nodejs
and the project's dependency-free Node.js proxy, `runtimes/nodejs/launcher.js`).

The Python Dockerfile serves two bases:

- a real cluster: `BASE_IMAGE=openwhisk/action-python-v3.11:...` (its entrypoint, the official Go
  proxy at /bin/proxy, stays the entrypoint) and CPU torch from PyTorch's index;
- a machine without an image registry (this one): a Debian base made here with `debootstrap` and
  `docker import`, the wheels downloaded on the host by pip (`pip download`) and served to the build
  by `python -m http.server` on 127.0.0.1 (`docker build --network host`); the image then runs the
  project's own proxy (`runtimes/proxy.py`) on port 8080.

The Node.js image needs no wheels: its base, made the same way, already holds nodejs.

Everything made here is cached: the base images (by a hash of how each is made), the wheelhouse (by a
hash of the requirements) and Docker's layer cache, so a second build with nothing changed takes
seconds. Everything carries the label `org.deployer=1`, so leftovers are found with
`docker images --filter label=org.deployer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localwhisk.entities.kinds import NODEJS_IMAGE
from localwhisk.invoker.docker_cli import (
    RUNTIME_IMAGE,
    DockerUnavailable,
    RuntimeBuildError,
    check_docker,
    docker,
    docker_binary,
    image_id,
)
from procs import Child, NotReady, PortAccepts

from . import folders

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = PROJECT_ROOT / "runtimes" / "Dockerfile"
NODEJS_DOCKERFILE = PROJECT_ROOT / "runtimes" / "nodejs" / "Dockerfile"
REQUIREMENTS = PROJECT_ROOT / "runtimes" / "requirements.txt"
DEFAULT_TAG = RUNTIME_IMAGE
NODEJS_TAG = NODEJS_IMAGE
RUNTIMES = ("python", "nodejs")  # what `deployer runtime build` builds, in this order
BASE_REPO = "deployer/base-bookworm"
OFFICIAL_BASE = "openwhisk/action-python-v3.11:nightly"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
LABEL = "org.deployer"  # images carry LABEL=1; containers and networks carry docker_container.LABEL
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
NODEJS_BASE_PACKAGES = ("nodejs", "ca-certificates")  # Debian bookworm's nodejs: 18.x
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# what the version probe imports inside the image (module -> distribution shown in the report)
PROBED = {
    "torch": "torch",
    "torchvision": "torchvision",
    "boto3": "boto3",
    "numpy": "numpy",
    "PIL": "pillow",
    "httptools": "httptools",
}


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref, timeout=30).stdout.strip())


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def cache_dir() -> Path:
    env = os.environ.get("DEPLOYER_CACHE")
    return Path(env) if env else folders.cache_dir()


# ---------------------------------------------------------------- the base image (debootstrap)


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses for SUITE (one-line or deb822 sources), else deb.debian.org."""
    files = [
        apt_dir / "sources.list",
        *sorted((apt_dir / "sources.list.d").glob("*.list")),
        *sorted((apt_dir / "sources.list.d").glob("*.sources")),
    ]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
                suites = fields.get("Suites", "").split()
                if SUITE in suites and "deb" in fields.get("Types", "").split():
                    for uri in fields.get("URIs", "").split():
                        if "security" not in uri:
                            return uri.rstrip("/")
        else:
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                words = [w for w in words if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE and "security" not in words[1]:
                    return words[1].rstrip("/")
    return DEFAULT_MIRROR


def base_image_tag(packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """Names the base by how it is made (suite, variant, packages), not by the mirror that served it."""
    recipe = json.dumps({"suite": SUITE, "variant": "minbase", "include": packages})
    return f"{BASE_REPO}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def ensure_base_image(
    progress: Callable[[str], None] = lambda _m: None, packages: tuple[str, ...] = BASE_PACKAGES
) -> tuple[str, bool]:
    """(tag, reused): a local Debian base with `packages`, made with debootstrap + docker import when absent."""
    tag = base_image_tag(packages)
    if image_id(tag):
        return tag, True
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None
    )
    if debootstrap is None:
        raise DockerUnavailable(
            "debootstrap is not installed (the local base image needs it): run `./run setup` as root"
        )
    if os.geteuid() != 0:
        raise DockerUnavailable("making the local base image needs root (debootstrap)")
    mirror = debian_mirror()
    progress(f"making the base image {tag} with debootstrap from {mirror} (about a minute)")
    root = Path(tempfile.mkdtemp(prefix="deployer-base-", dir=os.environ.get("DEPLOYER_BUILD_TMP")))
    try:
        done = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(root), mirror],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeBuildError(f"debootstrap failed: {(done.stdout + done.stderr).strip()[-800:]}")
        # apt's lists and caches are not needed in an image
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(
                [
                    docker_binary(),
                    "import",
                    "--change",
                    f"LABEL {LABEL}=1",
                    "--change",
                    f"LABEL {LABEL}.kind=base",
                    "--change",
                    'CMD ["/bin/bash"]',
                    "-",
                    tag,
                ],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeBuildError(f"docker import of the base failed: {imported.stderr.strip()[-800:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tag, False


# ---------------------------------------------------------------- the wheelhouse


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    spec = "\n".join(line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    key = f"{spec.strip()}\npython{sys.version_info.major}.{sys.version_info.minor}\n{os.uname().machine}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def ensure_wheelhouse(
    requirements: Path = REQUIREMENTS, progress: Callable[[str], None] = lambda _m: None
) -> tuple[Path, bool]:
    """(folder, reused): every wheel the requirements need, downloaded once by the host's pip."""
    folder = cache_dir() / "wheelhouse" / requirements_hash(requirements)
    if (folder / ".complete").is_file():
        return folder, True
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _seed_from_earlier(folder.parent, partial)
    progress(f"downloading wheels into {folder} (pip download; first time: minutes, ~5 GB)")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-r", str(requirements), "-d", str(partial)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeBuildError(f"pip download failed: {(done.stdout + done.stderr).strip()[-800:]}")
    (partial / ".complete").write_text(requirements.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder, False


def _seed_from_earlier(root: Path, partial: Path) -> None:
    """Hard links to the newest complete wheelhouse's wheels: pip download keeps the files it finds, so a
    changed pin costs that wheel's download, not the whole ~5 GB again."""
    newest = max(
        (p for p in root.iterdir() if (p / ".complete").is_file()), key=lambda p: p.stat().st_mtime, default=None
    )
    for wheel in newest.glob("*.whl") if newest else ():
        try:
            os.link(wheel, partial / wheel.name)
        except OSError:
            shutil.copy2(wheel, partial / wheel.name)


def _free_port(preferred: int) -> int:
    """The preferred port when free (it is part of the build's cache key), else any free one."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeBuildError("no free port on 127.0.0.1 for the wheelhouse server")


@contextlib.contextmanager
def serve_folder(folder: Path, preferred_port: int) -> Iterator[str]:
    """`python -m http.server` on 127.0.0.1 serving folder; yields its URL once it accepts, stopped on exit.

    Waited for: a build step that cannot reach it fails late and obscurely.
    """
    port = _free_port(preferred_port)
    log = tempfile.TemporaryFile()  # a line per request: a pipe nobody reads would fill and stall the build
    server = Child(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        name="the wheelhouse server",
        ready=PortAccepts("127.0.0.1", port),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        try:
            server.start(timeout_s=30)
        except NotReady as exc:
            log.seek(0)
            err = log.read().decode(errors="replace")
            raise RuntimeBuildError(
                f"the wheelhouse server did not start on 127.0.0.1:{port} ({exc}): {err[-400:]}"
            ) from exc
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.stop()
        log.close()


# ---------------------------------------------------------------- the build


@dataclass
class BuildReport:
    tag: str
    image_id: str
    size_bytes: int
    size_human: str
    versions: dict
    build_seconds: float
    cached: bool
    base_image: str
    base_reused: bool
    wheelhouse: str | None
    wheelhouse_reused: bool | None
    layers_cached: bool
    docker_server: str
    steps_seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def probe_versions(tag: str, runtime: str = "python") -> dict:
    """The interpreters' and libraries' versions, read by running the image once (no network); kept per image id."""
    ident = image_id(tag) or tag
    memo = cache_dir() / "probes" / f"{ident.replace(':', '-').replace('/', '_')}.json"
    if memo.is_file():
        return json.loads(memo.read_text())
    versions = _probe(tag, *_PROBES[runtime])
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps(versions))
    return versions


_PYTHON_PROBE = (
    "import json, platform, importlib.metadata as m\n"
    f"mods = {PROBED!r}\n"
    "out = {'python': platform.python_version()}\n"
    "for mod, dist in mods.items():\n"
    "    __import__(mod)\n"
    "    out[dist] = m.version(dist)\n"
    "print(json.dumps(out))\n"
)
_NODEJS_PROBE = "console.log(JSON.stringify({ node: process.versions.node }))"
# runtime -> (the program the probe runs as entrypoint, its arguments)
_PROBES = {"python": ("python3", ["-c", _PYTHON_PROBE]), "nodejs": ("node", ["-e", _NODEJS_PROBE])}


def _probe(tag: str, program: str, args: list[str]) -> dict:
    done = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--cpu-shares",
        "64",
        "--label",
        f"{LABEL}=1",
        "--entrypoint",
        program,
        tag,
        *args,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeBuildError(f"the built image {tag} cannot import its libraries: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _docker_build(tag: str, dockerfile: Path, runtime: str, build_args: dict[str, str], cpu_shares: int) -> None:
    """Runs `docker build` of `dockerfile` (the repository root as its context) with those build arguments.

    Raises:
        RuntimeBuildError: docker build failed (the message ends with its output).
    """
    args = [
        "build",
        "--network",
        "host",
        "--force-rm",
        "--cpu-shares",
        str(cpu_shares),
        "-f",
        str(dockerfile),
        "-t",
        tag,
        "--label",
        f"{LABEL}=1",
        "--label",
        f"{LABEL}.kind=runtime",
        "--label",
        f"{LABEL}.runtime={runtime}",
    ]
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # the classic builder: what Debian's docker.io has
    done = subprocess.run([docker_binary(), *args, str(PROJECT_ROOT)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeBuildError(f"docker build failed: {(done.stdout + done.stderr).strip()[-1500:]}")


def _finish(tag: str, runtime: str, before: str | None, t0: float, steps: dict, **facts) -> BuildReport:
    """The report of a build that just ran: what changed, what the image holds, what it took."""
    after = image_id(tag)
    layers_cached = before is not None and before == after
    if before is not None and before != after:  # the old image lost its tag: do not leave its layers behind
        docker("rmi", before, check=False)
    t = time.monotonic()
    versions = probe_versions(tag, runtime)
    steps["probe"] = round(time.monotonic() - t, 3)
    size = image_size(tag)
    return BuildReport(
        tag=tag,
        image_id=after,
        size_bytes=size,
        size_human=human_bytes(size),
        versions=versions,
        build_seconds=round(time.monotonic() - t0, 3),
        cached=bool(layers_cached and facts["base_reused"] and facts["wheelhouse_reused"] is not False),
        layers_cached=layers_cached,
        steps_seconds=steps,
        **facts,
    )


def build_runtime_image(
    tag: str = DEFAULT_TAG,
    base_image: str | None = None,
    wheelhouse: bool | None = None,
    torch_index_url: str = TORCH_CPU_INDEX,
    cpu_shares: int = 64,
    progress: Callable[[str], None] = lambda _m: None,
) -> BuildReport:
    """Builds (or finds cached) the Python runtime image and reports what it holds.

    base_image None: the local debootstrap base, wheels from a host wheelhouse. A base image such as
    OFFICIAL_BASE: built on it; its packages come from PyPI + torch_index_url unless wheelhouse=True.
    """
    t0 = time.monotonic()
    steps: dict[str, float] = {}
    server = check_docker()
    before = image_id(tag)
    t = time.monotonic()
    if base_image is None:
        base, base_reused = ensure_base_image(progress)
        wheelhouse = True if wheelhouse is None else wheelhouse
    else:
        base, base_reused = base_image, image_id(base_image) is not None
    steps["base"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    house, house_reused = ensure_wheelhouse(progress=progress) if wheelhouse else (None, None)
    steps["wheelhouse"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    progress(f"docker build {tag} from {base}")
    build_args = {"BASE_IMAGE": base, "TORCH_INDEX_URL": torch_index_url}
    with contextlib.ExitStack() as stack:
        if house is not None:
            # the URL is part of the pip step's cache key: a port fixed by the wheelhouse keeps it stable
            build_args["WHEELHOUSE_URL"] = stack.enter_context(
                serve_folder(house, 20000 + int(house.name[:8], 16) % 20000)
            )
        _docker_build(tag, DOCKERFILE, "python", build_args, cpu_shares)
    steps["docker_build"] = round(time.monotonic() - t, 3)
    return _finish(
        tag,
        "python",
        before,
        t0,
        steps,
        base_image=base,
        base_reused=base_reused,
        wheelhouse=str(house) if house else None,
        wheelhouse_reused=house_reused,
        docker_server=server,
    )


def build_nodejs_image(
    tag: str = NODEJS_TAG, cpu_shares: int = 64, progress: Callable[[str], None] = lambda _m: None
) -> BuildReport:
    """Builds (or finds cached) the Node.js runtime image: a debootstrap base with Debian's nodejs, and the
    project's Node.js proxy on port 8080."""
    t0 = time.monotonic()
    steps: dict[str, float] = {}
    server = check_docker()
    before = image_id(tag)
    t = time.monotonic()
    base, base_reused = ensure_base_image(progress, NODEJS_BASE_PACKAGES)
    steps["base"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    progress(f"docker build {tag} from {base}")
    _docker_build(tag, NODEJS_DOCKERFILE, "nodejs", {"BASE_IMAGE": base}, cpu_shares)
    steps["docker_build"] = round(time.monotonic() - t, 3)
    return _finish(
        tag,
        "nodejs",
        before,
        t0,
        steps,
        base_image=base,
        base_reused=base_reused,
        wheelhouse=None,
        wheelhouse_reused=None,
        docker_server=server,
    )


def build_runtime_images(
    runtimes: tuple[str, ...] = RUNTIMES,
    tag: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    **python_options,
) -> dict[str, BuildReport]:
    """Each runtime's image, built or found cached: {runtime: report}, in the order asked.

    tag names the image of a single runtime (default: each runtime's own); python_options (base_image,
    wheelhouse, torch_index_url) go to the Python image's build.

    Raises:
        ValueError: a runtime that has no image here, or a tag for several images.
    """
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"no runtime image for {', '.join(unknown)}; known: {', '.join(RUNTIMES)}")
    if tag is not None and len(runtimes) != 1:
        raise ValueError(f"one tag for {len(runtimes)} images ({', '.join(runtimes)})")
    reports = {}
    for runtime in runtimes:
        if runtime == "python":
            reports[runtime] = build_runtime_image(tag=tag or DEFAULT_TAG, progress=progress, **python_options)
        else:
            reports[runtime] = build_nodejs_image(tag=tag or NODEJS_TAG, progress=progress)
    return reports
