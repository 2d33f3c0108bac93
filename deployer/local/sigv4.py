"""AWS Signature Version 4 verification for the embedded S3, as AWS S3 and MinIO check it.

Both forms that boto3 and aws-cli send are accepted: the Authorization header and the
presigned query string. A request with neither is refused with AccessDenied, an
unknown key with InvalidAccessKeyId, a wrong signature with SignatureDoesNotMatch.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

from .objectstore import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW_S = 15 * 60
_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)")


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


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_amz_date(value: str) -> float:
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise S3Error(403, "AccessDenied", f"X-Amz-Date {value!r} is not a valid ISO 8601 basic time") from None


class _Signature(NamedTuple):
    """What a request says it signed, from its Authorization header or its presigned query."""

    credential: str
    signed_headers: str
    signature: str
    amz_date: str
    payload_hash: str
    query: str  # the canonical query string
    expires: int | None  # a presigned URL's X-Amz-Expires; None for a signed header


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: float | None = None,
) -> str:
    """Checks the request's signature; returns the payload hash the client signed (or UNSIGNED-PAYLOAD).

    `headers` maps lower-case names to values; `credentials` access key to secret key.
    Raises S3Error (403) with AccessDenied, InvalidAccessKeyId or SignatureDoesNotMatch.
    """
    now = time.time() if now is None else now
    signed = _read_signature(raw_query, headers)
    access_key, _, scope = signed.credential.partition("/")
    secret = credentials.get(access_key)
    if secret is None:
        raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    _check_time(signed.amz_date, scope, now, signed.expires)
    names = signed.signed_headers.split(";")
    if "host" not in names:
        raise S3Error(403, "AccessDenied", "the Host header must be signed")
    expected = _expected_signature(method, raw_path, headers, names, signed, secret, scope)
    if not hmac.compare_digest(expected, signed.signature):
        raise S3Error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the "
            "signature you provided. Check your key and signing method.",
        )
    return signed.payload_hash


def _read_signature(raw_query: str, headers: Mapping[str, str]) -> _Signature:
    """Raises S3Error for an unsigned request or one signed other than with Signature Version 4."""
    auth = headers.get("authorization")
    params = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
    if auth:
        match = _AUTH_RE.match(auth)
        if not match:
            raise S3Error(403, "AccessDenied", "only AWS Signature Version 4 (AWS4-HMAC-SHA256) is accepted")
        credential, signed_headers, signature = match.groups()
        amz_date = headers.get("x-amz-date", "")
        payload_hash = headers.get("x-amz-content-sha256", "")
        if not payload_hash:
            raise S3Error(400, "InvalidRequest", "x-amz-content-sha256 is required with Signature Version 4")
        return _Signature(
            credential, signed_headers, signature, amz_date, payload_hash, canonical_query(raw_query), None
        )
    if "X-Amz-Signature" in params:
        if params.get("X-Amz-Algorithm", [""])[0] != ALGORITHM:
            raise S3Error(403, "AccessDenied", "only AWS4-HMAC-SHA256 presigned URLs are accepted")
        return _Signature(
            credential=params.get("X-Amz-Credential", [""])[0],
            signed_headers=params.get("X-Amz-SignedHeaders", [""])[0],
            signature=params["X-Amz-Signature"][0],
            amz_date=params.get("X-Amz-Date", [""])[0],
            payload_hash=UNSIGNED,
            query=canonical_query(raw_query, drop="X-Amz-Signature"),
            expires=int(params.get("X-Amz-Expires", ["0"])[0] or 0),
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


def _expected_signature(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    names: list[str],
    signed: _Signature,
    secret: str,
    scope: str,
) -> str:
    """The signature the client should have sent, computed as AWS does from the canonical request."""
    canonical = "\n".join(
        [
            method,
            raw_path or "/",
            signed.query,
            "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names),
            signed.signed_headers,
            signed.payload_hash,
        ]
    )
    to_sign = "\n".join([ALGORITHM, signed.amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = (scope.split("/") + ["", "", "", ""])[:4]
    return hmac.new(signing_key(secret, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()


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
    elif now > signed_at + expires:
        raise S3Error(403, "AccessDenied", "Request has expired")
