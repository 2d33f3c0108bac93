"""Starting, finding and stopping the local platform process.

`LocalPlatform` owns a platform for the length of a `with` block (tests, benchmarks);
`up`/`down`/`status` manage the background one that `deployer up` leaves running.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from localwhisk import statelock
from localwhisk.errors import LocalWhiskError
from localwhisk.server import INFO_FILE, LOG_FILE, read_stop_report
from localwhisk.settings import DEFAULT_PORT, DEFAULT_S3_PORT, Settings
from procs import Child, NotReady, ReadyWhen, descendants, gone, wait_gone, wait_ready


class SupervisorError(LocalWhiskError):
    """The platform could not be started or stopped; the message says what to check."""


@dataclass(frozen=True)
class PlatformInfo:
    pid: int
    apihost: str
    auth: str
    namespace: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    state_dir: Path
    s3_pid: int | None = None

    @property
    def wskprops_path(self) -> Path:
        return self.state_dir / "wskprops"

    def storage_env(self, bucket: str | None = None) -> dict[str, str]:
        from mlcore.storage import DEFAULT_BUCKET

        return {
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "S3_BUCKET": bucket or DEFAULT_BUCKET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def storage_config(self, bucket: str | None = None):
        from mlcore.storage import StorageConfig

        return StorageConfig.from_env(self.storage_env(bucket))

    def client(self):
        from mlcore.openwhisk import OpenWhiskClient

        return OpenWhiskClient(self.apihost, self.auth)


def read_info(state_dir: Path) -> PlatformInfo | None:
    """The running platform of this state dir, or None (a stale file is ignored)."""
    path = state_dir / INFO_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if gone(raw["pid"]):
        return None
    try:
        requests.get(raw["apihost"] + "/api/v1", timeout=5).raise_for_status()
    except requests.RequestException:
        return None
    return PlatformInfo(
        raw["pid"],
        raw["apihost"],
        raw["auth"],
        raw["namespace"],
        raw["s3_endpoint"],
        raw["s3_access_key"],
        raw["s3_secret_key"],
        state_dir,
        raw.get("s3_pid"),
    )


def problems(state_dir: Path) -> list[str]:
    """What is wrong with the folder's platform, one sentence each: every process `status` reports is checked.

    Empty when it runs whole, or when none was started (no `platform.json`).
    """
    try:
        raw = json.loads((state_dir / INFO_FILE).read_text())
        pid, apihost, s3_pid, s3_endpoint = raw["pid"], raw["apihost"], raw.get("s3_pid"), raw["s3_endpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    found = []
    if gone(pid):
        found.append(
            f"the local platform (pid {pid}) is not running, yet it never stopped (it left {state_dir / INFO_FILE}): "
            f"it was killed or crashed, see {state_dir / LOG_FILE}; `deployer up` starts it again"
        )
    elif not _answers(apihost + "/api/v1"):
        found.append(
            f"the local platform (pid {pid}) runs but does not answer on {apihost}; see {state_dir / LOG_FILE}"
        )
    if s3_pid and gone(s3_pid):
        found.append(
            f"the embedded S3 (pid {s3_pid}) is not running, so actions and jobs cannot reach {s3_endpoint}; "
            f"`deployer down` then `deployer up` starts it again (objects are on disk)"
        )
    elif s3_pid and not _accepts(s3_endpoint):
        found.append(f"the embedded S3 (pid {s3_pid}) does not accept connections on {s3_endpoint}")
    return found


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=5).raise_for_status()
    except requests.RequestException:
        return False
    return True


def _accepts(endpoint: str) -> bool:
    host, _, port = endpoint.removeprefix("http://").partition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError):
        return False
    return True


def write_wskprops(info: PlatformInfo) -> Path:
    info.wskprops_path.write_text(f"APIHOST={info.apihost}\nAUTH={info.auth}\nNAMESPACE={info.namespace}\n")
    info.wskprops_path.chmod(0o600)
    return info.wskprops_path


def check_state_dir(state_dir: Path, probe_bytes: int = 256 << 10) -> None:
    """Fails in one line when the state folder cannot be created, is read-only or full.

    A probe file is written and fsync'd, since a full disk still lets one create empty files.
    """
    probe = state_dir / ".write-probe"
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * probe_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        what = {
            errno.EROFS: "is on a read-only file system",
            errno.ENOSPC: "is full (no space left on device)",
            errno.EDQUOT: "is over its disk quota",
            errno.EACCES: "is not writable (permission denied)",
            errno.EPERM: "is not writable (operation not permitted)",
        }.get(exc.errno, f"is unusable: {exc.strerror}")
        raise SupervisorError(
            f"the platform's state folder {state_dir} {what}; set DEPLOYER_HOME to another folder or free it"
        ) from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def check_port_free(host: str, port: int, flag: str) -> None:
    """A taken port fails at once, naming it, instead of after the readiness timeout."""
    if not port:
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SupervisorError(
                    f"port {port} on {host} is taken; stop what listens there or choose another with {flag}"
                ) from None
            raise


def stable_free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, or 0 when none is found.

    A platform that restarts must get its ports back (actions and jobs hold its URLs). The kernel
    hands out ephemeral ports to every outgoing connection on the machine, so one of those can
    sit on an ephemeral port in the moment between a crash and the restart; below the range only
    an explicit bind can.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low <= 20001:
        return 0
    for port in random.sample(range(20000, low), k=min(200, low - 20000)):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return 0


def check_not_held(state_dir: Path) -> None:
    """A folder another platform holds fails at once, naming it (its server would refuse to start anyway)."""
    who = statelock.holder(state_dir)
    if who is not None:
        raise SupervisorError(statelock.in_use_message(state_dir, who))


def _spawn(settings: Settings, detach: bool) -> tuple[Child, int]:
    """The server process, started (not yet ready), and where its log was when it started."""
    state_dir = settings.state_dir
    check_state_dir(state_dir)
    check_not_held(state_dir)
    check_port_free(settings.host, settings.port, "--port")
    check_port_free(settings.host, settings.s3_port, "--s3-port")
    fd = os.open(state_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    log_start = os.fstat(fd).st_size
    log = open(fd, "ab")
    cmd = [sys.executable, "-m", "localwhisk.server", "--settings", settings.to_json()]
    child = Child(
        cmd, name="the local platform", stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=detach
    )
    try:
        child.spawn()
    finally:
        log.close()
    return child, log_start


def _start_failure(state_dir: Path, log_start: int) -> str | None:
    """Why the server said it cannot start, from what was logged since it was spawned (another platform of the
    folder may be writing the same log meanwhile)."""
    try:
        with open(state_dir / LOG_FILE, "rb") as fh:
            fh.seek(log_start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    said = [line for line in text.splitlines() if line.startswith("platform cannot start: ")]
    return said[-1].removeprefix("platform cannot start: ") if said else None


def _wait_ready(proc: subprocess.Popen, state_dir: Path, timeout_s: float, log_start: int = 0) -> PlatformInfo:
    """The platform's info once it serves (its platform.json, answered over HTTP); it is killed if it does not.

    Raises:
        SupervisorError: it exited first (saying why, from its log) or did not answer within timeout_s.
    """

    def started() -> PlatformInfo | None:
        info = read_info(state_dir)
        return info if info is not None and info.pid == proc.pid else None

    try:
        return wait_ready(proc, ReadyWhen(started), timeout_s, "the local platform")
    except NotReady as exc:
        if exc.returncode is None:
            proc.kill()
            proc.wait(timeout=10)
            raise SupervisorError(
                f"the local platform did not answer within {timeout_s:.0f} s; log:\n{_log_tail(state_dir)}"
            ) from None
        reason = _start_failure(state_dir, log_start)
        if reason is not None:
            raise SupervisorError(reason) from None
        tail = _log_tail(state_dir)
        raise SupervisorError(f"the local platform exited with status {exc.returncode}; log:\n{tail}") from None


def _log_tail(state_dir: Path, lines: int = 15) -> str:
    try:
        return "\n".join((state_dir / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def last_ports(state_dir: Path) -> tuple[int, int]:
    """The API and S3 ports the folder's platform last listened on where both are free now, else the defaults.

    Actions, jobs and wskprops keep the URLs of the platform that served them, so a start on demand takes
    them again; a port taken meanwhile gives way to the defaults, never to a clash.
    """
    doc = statelock.recorded(state_dir)
    ports = doc.get("port"), doc.get("s3_port")
    if all(isinstance(p, int) and 0 < p < 65536 for p in ports) and all(_port_free("127.0.0.1", p) for p in ports):
        return ports
    return DEFAULT_PORT, DEFAULT_S3_PORT


def _port_free(host: str, port: int) -> bool:
    try:
        check_port_free(host, port, "")
    except (SupervisorError, OSError):
        return False
    return True


def up(settings: Settings, timeout_s: float = 60.0, reuse_ports: bool = False) -> tuple[PlatformInfo, bool]:
    """Starts the background platform unless one runs; returns (info, started_now).

    `reuse_ports`: take the ports the folder last used, when free (`last_ports`), over the settings' ones.

    Raises:
        SupervisorError: the platform could not start; another one holding the folder is named.
    """
    info = read_info(settings.state_dir)
    if info is not None:
        return info, False
    if reuse_ports:
        port, s3_port = last_ports(settings.state_dir)
        settings = settings.but(port=port, s3_port=s3_port)
    child, log_start = _spawn(settings, detach=True)
    info = _wait_ready(child.popen, settings.state_dir, timeout_s, log_start)
    write_wskprops(info)
    return info, True


def down(state_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stops the background platform; returns False when none was running.

    Raises SupervisorError when it did not stop by itself and had to be killed.
    """
    info = read_info(state_dir)
    if info is None:
        return False
    clean = _terminate(info.pid, timeout_s)
    if info.s3_pid:
        _wait_gone(info.s3_pid, 10.0)
    if not clean:
        raise SupervisorError(
            f"the local platform (pid {info.pid}) did not stop within {timeout_s:.0f} s and was "
            f"killed; objects are on disk, see {state_dir / LOG_FILE}"
        )
    report = read_stop_report(state_dir) or {}
    if report.get("pid") == info.pid and report.get("state") != "stopped":
        raise SupervisorError(
            f"the local platform (pid {info.pid}) exited without finishing its stop; see {state_dir / LOG_FILE}"
        )
    if report.get("pid") == info.pid and report.get("problems"):
        raise SupervisorError("the local platform stopped, but: " + "; ".join(report["problems"]))
    return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    left = wait_gone([pid], timeout_s)
    try:
        os.waitpid(pid, os.WNOHANG)  # a platform `up` started from this process is its child: collected here
    except ChildProcessError:
        pass
    return not left


