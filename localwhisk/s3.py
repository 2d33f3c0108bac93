"""The embedded S3 endpoint: our own S3 server process over a folder, owned by whoever starts it.

`EmbeddedS3` starts `python -m embedded_s3` as a child process on loopback (a `procs.Child`),
waits until it listens, and stops it on exit; the child also dies if its owner is killed. Objects are
written through to disk before they are acknowledged, so nothing needs flushing at stop.
Credentials are generated once per state folder and kept in a 0600 file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from localwhisk.errors import PlatformError
from procs import Child, NotReady, ReadyLine

REGION = "us-east-1"


class StorageStartError(PlatformError):
    """The embedded S3 did not start; the message says why (port taken, folder not writable)."""


def load_or_create_credentials(path: Path) -> dict[str, str]:
    """{"access_key", "secret_key"}, generated on first use and kept private (0600)."""
    path = Path(path)
    try:
        creds = json.loads(path.read_text())
        if creds.get("access_key") and creds.get("secret_key"):
            path.chmod(0o600)
            return creds
    except FileNotFoundError:
        pass
    except ValueError:
        raise StorageStartError(f"{path} is not valid JSON; delete it to generate new storage keys") from None
    creds = {"access_key": "DPLY" + secrets.token_hex(8).upper(), "secret_key": secrets.token_urlsafe(30)}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        f.write(json.dumps(creds))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return creds


class EmbeddedS3:
    """Owns one S3 server process; `with EmbeddedS3(...) as s3:` stops it on exit.

    Without `root`, objects live in a temporary folder removed at stop (tests, benchmarks).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, root: Path | None = None, credentials_file: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.root = Path(root) if root else None
        self.credentials_file = Path(credentials_file) if credentials_file else None
        self.access_key = self.secret_key = ""
        self.pid: int | None = None
        self._proc: Child | None = None
        self._tmp: str | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedS3:
        if self.root is None:
            self._tmp = tempfile.mkdtemp(prefix="embedded-s3-")
            self.root = Path(self._tmp) / "objects"
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        creds_path = self.credentials_file or self.root.parent / "s3-credentials.json"
        creds = load_or_create_credentials(creds_path)
        self.access_key, self.secret_key = creds["access_key"], creds["secret_key"]
        cmd = [
            sys.executable,
            "-m",
            "embedded_s3",
            "--root",
            str(self.root),
            "--credentials",
            str(creds_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        # forked by procs' spawner thread: an owner may start it from a thread that ends before the owner does
        self._proc = Child(
            cmd,
            name="embedded S3",
            ready=ReadyLine("stdout"),
            die_with_parent=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ready = json.loads(self._proc.start(timeout_s))
        except NotReady as exc:
            err = self._proc.popen.stderr.read().decode(errors="replace").strip().splitlines()
            self._proc.popen.stderr.close()
            self.stop()
            reason = err[-1] if err else f"it did not answer within {timeout_s:.0f} s"
            what = reason if reason.startswith("embedded S3") else f"embedded S3 cannot start: {reason}"
            raise StorageStartError(what) from exc
        except BaseException:
            if self._proc.popen is not None:
                self._proc.popen.stderr.close()
            self.stop()
            raise
        self.port, self.pid = ready["port"], ready["pid"]
        threading_drain(self._proc.popen.stderr)
        return self

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stops the server; returns its exit status (None when it was not running)."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            code = proc.stop(timeout_s)
            if proc.popen is not None:
                proc.popen.stdout.close()  # stderr belongs to its pump thread, which ends at EOF
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp, self.root = None, None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would; `stop` still has to be called to reap it and clean up."""
        if self._proc is not None:
            self._proc.kill()

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def threading_drain(stream) -> None:
    """Forwards the server's stderr (tracebacks of failed requests) to ours, so its pipe never fills."""
    import threading

    def pump() -> None:
        for line in iter(stream.readline, b""):
            sys.stderr.write(line.decode(errors="replace"))

    threading.Thread(target=pump, daemon=True, name="embedded-s3-stderr").start()
