"""Fixtures for the embedded S3's tests: clients of the session's server, new buckets, servers with short deadlines."""

from __future__ import annotations

import itertools
import threading

import boto3
import pytest
from botocore.config import Config

_buckets = itertools.count()


def client_of(endpoint_url: str, access_key: str, secret_key: str, **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **{"signature_version": "s3v4", **config}
        ),
    )


@pytest.fixture
def s3c(s3_server):
    """A boto3 client of the session's embedded S3."""
    return client_of(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)


@pytest.fixture
def bucket(s3c) -> str:
    """A new, empty bucket on the session's server."""
    name = f"conf-{next(_buckets)}"
    s3c.create_bucket(Bucket=name)
    return name


def error_of(info) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a botocore ClientError caught by pytest.raises."""
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.fixture
def s3_with_limits(tmp_path):
    """start(**limits) -> (server, client): an embedded S3 in this process with its own deadlines, on loopback.

    The same application and HTTP server as the real process, so a test can wait one second for
    a deadline instead of thirty.
    """
    from embedded_s3.server import make_server

    started = []

    def start(**limits):
        creds = {"AKTEST": "secret-test-key"}
        server = make_server(tmp_path / f"objects-{len(started)}", creds, **limits)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server, client_of(f"http://127.0.0.1:{server.port}", "AKTEST", "secret-test-key")

    yield start
    for server, thread in started:
        server.shutdown(timeout_s=5)
        thread.join(10)
