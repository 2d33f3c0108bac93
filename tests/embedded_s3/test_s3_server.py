"""The embedded S3 as a server: it refuses whoever does not sign with its keys, and keeps what it acknowledged.

Real server process on loopback, real boto3 and plain HTTP; a full disk is a small tmpfs
that the test mounts itself (`small_fs`: root only, skipped with the reason otherwise).
"""

from __future__ import annotations

import os

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from localwhisk.s3 import EmbeddedS3
from mlcore.errors import StorageError
from mlcore.storage import Storage, StorageConfig


def _code(xml: str) -> str:
    return xml.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in xml else ""


def _client(s3, access_key: str | None = None, secret_key: str | None = None, **config):
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=access_key or s3.access_key,
        aws_secret_access_key=secret_key or s3.secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, **config),
    )


def test_unsigned_requests_are_refused(s3_server, storage):
    storage.put_bytes("secret", b"weights")
    url = s3_server.endpoint_url
    for method, path in (
        ("GET", "/"),
        ("GET", f"/{storage.bucket}?list-type=2"),
        ("GET", f"/{storage.bucket}/secret"),
        ("PUT", f"/{storage.bucket}/planted"),
        ("PUT", "/new-bucket"),
        ("DELETE", f"/{storage.bucket}/secret"),
    ):
        resp = requests.request(method, url + path, data=b"x" if method == "PUT" else None, timeout=10)
        assert resp.status_code == 403, (method, path)
        assert _code(resp.text) == "AccessDenied", (method, path, resp.text)
    assert sorted(storage.list_keys()) == ["secret"]
    assert storage.get_bytes("secret") == b"weights"


def test_wrong_keys_are_refused(s3_server, storage):
    with pytest.raises(ClientError) as info:
        _client(s3_server, access_key="AKIAWHOEVER").put_object(Bucket=storage.bucket, Key="k", Body=b"x")
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as info:
        _client(s3_server, secret_key="not-the-secret").put_object(Bucket=storage.bucket, Key="k", Body=b"x")
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as info:
        _client(s3_server, secret_key="not-the-secret").list_buckets()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert list(storage.list_keys()) == []


def test_a_body_other_than_the_signed_one_is_refused(s3_server, storage):
    creds = Credentials(s3_server.access_key, s3_server.secret_key)
    url = f"{s3_server.endpoint_url}/{storage.bucket}/swapped"
    request = AWSRequest("PUT", url, data=b"signed body")
    SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    request.headers["X-Amz-Content-SHA256"] = SigV4Auth(creds, "s3", "us-east-1").payload(request)
    SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    resp = requests.put(url, data=b"other body!", headers=headers, timeout=10)
    assert resp.status_code == 400 and _code(resp.text) == "XAmzContentSHA256Mismatch"
    assert not storage.exists("swapped")


