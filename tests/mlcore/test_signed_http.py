"""mlcore.signed_http, storage's own signed GET/PUT/HEAD, against the embedded S3 and read back by boto3 and aws-cli."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localwhisk.s3 import EmbeddedS3
from mlcore import weights
from mlcore.errors import ObjectNotFoundError, StorageError
from mlcore.storage import WEIGHTS_TYPE, Storage, StorageConfig

# any key S3 holds: UTF-8 without C0/C1 controls, slashes and the characters URLs escape included
KEYS = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
    lambda k: len(k.encode()) <= 1024
)


@pytest.fixture
def both(storage_config):
    """(signed, boto3): two clients of one bucket, one through the signed path, one through boto3 only."""
    signed, plain = Storage(storage_config), Storage(storage_config, signed_path=False)
    signed.ensure_bucket()
    assert signed._signed is not None and plain._signed is None
    return signed, plain


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEYS, data=st.binary(max_size=2048))
def test_any_key_written_by_one_client_reads_back_through_the_other(both, key, data):
    signed, plain = both
    signed.put_bytes(key, data, "text/x-probe")
    assert plain.get_bytes(key) == data
    assert plain.client.head_object(Bucket=plain.bucket, Key=key)["ContentType"] == "text/x-probe"
    plain.put_bytes(key, data[::-1])
    assert signed.get_bytes(key) == data[::-1] and signed.exists(key)
    assert [k for k in plain.list_keys() if k == key] == [key]


def test_storage_class_and_an_unsigned_weights_body_arrive_as_sent(both):
    signed, plain = both
    blob = weights.encode({"w": __import__("torch").arange(4.0)}, {"round": 3})
    signed.put_bytes("u/1", blob, WEIGHTS_TYPE, "REDUCED_REDUNDANCY")
    head = plain.client.head_object(Bucket=plain.bucket, Key="u/1")
    assert head["StorageClass"] == "REDUCED_REDUNDANCY" and head["ContentType"] == WEIGHTS_TYPE
    assert plain.get_bytes("u/1") == blob
    assert signed.get_state("u/1")["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_missing_key_and_a_missing_bucket_are_not_found_errors_naming_them(both, storage_config):
    signed, _ = both
    with pytest.raises(ObjectNotFoundError, match=f"{signed.bucket}/nope.*NoSuchKey"):
        signed.get_bytes("nope")
    assert not signed.exists("nope")
    other = Storage(StorageConfig(**{**storage_config.__dict__, "bucket": "no-such-bucket-here"}))
    with pytest.raises(ObjectNotFoundError, match="NoSuchBucket"):
        other.get_bytes("k")


def test_a_wrong_secret_is_refused_with_s3s_code(storage_config, both):
    wrong = Storage(StorageConfig(**{**storage_config.__dict__, "secret_key": "not-the-secret"}))
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        wrong.put_bytes("k", b"x")
    assert not both[1].exists("k")


def test_an_unreachable_endpoint_is_a_clear_error():
    s = Storage(StorageConfig(endpoint_url="http://127.0.0.1:9", bucket="abc", access_key="a", secret_key="b"))
    with pytest.raises(StorageError, match="127.0.0.1:9.*check the endpoint"):
        s.get_bytes("k")


def test_a_kept_alive_connection_the_server_dropped_is_reopened(tmp_path):
    with EmbeddedS3(root=tmp_path / "objects") as first:
        port = first.port
        storage = Storage(StorageConfig(first.endpoint_url, "keep", first.access_key, first.secret_key))
        storage.ensure_bucket()
        storage.put_bytes("k", b"before")
    # the same endpoint again, after a restart closed every connection
    with EmbeddedS3(root=tmp_path / "objects", port=port):
        assert storage.get_bytes("k") == b"before"
        storage.put_bytes("k", b"after")
        assert storage.get_bytes("k") == b"after"


AWS = Path(sys.executable).parent / "aws"


@pytest.mark.skipif(not AWS.exists(), reason=f"aws-cli is not installed ({AWS})")
def test_aws_cli_reads_what_the_signed_path_wrote(s3_server, both, tmp_path):
    signed, _ = both
    signed.put_bytes("dir/a b+c.bin", b"\x00written by the signed path\xff", storage_class="REDUCED_REDUNDANCY")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
    }
    out = tmp_path / "out.bin"
    args = [str(AWS), "s3api", "get-object", "--bucket", signed.bucket, "--key", "dir/a b+c.bin", str(out)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"\x00written by the signed path\xff"
    assert '"StorageClass": "REDUCED_REDUNDANCY"' in done.stdout
