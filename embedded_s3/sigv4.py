"""AWS Signature Version 4 verification, as AWS S3 checks it: headers, presigned URLs and signed aws-chunked bodies.

Both forms that boto3 and aws-cli send are accepted: the Authorization header and the
presigned query string. A request with neither is refused with AccessDenied, an unknown
key with InvalidAccessKeyId, a wrong signature with SignatureDoesNotMatch. The canonical
request is built from the bytes on the wire (header values arrive latin-1 decoded, as WSGI
hands them over), so metadata in UTF-8 is signed as the client signed it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

from .errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
MAX_SKEW_S = 15 * 60
MAX_PRESIGNED_S = 7 * 24 * 3600  # AWS's cap on X-Amz-Expires
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def canonical_query(raw_query: str, drop: str | None = None) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        k, _, v = part.partition("=")
        k, v = urllib.parse.unquote(k), urllib.parse.unquote(v)
        if k != drop:
            pairs.append((_quote(k), _quote(v)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


@functools.lru_cache(maxsize=64)  # one per key and day, not four HMACs per request
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_amz_date(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 basic time (20130524T000000Z), as cheaply as it can be read."""
    if _AMZ_DATE.fullmatch(value):
        try:
            fields = [int(value[a:b]) for a, b in ((0, 4), (4, 6), (6, 8), (9, 11), (11, 13), (13, 15))]
            dt.datetime(*fields)  # refuses a 31st of February, as strptime would
            return calendar.timegm((*fields, 0, 0, 0))
        except ValueError:
            pass
    raise S3Error(403, "AccessDenied", f"X-Amz-Date {value[:40]!r} is not a valid ISO 8601 basic time")


class _Claim(NamedTuple):
    """What a request says it signed, from its Authorization header or its presigned query."""

    credential: str
    signed_headers: str
    signature: str
    amz_date: str
    payload_hash: str
    query: str  # the canonical query string
    expires: int | None  # a presigned URL's X-Amz-Expires; None for a signed header


class Signed(NamedTuple):
    """A verified request: who signed it, what payload it promised, and what its chunk signatures chain from."""

    access_key: str
    payload_hash: str
    amz_date: str
    scope: str
    key: bytes  # the signing key, for the chunk signatures of a STREAMING-AWS4-HMAC-SHA256 body
    signature: str  # the seed signature those chunks chain from


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: float | None = None,
) -> Signed:
    """Checks the request's signature.

    `headers` maps lower-case names to values (latin-1 decoded); `credentials` access key to
    secret key. Raises S3Error: 403 AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch,
    RequestTimeTooSkewed; 400 AuthorizationQueryParametersError or InvalidRequest for a
    malformed signature.
    """
    now = time.time() if now is None else now
    claim = _read_claim(raw_query, headers)
    access_key, _, scope = claim.credential.partition("/")
    secret = credentials.get(access_key)
    if secret is None:
        raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    _check_time(claim.amz_date, scope, now, claim.expires)
    names = claim.signed_headers.split(";")
    if "host" not in names:
        raise S3Error(403, "AccessDenied", "the Host header must be signed")
    date, region, service, _ = (scope.split("/") + ["", "", "", ""])[:4]
    key = signing_key(secret, date, region, service)
    canonical = b"\n".join(
        [
            method.encode(),
            (raw_path or "/").encode("latin-1"),
            claim.query.encode(),
            b"".join(
                n.encode() + b":" + b" ".join(headers.get(n, "").encode("latin-1").split()) + b"\n" for n in names
            ),
            claim.signed_headers.encode(),
            claim.payload_hash.encode(),
        ]
    )
    expected = _sign(key, "\n".join([ALGORITHM, claim.amz_date, scope, hashlib.sha256(canonical).hexdigest()]))
    if not hmac.compare_digest(expected, claim.signature):
        raise signature_mismatch()
    return Signed(access_key, claim.payload_hash, claim.amz_date, scope, key, claim.signature)