def _terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM, then SIGKILL after timeout_s; True when the process stopped by itself."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if _wait_gone(pid, timeout_s):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _wait_gone(pid, 10.0)
    return False


class LocalPlatform:
    """A platform owned by this process: `with LocalPlatform(tmp) as info:` stops it on exit."""

    def __init__(self, state_dir: Path, **settings) -> None:
        """`settings` are Settings' fields; the ports default to free ones, kept across restarts."""
        ports = {"port": settings.pop("port", 0) or stable_free_port(), "s3_port": settings.pop("s3_port", 0)}
        ports["s3_port"] = ports["s3_port"] or stable_free_port()
        self.settings = Settings(Path(state_dir), **ports, **settings)
        self.state_dir = self.settings.state_dir
        self._proc: Child | None = None
        self.info: PlatformInfo | None = None

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def s3_port(self) -> int:
        return self.settings.s3_port

    def start(self, timeout_s: float = 60.0) -> PlatformInfo:
        self._proc, log_start = _spawn(self.settings.but(owner_pid=os.getpid()), detach=False)
        try:
            self.info = _wait_ready(self._proc.popen, self.state_dir, timeout_s, log_start)
        except BaseException:
            self.stop()
            raise
        # A restart keeps the same addresses, so clients and stored URLs stay valid.
        port, s3_port = int(self.info.apihost.rsplit(":", 1)[1]), int(self.info.s3_endpoint.rsplit(":", 1)[1])
        self.settings = self.settings.but(port=port, s3_port=s3_port)
        return self.info

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed. Returns once every process it started has died.

        The kernel kills the S3 process and the action containers when the platform dies, level by
        level (an action's launcher dies after its proxy), and a process acts on SIGKILL only once an
        fsync in flight returns. Until the last one is gone the S3 port is not free: the server's
        side of a connection to a still living action keeps it. So wait for the whole tree.
        """
        if self._proc is not None:
            tree = descendants(self._proc.pid)[1:]
            self._proc.kill()
            self._proc = None
            s3_pid = self.info.s3_pid if self.info is not None else None
            for pid in ([s3_pid] if s3_pid else []) + [p for p in tree if p != s3_pid]:
                if not _wait_gone(pid, 120.0):
                    what = "the embedded S3" if pid == s3_pid else "a process it started"
                    raise SupervisorError(f"{what} (pid {pid}) outlived the platform by 120 s")

    def restart(self) -> PlatformInfo:
        self.stop()
        return self.start()

    def __enter__(self) -> PlatformInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
