"""A server that cannot be held open or made to fail: deadlines, a connection bound, and every bad input a 4xx.

The deadline tests run the real application and HTTP server in this process with deadlines of
a second (the process defaults are 30 s), talking raw HTTP over loopback sockets; the
generated-input test signs random requests with botocore against the session's server process.
"""

from __future__ import annotations

import os
import socket
import string
import time
import urllib.parse

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TIMEOUT = 10


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _signed_head(server, method: str, path: str, headers: dict, payload_hash: str = "UNSIGNED-PAYLOAD") -> bytes:
    """The head of a request signed with the test server's keys (the body follows on the socket as the test likes)."""
    url = f"http://127.0.0.1:{server.port}{path}"
    request = AWSRequest(method, url, headers=headers)
    request.headers["X-Amz-Content-SHA256"] = payload_hash
    SigV4Auth(Credentials("AKTEST", "secret-test-key"), "s3", "us-east-1").add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_sockets_that_send_half_a_request_are_answered_408_and_closed(s3_with_limits):
    server, _ = s3_with_limits(header_timeout_s=1.0)
    socks = [_connect(server) for _ in range(100)]
    for sock in socks:
        sock.sendall(b"GET /bucket/key HTT")
    answers = [_read_all(sock) for sock in socks]  # each ends: the server closed it
    for sock in socks:
        sock.close()
    assert all(a.startswith(b"HTTP/1.1 400") and b"<Code>RequestTimeout</Code>" in a for a in answers), answers[0]
    deadline = time.monotonic() + TIMEOUT  # each connection's thread forgets it just after closing it
    while server.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.connections == 0


def test_a_put_that_stalls_mid_body_is_cut_off_and_leaves_no_temp_file(s3_with_limits, tmp_path):
    server, client = s3_with_limits(body_timeout_s=1.0)
    client.create_bucket(Bucket="stall")
    head = _signed_head(server, "PUT", "/stall/big", {"Content-Length": str(5 * 10**9)})
    with _connect(server) as sock:
        sock.sendall(head + b"x" * (1 << 20))
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"RequestTimeout" in answer
    assert list((tmp_path / "objects-0" / "tmp").iterdir()) == []
    assert "Contents" not in client.list_objects_v2(Bucket="stall")


def test_a_body_that_dribbles_below_the_minimum_rate_is_cut_off(s3_with_limits):
    server, client = s3_with_limits(body_timeout_s=1.0, min_body_rate=10_000)
    client.create_bucket(Bucket="slow")
    head = _signed_head(server, "PUT", "/slow/k", {"Content-Length": "100000"})
    with _connect(server) as sock:
        sock.sendall(head)
        sent, answer = 0, b""
        try:
            while sent < 100000:  # 20 bytes every 50 ms: 400 B/s, never a gap as long as the deadline
                sock.sendall(b"y" * 20)
                sent += 20
                ready = socket.socket.recv(sock, 65536, socket.MSG_DONTWAIT) if _readable(sock, 0.05) else b""
                if ready:
                    answer = ready + _read_all(sock)
                    break
        except (BrokenPipeError, ConnectionResetError):
            answer = answer or _read_all(sock)
    assert b"RequestTimeout" in answer and sent < 100000


def _readable(sock: socket.socket, wait_s: float) -> bool:
    import select

    return bool(select.select([sock], [], [], wait_s)[0])


def test_connections_beyond_the_bound_get_503_slowdown(s3_with_limits):
    server, _ = s3_with_limits(max_connections=3)
    held = [_connect(server) for _ in range(3)]
    for sock in held:  # each is served (a 403 for no signature), so each is a live connection
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 403")
    with _connect(server) as extra:
        answer = _read_all(extra)
    assert answer.startswith(b"HTTP/1.1 503") and b"<Code>SlowDown</Code>" in answer
    for sock in held:
        sock.close()


def test_100_continue_comes_only_after_the_signature_holds(s3_with_limits):
    server, client = s3_with_limits()
    client.create_bucket(Bucket="cont")
    with _connect(server) as sock:
        sock.sendall(b"PUT /cont/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 403"), first  # refused before the body was asked for
    head = _signed_head(server, "PUT", "/cont/k", {"Content-Length": "5", "Expect": "100-continue"})
    with _connect(server) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert client.get_object(Bucket="cont", Key="k")["Body"].read() == b"hello"