def signature_mismatch() -> S3Error:
    return S3Error(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def chunk_signature(signed: Signed, previous: str, chunk_sha256: str) -> str:
    """The signature of one chunk of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, chained from `previous`."""
    text = "\n".join([ALGORITHM + "-PAYLOAD", signed.amz_date, signed.scope, previous, EMPTY_SHA256, chunk_sha256])
    return _sign(signed.key, text)


def trailer_signature(signed: Signed, previous: str, trailer: bytes) -> str:
    """The signature of the trailing headers of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER body."""
    text = "\n".join(
        [ALGORITHM + "-TRAILER", signed.amz_date, signed.scope, previous, hashlib.sha256(trailer).hexdigest()]
    )
    return _sign(signed.key, text)


def _read_claim(raw_query: str, headers: Mapping[str, str]) -> _Claim:
    """Raises S3Error for an unsigned request or one signed other than with Signature Version 4."""
    auth = headers.get("authorization")
    params = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
    if auth:
        match = _AUTH_RE.match(auth)
        if not match:
            raise S3Error(403, "AccessDenied", "only AWS Signature Version 4 (AWS4-HMAC-SHA256) is accepted")
        credential, signed_headers, signature = match.groups()
        amz_date = headers.get("x-amz-date", "")
        if not amz_date:
            raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        payload_hash = headers.get("x-amz-content-sha256", "")
        if not payload_hash:
            raise S3Error(400, "InvalidRequest", "x-amz-content-sha256 is required with Signature Version 4")
        if payload_hash not in (UNSIGNED, *STREAMING) and not _HEX64.fullmatch(payload_hash):
            raise S3Error(
                400,
                "InvalidArgument",
                f"x-amz-content-sha256 must be a SHA-256 in hex or {UNSIGNED}: {payload_hash[:80]!r}",
            )
        return _Claim(credential, signed_headers, signature, amz_date, payload_hash, canonical_query(raw_query), None)
    if "X-Amz-Signature" in params:
        if params.get("X-Amz-Algorithm", [""])[0] != ALGORITHM:
            raise S3Error(403, "AccessDenied", "only AWS4-HMAC-SHA256 presigned URLs are accepted")
        return _Claim(
            credential=params.get("X-Amz-Credential", [""])[0],
            signed_headers=params.get("X-Amz-SignedHeaders", [""])[0],
            signature=params["X-Amz-Signature"][0],
            amz_date=params.get("X-Amz-Date", [""])[0],
            payload_hash=UNSIGNED,
            query=canonical_query(raw_query, drop="X-Amz-Signature"),
            expires=_presigned_expiry(params.get("X-Amz-Expires", [""])[0]),
        )
    if "AWSAccessKeyId" in params:
        raise S3Error(
            403, "AccessDenied", "only Signature Version 4 is accepted; presign with signature_version='s3v4'"
        )
    raise S3Error(
        403,
        "AccessDenied",
        "Access Denied: the request is not signed; sign it with the keys `deployer storage env` prints",
    )


def _presigned_expiry(value: str) -> int:
    try:
        expires = int(value)
    except ValueError:
        raise S3Error(
            400, "AuthorizationQueryParametersError", f"X-Amz-Expires should be a number of seconds: {value[:40]!r}"
        ) from None
    if not 0 < expires <= MAX_PRESIGNED_S:
        raise S3Error(
            403,
            "AccessDenied",
            f"X-Amz-Expires must be between 1 and {MAX_PRESIGNED_S} seconds (a week); it is {expires}",
        )
    return expires


def _check_time(amz_date: str, scope: str, now: float, expires: int | None) -> None:
    signed_at = _parse_amz_date(amz_date)
    if not scope.startswith(amz_date[:8] + "/") or not scope.endswith("/aws4_request"):
        raise S3Error(403, "AccessDenied", f"credential scope {scope!r} does not match the request date")
    if expires is None:
        if abs(now - signed_at) > MAX_SKEW_S:
            raise S3Error(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            )
        return
    if signed_at - now > MAX_SKEW_S:
        raise S3Error(403, "AccessDenied", "Request is not valid yet: its X-Amz-Date is in the future")
    if now > signed_at + expires:
        raise S3Error(403, "AccessDenied", "Request has expired")
