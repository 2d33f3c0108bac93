"""aws-cli end to end against the embedded S3: what users type, with the environment `deployer storage env` prints.

Objects of 1 KB and 20 MB go local -> S3 -> S3 -> local through cp, mv and sync; S3 -> S3 of
20 MB is a multipart UploadPartCopy of three parts (aws-cli switches at 8 MB and copies 8 MB parts),
the case that once stored a 0-byte copy without an error. Every file that comes back is compared by SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

AWS = Path(sys.executable).parent / "aws"
pytestmark = pytest.mark.skipif(not AWS.exists(), reason=f"aws-cli is not installed ({AWS}); ./run setup installs it")
MB = 1024 * 1024


@pytest.fixture
def aws(s3_server, tmp_path):
    """aws(*args) -> stdout: the aws command with the embedded S3's environment and no user configuration."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
    }

    # aws-cli v1 presigns with Signature V2 unless told otherwise; the embedded S3, like S3 today, takes V4 only
    (tmp_path / "aws-config").write_text("[default]\ns3 =\n    signature_version = s3v4\n")

    def run(*args: str) -> str:
        done = subprocess.run([str(AWS), *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"aws {' '.join(args)} -> {done.returncode}: {done.stderr}"
        return done.stdout

    return run


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cp_mv_and_sync_round_trip_small_and_large_objects_between_disk_and_s3(aws, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.bin").write_bytes(os.urandom(1024))
    (src / "big.bin").write_bytes(os.urandom(20 * MB))
    want = {name: _sha(src / name) for name in ("small.bin", "big.bin")}
    aws("s3", "mb", "s3://cli-a")
    aws("s3", "mb", "s3://cli-b")
    for name in want:
        aws("s3", "cp", str(src / name), f"s3://cli-a/up/{name}")
        aws("s3", "cp", f"s3://cli-a/up/{name}", f"s3://cli-a/copied/{name}")  # S3 -> S3
        aws("s3", "mv", f"s3://cli-a/copied/{name}", f"s3://cli-b/moved/{name}")
    aws("s3", "sync", "s3://cli-b/moved", "s3://cli-a/synced")  # S3 -> S3 sync
    aws("s3", "sync", str(src), "s3://cli-b/from-disk")  # disk -> S3 sync
    listing = aws("s3", "ls", "--recursive", "s3://cli-a")
    assert sorted(line.split()[-1] for line in listing.splitlines()) == sorted(
        f"{d}/{n}" for d in ("up", "synced") for n in want
    )
    assert "copied/" not in listing  # mv removed its source
    for remote in ("s3://cli-a/synced", "s3://cli-b/moved", "s3://cli-b/from-disk"):
        back = tmp_path / ("back-" + remote.replace("/", "_").replace(":", ""))
        aws("s3", "sync", remote, str(back))  # S3 -> disk
        assert {name: _sha(back / name) for name in want} == want, remote
    size = json.loads(aws("s3api", "head-object", "--bucket", "cli-a", "--key", "synced/big.bin"))["ContentLength"]
    assert size == 20 * MB
    aws("s3", "rm", "--recursive", "s3://cli-a")
    aws("s3", "rm", "--recursive", "s3://cli-b")
    assert aws("s3", "ls", "--recursive", "s3://cli-a") == ""
    aws("s3", "rb", "s3://cli-a")
    aws("s3", "rb", "s3://cli-b")


def test_presign_list_parts_part_heads_and_delete_objects(aws, tmp_path):
    aws("s3", "mb", "s3://cli-api")
    (tmp_path / "f").write_bytes(b"presigned body")
    aws("s3", "cp", str(tmp_path / "f"), "s3://cli-api/f")
    url = aws("s3", "presign", "s3://cli-api/f", "--expires-in", "300").strip()
    assert "X-Amz-Signature=" in url
    assert requests.get(url, timeout=30).content == b"presigned body"
    upload = json.loads(aws("s3api", "create-multipart-upload", "--bucket", "cli-api", "--key", "mp"))["UploadId"]
    parts = []
    for n, size in ((1, 5 * MB), (2, 1000)):
        (tmp_path / f"p{n}").write_bytes(os.urandom(size))
        etag = json.loads(
            aws(
                "s3api", "upload-part", "--bucket", "cli-api", "--key", "mp", "--upload-id", upload,
                "--part-number", str(n), "--body", str(tmp_path / f"p{n}"),
            )
        )["ETag"]  # fmt: skip
        parts.append({"PartNumber": n, "ETag": etag})
    listed = json.loads(aws("s3api", "list-parts", "--bucket", "cli-api", "--key", "mp", "--upload-id", upload))
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 * MB), (2, 1000)]
    (tmp_path / "parts.json").write_text(json.dumps({"Parts": parts}))
    aws(
        "s3api", "complete-multipart-upload", "--bucket", "cli-api", "--key", "mp", "--upload-id", upload,
        "--multipart-upload", f"file://{tmp_path / 'parts.json'}",
    )  # fmt: skip
    head = json.loads(aws("s3api", "head-object", "--bucket", "cli-api", "--key", "mp", "--part-number", "2"))
    assert (head["ContentLength"], head["PartsCount"]) == (1000, 2)
    (tmp_path / "delete.json").write_text(json.dumps({"Objects": [{"Key": "f"}, {"Key": "mp"}, {"Key": "never"}]}))
    deleted = json.loads(
        aws("s3api", "delete-objects", "--bucket", "cli-api", "--delete", f"file://{tmp_path / 'delete.json'}")
    )
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["f", "mp", "never"]
    assert aws("s3", "ls", "s3://cli-api") == ""
    aws("s3", "rb", "s3://cli-api")