def test_a_negative_content_length_stores_nothing(s3_with_limits):
    server, client = s3_with_limits()
    client.create_bucket(Bucket="neg")
    head = _signed_head(server, "PUT", "/neg/k", {"Content-Length": "-5"})
    with _connect(server) as sock:
        sock.sendall(head)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400")
    assert "Contents" not in client.list_objects_v2(Bucket="neg")


def test_presigned_urls_live_at_most_a_week_and_never_start_in_the_future(s3_with_limits):
    server, client = s3_with_limits()
    client.create_bucket(Bucket="pre")
    client.put_object(Bucket="pre", Key="k", Body=b"x")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "pre", "Key": "k"}, ExpiresIn=604800)
    first = requests.get(url, timeout=TIMEOUT)
    assert first.content == b"x", (url, first.text)
    too_long = url.replace("X-Amz-Expires=604800", "X-Amz-Expires=604801")
    assert requests.get(too_long, timeout=TIMEOUT).status_code == 403
    malformed = requests.get(url.replace("X-Amz-Expires=604800", "X-Amz-Expires=abc"), timeout=TIMEOUT)
    assert malformed.status_code == 400 and "AuthorizationQueryParametersError" in malformed.text
    server.app.clock = lambda: time.time() - 3600  # the server an hour behind: the URL is dated in its future
    early = requests.get(url, timeout=TIMEOUT)
    assert early.status_code == 403 and "not valid yet" in early.text
    server.app.clock = lambda: time.time() + 604801  # and a week and a second ahead: expired
    assert requests.get(url, timeout=TIMEOUT).status_code == 403


# generated inputs: whatever a signed client sends, the answer is never a 5xx
_PARAMS = [
    "list-type",
    "max-keys",
    "prefix",
    "delimiter",
    "marker",
    "start-after",
    "continuation-token",
    "encoding-type",
    "fetch-owner",
    "uploads",
    "uploadId",
    "partNumber",
    "max-parts",
    "part-number-marker",
    "versionId",
    "versions",
    "key-marker",
    "max-uploads",
    "upload-id-marker",
    "location",
    "delete",
    "attributes",
    "acl",
    "tagging",
    "response-content-type",
    "max-buckets",
]
_HEADERS = [
    "Range",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "Content-MD5",
    "x-amz-checksum-crc32",
    "x-amz-checksum-sha256",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-algorithm",
    "x-amz-checksum-type",
    "x-amz-checksum-mode",
    "x-amz-copy-source",
    "x-amz-copy-source-range",
    "x-amz-metadata-directive",
    "x-amz-storage-class",
    "x-amz-acl",
    "x-amz-object-attributes",
    "x-amz-max-parts",
    "x-amz-trailer",
    "x-amz-decoded-content-length",
    "Content-Encoding",
    "x-amz-meta-m",
    "Content-Type",
]
_text = st.text(alphabet=string.printable + "é模\x00", max_size=30)
_values = st.one_of(
    _text,
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["", "*", "bytes=0-", "bytes=-0", "bytes=5-1", "2", "ENABLED", "CRC32", "aws-chunked", "COPY"]),
)


@settings(
    max_examples=int(os.environ.get("S3_FUZZ_EXAMPLES", 300)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
    key=st.sampled_from(["", "k", "dir/k", "%C3%A9", "%FF", "a%2Fb", "..", "k" * 1100]),
    query=st.dictionaries(st.sampled_from(_PARAMS), _values, max_size=4),
    headers=st.dictionaries(
        st.sampled_from(_HEADERS),
        _values.filter(lambda v: v == v.strip() and not any(c in v for c in "\x00\r\n\x0b\x0c")),
        max_size=4,
    ),
    body=st.binary(max_size=64),
)
def test_no_signed_request_makes_the_server_fail(s3_server, method, key, query, headers, body):
    path = f"/fuzz-bucket/{key}" if key else "/fuzz-bucket"
    url = s3_server.endpoint_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = AWSRequest(
        method, url, data=body, headers={k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
    )
    request.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    SigV4Auth(Credentials(s3_server.access_key, s3_server.secret_key), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    resp = requests.request(method, prepared.url, headers=dict(prepared.headers.items()), data=body, timeout=TIMEOUT)
    assert resp.status_code < 500 or resp.status_code == 501, (resp.status_code, resp.text[:300])


@pytest.fixture(scope="module", autouse=True)
def _fuzz_bucket(s3_server):
    from s3_clients import client_of

    c = client_of(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)
    try:
        c.create_bucket(Bucket="fuzz-bucket")
        c.put_object(Bucket="fuzz-bucket", Key="k", Body=b"0123456789")
    except Exception:
        pass
    yield
