"""The embedded S3 endpoint: moto's real S3 HTTP server on loopback, with a snapshot on disk.

moto keeps objects in memory, so the owner restores a snapshot directory on start and
writes it back on stop; objects survive `deployer down` / `up` like the platform state.
"""

from __future__ import annotations

import logging
import shutil
import urllib.parse
from pathlib import Path

DEFAULT_ACCESS_KEY = "deployer"
DEFAULT_SECRET_KEY = "deployer-secret"
_SAFE = "-_.~/"


class EmbeddedS3:
    """Owns one moto server thread; `with EmbeddedS3(...) as s3:` stops it on exit."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, snapshot_dir: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self._server = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "EmbeddedS3":
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        if self.snapshot_dir and self.snapshot_dir.is_dir():
            self._restore()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        try:
            if self.snapshot_dir:
                self._snapshot()
        finally:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "EmbeddedS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=DEFAULT_ACCESS_KEY,
            aws_secret_access_key=DEFAULT_SECRET_KEY, region_name="us-east-1",
        )

    def _snapshot(self) -> None:
        """Write every object to snapshot_dir/<bucket>/<quoted key>, replacing the old snapshot."""
        client = self.client()
        tmp = self.snapshot_dir.with_name(self.snapshot_dir.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for bucket in client.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            (tmp / name).mkdir()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    body = client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
                    (tmp / name / urllib.parse.quote(item["Key"], safe="")).write_bytes(body)
        old = self.snapshot_dir.with_name(self.snapshot_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.snapshot_dir.exists():
            self.snapshot_dir.rename(old)
        tmp.rename(self.snapshot_dir)
        shutil.rmtree(old, ignore_errors=True)

    def _restore(self) -> None:
        client = self.client()
        for bucket_dir in sorted(p for p in self.snapshot_dir.iterdir() if p.is_dir()):
            client.create_bucket(Bucket=bucket_dir.name)
            for f in bucket_dir.iterdir():
                client.put_object(Bucket=bucket_dir.name, Key=urllib.parse.unquote(f.name), Body=f.read_bytes())
