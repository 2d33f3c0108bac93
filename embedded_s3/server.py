"""The embedded S3 process: the S3 application on `runtimes.wsgiserver`, bound to loopback, with deadlines.

The HTTP layer is the project's own small server (httptools parsing, a thread per
connection), run with streamed bodies: an upload goes to disk as it arrives, a download
leaves with sendfile, `Expect: 100-continue` is answered only after the signature has
been checked, and no client can hold a connection open (idle, header and body deadlines,
a minimum body rate, a bound on connections answered 503 SlowDown).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from runtimes.wsgiserver import WSGIServer

from .app import S3App
from .store import ObjectStore

MAX_OBJECT_BYTES = 5 * 1024**3  # S3's limit for one PUT (and one part)
MAX_CONNECTIONS = 256


def load_credentials(path: Path) -> dict[str, str]:
    """access key -> secret key, from {"access_key", "secret_key"} and any further {"keys": [{...}, ...]}."""
    doc = json.loads(path.read_text())
    pairs = [doc, *doc.get("keys", [])]
    creds = {p["access_key"]: p["secret_key"] for p in pairs if p.get("access_key") and p.get("secret_key")}
    if not creds:
        raise ValueError(f"{path} holds no access_key and secret_key")
    return creds


def make_server(
    root: Path,
    credentials: dict[str, str],
    host: str = "127.0.0.1",
    port: int = 0,
    region: str = "us-east-1",
    **limits,
) -> WSGIServer:
    """Listening on return (`.port`); `serve_forever` serves, `shutdown` stops.

    `limits` override the HTTP server's bounds (max_connections, idle_timeout_s, header_timeout_s,
    body_timeout_s, min_body_rate).
    """
    app = S3App(ObjectStore(root), credentials, region)
    settings = {
        "max_connections": MAX_CONNECTIONS,
        "max_body_bytes": MAX_OBJECT_BYTES + (64 << 20),  # aws-chunked framing on top of the largest object
        **limits,
    }
    return WSGIServer(host, port, app, stream_bodies=True, refuse=S3App.refusal, **settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m embedded_s3", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the folder that holds the objects")
    parser.add_argument("--credentials", type=Path, required=True, help="JSON file: access_key, secret_key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    opts = parser.parse_args(argv)
    if not 0 <= opts.port <= 65535:
        parser.error(f"--port must be between 0 and 65535: {opts.port}")
    os.umask(0o077)
    try:
        server = make_server(opts.root, load_credentials(opts.credentials), opts.host, opts.port, opts.region)
    except OSError as exc:
        what = (
            f"port {opts.port} on {opts.host} is taken"
            if exc.errno == 98
            else f"{exc.filename or opts.root}: {exc.strerror}"
        )
        print(f"embedded S3 cannot start: {what}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (ValueError, KeyError) as exc:
        print(f"embedded S3 cannot start: {opts.credentials}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
    server.serve_forever()
