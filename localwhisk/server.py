"""The local platform process: controller + invoker, and the embedded S3 process it owns.

`deployer up` runs this module in the background; tests run it as a subprocess. It writes
`platform.json` (where to reach it) once everything listens, and on SIGTERM stops the
HTTP server, kills every container, closes open activation records and stops S3. The
S3 server runs in its own process (so object traffic never competes with the controller
for this interpreter) and dies with this one; it writes objects through, so there is
nothing to flush. State is private: the folder is 0700, every file in it 0600.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import threading
import time
import uuid
from http import HTTPStatus
from pathlib import Path

from localwhisk.controller.app import create_app
from localwhisk.controller.common import error_body
from localwhisk.core import Platform
from localwhisk.errors import PlatformError
from localwhisk.invoker.container import ContainerError
from localwhisk.invoker.factory import DockerFactory, process_factory
from localwhisk.invoker.pool import Invoker
from localwhisk.invoker.prewarm import parse as parse_prewarm
from localwhisk.s3 import EmbeddedS3
from localwhisk.settings import Settings
from localwhisk.statelock import LOCK_FILE, StateLock
from localwhisk.store import Store
from procs import watch_owner

NAMESPACE = "guest"
INFO_FILE = "platform.json"
LOG_FILE = "platform.log"
S3_CREDENTIALS_FILE = "s3-credentials.json"
OBJECTS_DIR = "objects"
CONTAINERS_DIR = "containers"  # one folder per live container: its TMPDIR and unpacked code
STOP_FILE = "last-stop.json"
PRIVATE_FILES = (
    "platform.db",
    "platform.db-wal",
    "platform.db-shm",
    LOG_FILE,
    "auth.json",
    "wskprops",
    INFO_FILE,
    S3_CREDENTIALS_FILE,
    STOP_FILE,
    LOCK_FILE,
)


def make_private(state_dir: Path) -> None:
    """0700 for the folder, 0600 for what it holds: code, bound S3 keys, results and logs live here."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    for name in PRIVATE_FILES:
        try:
            (state_dir / name).chmod(0o600)
        except FileNotFoundError:
            pass
    fd = os.open(state_dir / "platform.db", os.O_WRONLY | os.O_CREAT, 0o600)  # WAL and shm inherit its mode
    os.close(fd)


def load_or_create_auth(state_dir: Path) -> str:
    """The namespace's 'uuid:key', generated once per state directory."""
    path = state_dir / "auth.json"
    if path.exists():
        return json.loads(path.read_text())[NAMESPACE]
    key = f"{uuid.uuid4()}:{secrets.token_urlsafe(48)}"
    path.write_text(json.dumps({NAMESPACE: key}))
    path.chmod(0o600)
    return key


class StopReport:
    """How the last stop went, where `deployer down` reads it, even when the disk has filled meanwhile.

    The file is written at full size at start, so the outcome overwrites blocks already held.
    """

    SIZE = 4096

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._write({"state": "running", "pid": os.getpid()})

    def _write(self, doc: dict) -> None:
        data = json.dumps(doc).encode()[: self.SIZE].ljust(self.SIZE)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def stopped(self, problems: list[str]) -> None:
        try:
            self._write({"state": "stopped", "pid": os.getpid(), "problems": problems})
        finally:
            os.close(self._fd)


def read_stop_report(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STOP_FILE).read_bytes().strip() or b"null")
    except (OSError, ValueError):
        return None