def test_no_reset_admin_or_cors(s3_server, storage):
    storage.put_bytes("keep", b"1")
    assert requests.post(s3_server.endpoint_url + "/moto-api/reset", timeout=10).status_code == 403
    # signed with the real keys it is still no admin endpoint
    creds = Credentials(s3_server.access_key, s3_server.secret_key)
    for method, path in (("POST", "/moto-api/reset"), ("GET", "/moto-api/data.json")):
        request = AWSRequest(method, s3_server.endpoint_url + path, data=b"")
        request.headers["X-Amz-Content-SHA256"] = SigV4Auth(creds, "s3", "us-east-1").payload(request)
        SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
        resp = requests.request(method, request.url, headers=dict(request.headers.items()), timeout=10)
        assert resp.status_code in (404, 405, 501), (path, resp.status_code)
    pre = requests.options(
        f"{s3_server.endpoint_url}/{storage.bucket}/keep",
        timeout=10,
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert storage.get_bytes("keep") == b"1"


def test_s3_operations_boto3_and_aws_cli_use(s3_server, storage, tmp_path):
    c = _client(s3_server)
    big = os.urandom(12 << 20)
    (tmp_path / "big").write_bytes(big)
    from boto3.s3.transfer import TransferConfig

    c.upload_file(
        str(tmp_path / "big"),
        storage.bucket,
        "dir/big",
        Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20),
    )
    assert c.head_object(Bucket=storage.bucket, Key="dir/big")["ETag"].endswith('-3"')
    assert c.get_object(Bucket=storage.bucket, Key="dir/big", Range="bytes=100-199")["Body"].read() == big[100:200]
    assert c.get_object(Bucket=storage.bucket, Key="dir/big", Range="bytes=-10")["Body"].read() == big[-10:]
    c.copy_object(Bucket=storage.bucket, Key="dir/copy", CopySource={"Bucket": storage.bucket, "Key": "dir/big"})
    c.download_file(storage.bucket, "dir/copy", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == big
    key = "odd key/with spaces+plus?query&and%percent/" + "x" * 300
    storage.put_bytes(key, b"long")
    listed = c.list_objects_v2(Bucket=storage.bucket, Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["dir/", "odd key/"]
    assert sorted(storage.list_keys()) == ["dir/big", "dir/copy", key]
    assert storage.get_bytes(key) == b"long"
    presigned = _client(s3_server, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": storage.bucket, "Key": key}, ExpiresIn=300
    )
    assert requests.get(presigned, timeout=10).content == b"long"
    assert requests.get(presigned.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=10).status_code == 403
    storage.delete_keys(["dir/big", "dir/copy", key, "never-there"])
    assert list(storage.list_keys()) == []


def test_acknowledged_objects_survive_kill_9_of_the_server(tmp_path):
    s3 = EmbeddedS3(root=tmp_path / "objects").start()
    try:
        c = s3.client()
        c.create_bucket(Bucket="crash")
        bodies = {f"k/{i}": os.urandom(1000 + i) for i in range(50)}
        for key, body in bodies.items():
            c.put_object(Bucket="crash", Key=key, Body=body)
        s3.kill()
    finally:
        s3.stop()
    with EmbeddedS3(root=tmp_path / "objects") as s3:
        c = s3.client()
        assert {k: c.get_object(Bucket="crash", Key=k)["Body"].read() for k in bodies} == bodies


def test_a_server_started_from_a_thread_that_ends_serves_on(tmp_path):
    # PR_SET_PDEATHSIG fires when the forking *thread* ends: an owner that started it from a worker thread lost it
    import threading

    started = []
    thread = threading.Thread(target=lambda: started.append(EmbeddedS3(root=tmp_path / "objects").start()))
    thread.start()
    thread.join()
    s3 = started[0]
    try:
        s3.client().create_bucket(Bucket="after-the-thread")
        assert "after-the-thread" in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    finally:
        assert s3.stop() == 0, "it was killed, not stopped"


def test_full_disk_fails_the_put_and_keeps_earlier_objects(small_fs):
    disk = small_fs("disk", "2m")
    with EmbeddedS3(root=disk / "objects") as s3:
        storage = Storage(
            StorageConfig(
                endpoint_url=s3.endpoint_url, bucket="full", access_key=s3.access_key, secret_key=s3.secret_key
            )
        )
        storage.ensure_bucket()
        earlier = {f"early/{i}": os.urandom(100_000) for i in range(5)}
        for key, body in earlier.items():
            storage.put_bytes(key, body)
        with pytest.raises(ClientError) as info:
            _client(s3).put_object(Bucket="full", Key="too-big", Body=os.urandom(4 << 20))
        assert info.value.response["Error"]["Code"] == "InsufficientStorage"
        assert "disk is full" in info.value.response["Error"]["Message"]
        with pytest.raises(StorageError, match="InsufficientStorage"):
            storage.put_bytes("early/0", os.urandom(4 << 20))  # an overwrite that fails keeps the old object
        assert not storage.exists("too-big")
        assert {k: storage.get_bytes(k) for k in earlier} == earlier
        storage.delete("early/4")
        storage.put_bytes("after", b"room again")  # nothing half-written is left taking space
        assert storage.get_bytes("after") == b"room again"
        assert os.listdir(disk / "objects" / "tmp") == []


def test_a_get_racing_overwrites_returns_one_whole_version(s3_server, storage):
    # a status object rewritten while it is read (training jobs do this every step): every read
    # must be one version exactly, never one version's length over another's bytes
    import threading

    versions = [('{"v": ' + str(i) + ', "pad": "' + "x" * (i * 37 % 400) + '"}').encode() for i in range(40)]
    storage.put_bytes("status.json", versions[0])
    stop, mixed = threading.Event(), []

    def overwrite() -> None:
        client = _client(s3_server)
        for n in range(400):
            if stop.is_set():
                return
            client.put_object(Bucket=storage.bucket, Key="status.json", Body=versions[n % len(versions)])

    writer = threading.Thread(target=overwrite)
    writer.start()
    try:
        reader = _client(s3_server)
        for _ in range(400):
            body = reader.get_object(Bucket=storage.bucket, Key="status.json")["Body"].read()
            if body not in versions:
                mixed.append(body[:80])
    finally:
        stop.set()
        writer.join(60)
    assert mixed == []


def test_reduced_redundancy_objects_are_reported_as_such_and_other_classes_refused(s3_server, storage):
    c = storage.client
    c.put_object(Bucket=storage.bucket, Key="scratch", Body=b"x" * 100, StorageClass="REDUCED_REDUNDANCY")
    c.put_object(Bucket=storage.bucket, Key="kept", Body=b"y" * 100)
    assert c.head_object(Bucket=storage.bucket, Key="scratch")["StorageClass"] == "REDUCED_REDUNDANCY"
    assert "StorageClass" not in c.head_object(Bucket=storage.bucket, Key="kept")  # S3 omits STANDARD
    assert c.get_object(Bucket=storage.bucket, Key="scratch")["Body"].read() == b"x" * 100
    with pytest.raises(ClientError) as info:
        c.put_object(Bucket=storage.bucket, Key="cold", Body=b"z", StorageClass="GLACIER")
    assert info.value.response["Error"]["Code"] == "InvalidStorageClass"
    assert not storage.exists("cold")


def test_only_standard_objects_pay_for_fsync_and_both_survive_a_killed_server(tmp_path, monkeypatch):
    from embedded_s3 import store as objectstore

    synced = []
    monkeypatch.setattr(objectstore.os, "fsync", lambda fd: synced.append(fd))
    store = objectstore.ObjectStore(tmp_path / "objects")
    store.create_bucket("bkt")
    synced.clear()
    store.put("bkt", "standard", objectstore.Payload([b"a" * 10]), objectstore.Meta())
    assert len(synced) == 2  # the file, then its folder after the rename
    synced.clear()
    store.put("bkt", "scratch", objectstore.Payload([b"b" * 10]), objectstore.Meta(storage_class="REDUCED_REDUNDANCY"))
    assert synced == [] and store.head("bkt", "scratch").storage_class == "REDUCED_REDUNDANCY"
    monkeypatch.undo()
    s3 = EmbeddedS3(root=tmp_path / "server").start()
    try:
        c = s3.client()
        c.create_bucket(Bucket="crash")
        c.put_object(Bucket="crash", Key="scratch", Body=b"s" * 5000, StorageClass="REDUCED_REDUNDANCY")
        s3.kill()  # the process dies; the page cache (and so the object) does not
    finally:
        s3.stop()
    with EmbeddedS3(root=tmp_path / "server") as s3:
        assert s3.client().get_object(Bucket="crash", Key="scratch")["Body"].read() == b"s" * 5000


def test_objects_survive_restart_of_the_server(tmp_path):
    root = tmp_path / "objects"
    with EmbeddedS3(root=root) as s3:
        c = s3.client()
        c.create_bucket(Bucket="keep-me")
        c.put_object(Bucket="keep-me", Key="jobs/x/model/3", Body=b"weights")
        keys = s3.access_key, s3.secret_key
    with EmbeddedS3(root=root) as s3:
        assert (s3.access_key, s3.secret_key) == keys  # generated once per folder
        body = s3.client().get_object(Bucket="keep-me", Key="jobs/x/model/3")["Body"].read()
        assert body == b"weights"
