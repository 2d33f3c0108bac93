"""GET, PUT and HEAD of one object as single SigV4-signed HTTP requests: the exchange's hot path.

boto3 spends 1.4-1.8 ms of CPU on each such call (its event hooks, request building, a
checksum of the body, response parsing, an `Expect: 100-continue` round trip before each
PUT's body), more than the endpoint spends serving it. These three calls need none of that:
the request is a path, a few headers and the body, signed with Signature Version 4 as AWS
S3 checks it (every header sent is signed, the payload's SHA-256 in the signature unless the
body carries its own digest), on a
connection per thread that stays open between calls. The signing key is derived once per
day. Everything else (listing, deleting, buckets) stays with boto3.

A dropped keep-alive connection and S3's 500/503 answers are retried, as boto3's standard
mode does; errors come back as the status and S3's error code, for mlcore.storage to map.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import random
import re
import socket
import threading
import time
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ATTEMPTS = 3  # as boto3's standard retry mode
_RETRY_STATUS = (500, 502, 503, 504)
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,400})</Message>")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SignedHTTPError(Exception):
    """A request that got no answer after its retries (the endpoint unreachable, the connection dropped)."""


class Response:
    """An answer; `code` and `message` are S3's error code and message (the status alone for a HEAD)."""

    __slots__ = ("status", "headers", "body", "code", "message")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.code = self.message = ""
        if status >= 300:
            code, message = _CODE.search(body), _MESSAGE.search(body)
            self.code = code.group(1).decode("utf-8", "replace") if code else str(status)
            self.message = message.group(1).decode("utf-8", "replace") if message else ""


class SignedHTTP:
    """Signed single-object requests to one S3 endpoint, path-style (as mlcore.storage's boto3 client)."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str,
        access_key: str,
        secret_key: str,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint_url or f"https://s3.{region}.amazonaws.com")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"S3 endpoint {endpoint_url!r} is not an http(s) URL")
        self.https = url.scheme == "https"
        # where nobody can change a body on its way: what an unsigned payload needs
        self.private = self.https or url.hostname in ("localhost", "::1") or url.hostname.startswith("127.")
        self.netloc = url.netloc
        self.base_path = url.path.rstrip("/")
        self.region, self.access_key, self._secret = region, access_key, secret_key
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self._local = threading.local()
        self._keys: dict[str, bytes] = {}

    def request(
        self,
        method: str,
        bucket: str,
        key: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        sign_payload: bool = True,
    ) -> Response:
        """Raises SignedHTTPError when no answer came after ATTEMPTS tries; an S3 error is a Response.

        `sign_payload=False` sends UNSIGNED-PAYLOAD (as boto3 does over HTTPS): neither side hashes
        the body, for bodies that carry a digest their readers check.
        """
        path = self.base_path + "/" + _quote(bucket) + "/" + _quote(key)
        if not body:
            payload_hash = _EMPTY_SHA256
        else:
            payload_hash = hashlib.sha256(body).hexdigest() if sign_payload else UNSIGNED_PAYLOAD
        for attempt in range(ATTEMPTS):
            signed = self._sign(method, path, payload_hash, headers or {})
            if body or method == "PUT":
                signed["content-length"] = str(len(body))
            try:
                response = self._send(method, path, body, signed)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if attempt + 1 == ATTEMPTS:
                    raise SignedHTTPError(f"{method} {path} at {self.netloc}: {exc}") from exc
                continue  # most often a kept-alive connection the server closed meanwhile
            if response.status not in _RETRY_STATUS or attempt + 1 == ATTEMPTS:
                return response
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self._drop()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.netloc, timeout=self.connect_timeout_s)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(self.read_timeout_s)
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Closes this thread's connection (the others close with their threads)."""
        self._drop()

    def _sign(self, method: str, path: str, payload_hash: str, extra: dict[str, str]) -> dict[str, str]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        headers = {k.lower(): " ".join(v.split()) for k, v in extra.items()}
        headers.update({"host": self.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date})
        names = sorted(headers)
        signed_names = ";".join(names)
        canonical = "\n".join(
            [method, path, "", "".join(f"{n}:{headers[n]}\n" for n in names), signed_names, payload_hash]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        text = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(day), text.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"{ALGORITHM} Credential={self.access_key}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
        )
        return headers

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = ("AWS4" + self._secret).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}
        return key


def _quote(text: str) -> str:
    """A path segment as SigV4 encodes it for S3: every byte but the unreserved ones and '/', once."""
    return urllib.parse.quote(text, safe="/-_.~")
