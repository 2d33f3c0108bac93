"""The local platform process: controller + invoker + embedded S3, owned as one unit.

`deployer up` runs this module in the background; tests run it as a subprocess. It writes
`platform.json` (where to reach it) once everything listens, and on SIGTERM stops the
HTTP server, kills every container, closes open activation records and snapshots S3.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import threading
import time
import uuid
from pathlib import Path

from .controller import create_app
from .invoker import DEFAULT_MAX_CONTAINERS, Invoker
from .platform import Platform
from .s3 import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, EmbeddedS3
from .store import Store

NAMESPACE = "guest"
INFO_FILE = "platform.json"


def load_or_create_auth(state_dir: Path) -> str:
    """The namespace's 'uuid:key', generated once per state directory."""
    path = state_dir / "auth.json"
    if path.exists():
        return json.loads(path.read_text())[NAMESPACE]
    key = f"{uuid.uuid4()}:{secrets.token_urlsafe(48)}"
    path.write_text(json.dumps({NAMESPACE: key}))
    path.chmod(0o600)
    return key


def serve(state_dir: Path, host: str = "127.0.0.1", port: int = 3233, s3_port: int = 3234,
          max_containers: int = DEFAULT_MAX_CONTAINERS, idle_timeout_s: float = 600.0, blocking_timeout_s: float = 60.0) -> None:
    from werkzeug.serving import make_server

    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log = logging.getLogger("platform")
    auth = load_or_create_auth(state_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    info_path = state_dir / INFO_FILE
    with EmbeddedS3(host, s3_port, snapshot_dir=state_dir / "s3") as s3:
        store = Store(state_dir / "platform.db")
        invoker = Invoker(max_containers=max_containers, idle_timeout_s=idle_timeout_s)
        platform = Platform(store, invoker, blocking_timeout_s=blocking_timeout_s)
        server = None
        try:
            if platform.interrupted_on_start:
                log.warning("closed %d activation(s) left in flight by the previous run",
                            platform.interrupted_on_start)
            server = make_server(host, port, create_app(platform, {NAMESPACE: auth}), threaded=True)
            apihost = f"http://{host}:{server.server_port}"
            platform.api_host = apihost
            threading.Thread(target=server.serve_forever, daemon=True).start()
            info = {"pid": os.getpid(), "apihost": apihost, "auth": auth, "namespace": NAMESPACE,
                    "s3_endpoint": s3.endpoint_url, "s3_access_key": DEFAULT_ACCESS_KEY,
                    "s3_secret_key": DEFAULT_SECRET_KEY, "started": time.time()}
            tmp = info_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.chmod(0o600)
            tmp.replace(info_path)
            log.info("OpenWhisk API on %s, S3 on %s, state in %s", apihost, s3.endpoint_url, state_dir)
            stop.wait()
            log.info("stopping")
        finally:
            info_path.unlink(missing_ok=True)
            if server is not None:
                server.shutdown()
            platform.shutdown()
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3233)
    parser.add_argument("--s3-port", type=int, default=3234)
    parser.add_argument("--max-containers", type=int, default=DEFAULT_MAX_CONTAINERS)
    parser.add_argument("--idle-timeout-s", type=float, default=600.0)
    parser.add_argument("--blocking-timeout-s", type=float, default=60.0)
    opts = parser.parse_args(argv)
    serve(opts.state_dir, opts.host, opts.port, opts.s3_port, opts.max_containers, opts.idle_timeout_s,
          opts.blocking_timeout_s)


if __name__ == "__main__":
    main()
