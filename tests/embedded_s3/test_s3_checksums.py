"""Checksums end to end: Content-MD5 and x-amz-checksum-* verified on the way in, kept, and returned on request.

Expected values are computed here with hashlib and zlib (and awscrt, AWS's own library, for
CRC32C and CRC64NVME); the aws-chunked bodies are framed by botocore's own encoder, and the
signed one is the example from AWS's Signature V4 documentation, byte for byte.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import io
import socket
import threading
import time
import zlib

import pytest
import requests
from awscrt import checksums as crt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from s3_clients import error_of

from embedded_s3 import sigv4

MB = 1024 * 1024


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def reference(algorithm: str, data: bytes) -> str:
    if algorithm == "CRC32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "CRC32C":
        return b64(crt.crc32c(data).to_bytes(4, "big"))
    if algorithm == "CRC64NVME":
        return b64(crt.crc64nvme(data).to_bytes(8, "big"))
    return b64(hashlib.new(algorithm.lower(), data).digest())


ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_checksum_is_verified_kept_and_returned_when_asked(s3c, bucket, algorithm):
    body = b"checksummed " * 1000
    member = f"Checksum{algorithm}"
    put = s3c.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm=algorithm)
    assert put[member] == reference(algorithm, body)
    assert member not in s3c.head_object(Bucket=bucket, Key="k")
    head = s3c.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[member] == reference(algorithm, body) and head["ChecksumType"] == "FULL_OBJECT"
    got = s3c.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")  # botocore checks the body against it
    assert got["Body"].read() == body
    wrong = reference(algorithm, b"something else")
    with pytest.raises(ClientError) as info:
        s3c.put_object(Bucket=bucket, Key="k", Body=b"replacement", **{member: wrong})
    assert error_of(info) == (400, "BadDigest")
    assert s3c.get_object(Bucket=bucket, Key="k")["Body"].read() == body  # the refused write changed nothing


def test_content_md5_is_verified_and_a_malformed_one_refused(s3_server, s3c, bucket):
    body = b"md5 me"
    s3c.put_object(Bucket=bucket, Key="ok", Body=body, ContentMD5=b64(hashlib.md5(body).digest()))

    def put_with_md5(value: str) -> requests.Response:
        request = AWSRequest("PUT", f"{s3_server.endpoint_url}/{bucket}/bad", data=body)
        request.headers["Content-MD5"] = value
        request.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
        SigV4Auth(Credentials(s3_server.access_key, s3_server.secret_key), "s3", "us-east-1").add_auth(request)
        return requests.put(request.url, data=body, headers=dict(request.headers.items()), timeout=10)

    wrong = put_with_md5(b64(hashlib.md5(b"other").digest()))
    assert wrong.status_code == 400 and "<Code>BadDigest</Code>" in wrong.text
    malformed = put_with_md5("not base64!")
    assert malformed.status_code == 400 and "<Code>InvalidDigest</Code>" in malformed.text
    assert [o["Key"] for o in s3c.list_objects_v2(Bucket=bucket)["Contents"]] == ["ok"]


def test_objects_stored_without_a_checksum_get_s3s_default_crc64nvme(s3c, bucket):
    body = b"no checksum asked"
    s3c.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="CRC32")
    s3c.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"})
    assert s3c.head_object(Bucket=bucket, Key="copy", ChecksumMode="ENABLED")["ChecksumCRC32"] == reference(
        "CRC32", body
    )
    s3c.meta.events.register("before-sign.s3.PutObject", _strip_checksums)
    s3c.put_object(Bucket=bucket, Key="plain", Body=body)
    head = s3c.head_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == reference("CRC64NVME", body)


def _strip_checksums(request, **_):
    for name in list(request.headers):
        if name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum")):
            del request.headers[name]


def test_multipart_checksums_composite_and_full_object(s3c, bucket):
    parts = [b"A" * (5 * MB), b"B" * 1000]
    # COMPOSITE (SHA256): the checksum of the parts' checksums, then -N
    upload = s3c.create_multipart_upload(Bucket=bucket, Key="sha", ChecksumAlgorithm="SHA256")["UploadId"]
    done_parts = []
    for n, part in enumerate(parts, 1):
        r = s3c.upload_part(
            Bucket=bucket, Key="sha", UploadId=upload, PartNumber=n, Body=part, ChecksumAlgorithm="SHA256"
        )
        assert r["ChecksumSHA256"] == reference("SHA256", part)
        done_parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()) + "-2"
    with pytest.raises(ClientError) as info:
        s3c.complete_multipart_upload(
            Bucket=bucket, Key="sha", UploadId=upload, MultipartUpload={"Parts": done_parts}, ChecksumSHA256="bad"
        )
    assert error_of(info) == (400, "BadDigest")
    tampered = [dict(done_parts[0], ChecksumSHA256=reference("SHA256", b"x")), done_parts[1]]
    with pytest.raises(ClientError) as info:
        s3c.complete_multipart_upload(Bucket=bucket, Key="sha", UploadId=upload, MultipartUpload={"Parts": tampered})
    assert error_of(info) == (400, "BadDigest")
    done = s3c.complete_multipart_upload(
        Bucket=bucket, Key="sha", UploadId=upload, MultipartUpload={"Parts": done_parts}, ChecksumSHA256=composite
    )
    assert done["ChecksumSHA256"] == composite and done["ChecksumType"] == "COMPOSITE"
    part2 = s3c.get_object(Bucket=bucket, Key="sha", PartNumber=2, ChecksumMode="ENABLED")
    assert part2["ChecksumSHA256"] == reference("SHA256", parts[1]) and part2["Body"].read() == parts[1]
    attrs = s3c.get_object_attributes(Bucket=bucket, Key="sha", ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"]["ChecksumSHA256"] == composite
    assert [p["ChecksumSHA256"] for p in attrs["ObjectParts"]["Parts"]] == [reference("SHA256", p) for p in parts]
    # FULL_OBJECT (CRC32): the CRC of the whole body, as if it had been one PUT
    upload = s3c.create_multipart_upload(
        Bucket=bucket, Key="crc", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    done_parts = []
    for n, part in enumerate(parts, 1):
        r = s3c.upload_part(
            Bucket=bucket, Key="crc", UploadId=upload, PartNumber=n, Body=part, ChecksumAlgorithm="CRC32"
        )
        done_parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    whole = reference("CRC32", b"".join(parts))
    done = s3c.complete_multipart_upload(
        Bucket=bucket, Key="crc", UploadId=upload, MultipartUpload={"Parts": done_parts}, ChecksumCRC32=whole
    )
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (whole, "FULL_OBJECT")
    assert s3c.get_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")["Body"].read() == b"".join(parts)


def _unsigned_trailer_put(s3_server, url: str, body: bytes, trailer_value: str | None = None) -> requests.Response:
    """A PUT framed as current SDKs stream uploads over TLS: aws-chunked, CRC32 in a trailer, payload unsigned."""
    framed = AwsChunkedWrapper(io.BytesIO(body), Crc32Checksum, "x-amz-checksum-crc32", chunk_size=64 * 1024).read()
    if trailer_value is not None:
        framed = (
            framed.rsplit(b"x-amz-checksum-crc32:", 1)[0] + f"x-amz-checksum-crc32:{trailer_value}\r\n\r\n".encode()
        )
    request = AWSRequest("PUT", url, data=framed)
    for name, value in {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Decoded-Content-Length": str(len(body)),
        "X-Amz-Content-SHA256": sigv4.STREAMING_UNSIGNED_TRAILER,
    }.items():
        request.headers[name] = value
    SigV4Auth(Credentials(s3_server.access_key, s3_server.secret_key), "s3", "us-east-1").add_auth(request)
    return requests.put(url, data=framed, headers=dict(request.headers.items()), timeout=30)


def test_aws_chunked_bodies_with_a_trailing_checksum_are_decoded_and_verified(s3_server, s3c, bucket):
    body = bytes(range(256)) * 1000
    url = f"{s3_server.endpoint_url}/{bucket}/chunked"
    ok = _unsigned_trailer_put(s3_server, url, body)
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-amz-checksum-crc32"] == reference("CRC32", body)
    assert s3c.get_object(Bucket=bucket, Key="chunked")["Body"].read() == body
    bad = _unsigned_trailer_put(s3_server, url, b"replacement", trailer_value=reference("CRC32", b"other"))
    assert bad.status_code == 400 and "<Code>BadDigest</Code>" in bad.text
    assert s3c.get_object(Bucket=bucket, Key="chunked")["Body"].read() == body


# The example of a chunked upload in AWS's Signature V4 documentation ("Transferring payload in
# multiple chunks"): 66560 bytes of 'a' in chunks of 64 KiB, with its published signatures.
AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]


def _aws_example_request(chunks) -> bytes:
    body = b"".join(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(d), s.encode(), d) for d, s in chunks)
    head = (
        "PUT /examplebucket/chunkObject.txt HTTP/1.1\r\n"
        "Host: s3.amazonaws.com\r\n"
        "x-amz-date: 20130524T000000Z\r\n"
        "x-amz-storage-class: REDUCED_REDUNDANCY\r\n"
        f"Authorization: AWS4-HMAC-SHA256 Credential={AWS_KEY}/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        f"x-amz-decoded-content-length;x-amz-storage-class,Signature={AWS_SEED}\r\n"
        f"x-amz-content-sha256: {sigv4.STREAMING_SIGNED}\r\n"
        "Content-Encoding: aws-chunked\r\n"
        "x-amz-decoded-content-length: 66560\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
def aws_example_server(tmp_path):
    """An embedded S3 whose clock reads 2013-05-24, holding AWS's example key and bucket."""
    from embedded_s3.app import S3App
    from embedded_s3.store import ObjectStore
    from runtimes.wsgiserver import WSGIServer

    store = ObjectStore(tmp_path / "objects")
    store.create_bucket("examplebucket")
    then = calendar.timegm(time.strptime("20130524T000000Z", "%Y%m%dT%H%M%SZ"))
    app = S3App(store, {AWS_KEY: AWS_SECRET}, clock=lambda: then)
    server = WSGIServer("127.0.0.1", 0, app, stream_bodies=True, refuse=S3App.refusal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, store
    server.shutdown()
    thread.join(10)


def _send(server, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_the_signed_chunked_upload_from_awss_documentation_is_accepted(aws_example_server):
    server, store = aws_example_server
    answer = _send(server, _aws_example_request(AWS_CHUNKS))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    info, f = store.open("examplebucket", "chunkObject.txt")
    with f:
        f.seek(0)
        assert f.read(info.size) == b"a" * 66560
    assert info.storage_class == "REDUCED_REDUNDANCY"


def test_a_chunk_whose_signature_does_not_chain_is_refused_and_nothing_stored(aws_example_server):
    server, store = aws_example_server
    forged = [AWS_CHUNKS[0], (b"b" * 1024, AWS_CHUNKS[1][1]), AWS_CHUNKS[2]]
    answer = _send(server, _aws_example_request(forged))
    assert answer.startswith(b"HTTP/1.1 403") and b"SignatureDoesNotMatch" in answer
    assert store.find("examplebucket", "chunkObject.txt") is None
    assert list(store.tmp.iterdir()) == []


def test_chunk_signatures_match_awss_published_example():
    key = sigv4.signing_key(AWS_SECRET, "20130524", "us-east-1", "s3")
    signed = sigv4.Signed(
        AWS_KEY, sigv4.STREAMING_SIGNED, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", key, AWS_SEED
    )
    previous = AWS_SEED
    for data, expected in AWS_CHUNKS:
        previous = sigv4.chunk_signature(signed, previous, hashlib.sha256(data).hexdigest())
        assert previous == expected
