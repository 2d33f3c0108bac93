"""Fixtures for the embedded S3's tests: clients of the session's server, new buckets, servers with short deadlines."""

from __future__ import annotations

import itertools
import threading

import pytest
from s3_clients import client_of

_buckets = itertools.count()


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