def reap_container_folders(state_dir: Path) -> Path:
    """Empties `containers/` (what a killed platform's containers left) and returns it."""
    root = state_dir / CONTAINERS_DIR
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def serve(settings: Settings) -> None:
    """The platform until SIGTERM, SIGINT or its owner's end: the embedded S3, the invoker and the controller."""
    state_dir, host = settings.state_dir, settings.host
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log = logging.getLogger("platform")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # before anything in the folder is read or written, and held until this process ends, however it ends
    lock = StateLock.acquire(state_dir, {"pid": os.getpid(), "port": settings.port, "s3_port": settings.s3_port})
    make_private(state_dir)
    auth = load_or_create_auth(state_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.owner_pid:
        _stop_with(settings.owner_pid, stop, log)
    report = StopReport(state_dir / STOP_FILE)
    problems: list[str] = []
    s3 = EmbeddedS3(
        host, settings.s3_port, root=state_dir / OBJECTS_DIR, credentials_file=state_dir / S3_CREDENTIALS_FILE
    )
    docker = None
    try:
        s3.start()
        if settings.containers == "docker":
            docker = _docker_factory(state_dir)
            docker.relay(s3.port)
        invoker = Invoker(
            settings.max_containers,
            settings.idle_timeout_s,
            work_root=reap_container_folders(state_dir),
            max_unpacked_bytes=settings.max_unpacked_mb * 1024 * 1024,
            stem_cells=parse_prewarm(settings.prewarm),
            container_factory=docker or process_factory,
        )
        _serve_api(settings, lock, auth, s3, stop, problems, invoker, docker)
    finally:
        if docker is not None:
            try:
                docker.close()
            except ContainerError as exc:
                problems.append(f"removing the platform's docker network failed: {exc}")
        code = s3.stop()
        if code not in (0, None):
            problems.append(
                f"the embedded S3 (pid {s3.pid}) had died (exit status {code}); acknowledged objects are on disk"
            )
        for problem in problems:
            log.error("stop: %s", problem)
        report.stopped(problems)


def _stop_with(owner_pid: int, stop: threading.Event, log: logging.Logger) -> None:
    """Stops the platform when the process that owns it ends, even by SIGKILL.

    A bench or test killed outright never calls stop(); its platform would serve on,
    holding ports, containers and S3. A pidfd watch, not PR_SET_PDEATHSIG: the owner may
    have started this from a thread that ends before it does, and a stop closes the records.
    """

    def ended() -> None:
        log.warning("owner %s ended without stopping the platform; stopping", owner_pid)
        stop.set()

    if not watch_owner(owner_pid, ended):
        log.warning("owner %s is gone before the platform started; stopping", owner_pid)
        stop.set()


def _docker_factory(state_dir: Path) -> DockerFactory:
    try:
        return DockerFactory(state_dir)
    except ContainerError as exc:
        raise PlatformError(
            f"docker mode cannot start: {exc} (scripts/start-dockerd.sh starts the engine; "
            f"`deployer runtime build` makes the images; --containers process needs neither)"
        ) from exc


def _serve_api(
    settings: Settings,
    lock: StateLock,
    auth: str,
    s3: EmbeddedS3,
    stop: threading.Event,
    problems: list[str],
    invoker: Invoker,
    docker: DockerFactory | None = None,
) -> None:
    """The controller until `stop` is set; what went wrong while stopping goes to `problems`."""
    log = logging.getLogger("platform")
    state_dir, host = settings.state_dir, settings.host
    info_path = state_dir / INFO_FILE
    store = Store(state_dir / "platform.db")
    platform = Platform(
        store,
        invoker,
        blocking_timeout_s=settings.blocking_timeout_s,
        concurrent_invocations=settings.concurrent_invocations,
        any_image=docker is not None,
    )
    server = None
    try:
        if platform.interrupted_on_start:
            log.warning("closed %d activation(s) left in flight by the previous run", platform.interrupted_on_start)
        server = _ApiServer(host, settings.port, create_app(platform, {NAMESPACE: auth}))
        apihost = f"http://{host}:{server.port}"
        platform.api_host = apihost
        if docker is not None:
            docker.relay(server.port)
        invoker.prewarm({"__OW_API_HOST": apihost})
        threading.Thread(target=server.serve_forever, daemon=True).start()
        info = {
            "pid": os.getpid(),
            "apihost": apihost,
            "auth": auth,
            "namespace": NAMESPACE,
            "containers": settings.containers,
            "s3_endpoint": s3.endpoint_url,
            "s3_access_key": s3.access_key,
            "s3_secret_key": s3.secret_key,
            "s3_pid": s3.pid,
            "started": time.time(),
        }
        lock.record({"pid": os.getpid(), "port": server.port, "s3_port": s3.port, "started": info["started"]})
        tmp = info_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as f:
            f.write(json.dumps(info))
        tmp.replace(info_path)
        log.info("OpenWhisk API on %s, S3 on %s, state in %s", apihost, s3.endpoint_url, state_dir)
        while not stop.wait(1.0):
            pass  # a bounded wait: the main thread runs a SIGTERM handler even when another thread took the signal
        log.info("stopping")
    finally:
        info_path.unlink(missing_ok=True)
        if server is not None:
            server.shutdown()
        platform.shutdown()
        try:
            store.close()
        except sqlite3.Error as exc:
            problems.append(f"closing {store.path} failed: {exc}; committed records stay in its WAL")


def _openwhisk_refusal(status: int, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """What the HTTP server refuses itself (too many connections, a malformed or stalled request) in the body
    every other refusal of the controller has: OpenWhisk's ErrorResponse JSON."""
    return f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json")], error_body(message)


class _ApiServer:
    """The controller's HTTP server: HTTP/1.1 keep-alive, a thread per connection, httptools parsing
    (`runtimes.wsgiserver`)."""

    MAX_CONNECTIONS = 512  # blocking invokes hold their connection for up to the blocking timeout

    def __init__(self, host: str, port: int, app) -> None:
        from runtimes.wsgiserver import WSGIServer

        try:
            self._server = WSGIServer(
                host,
                port,
                app,
                max_connections=self.MAX_CONNECTIONS,
                idle_timeout_s=75,
                max_body_bytes=2 * app.config["MAX_CONTENT_LENGTH"],  # Flask answers 413 below this
                refuse=_openwhisk_refusal,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PlatformError(
                    f"port {port} on {host} is taken; stop what listens there or pick another with --port"
                ) from exc
            raise
        self.port = self._server.port

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown(timeout_s=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settings", required=True, help="localwhisk.settings.Settings as JSON")
    opts = parser.parse_args(argv)
    try:
        settings = Settings.from_json(opts.settings)
    except PlatformError as exc:
        parser.error(exc.message)
    try:
        serve(settings)
    except PlatformError as exc:
        print(f"platform cannot start: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as exc:
        where = exc.filename or settings.state_dir
        print(f"platform cannot start: {where}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
