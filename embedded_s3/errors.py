"""The embedded S3's exceptions.

EmbeddedS3Error
 └── S3Error        an answer in S3's error dialect: HTTP status, S3 code, message (and extra headers)
"""

from __future__ import annotations


class EmbeddedS3Error(Exception):
    """Root of the embedded S3's errors."""


class S3Error(EmbeddedS3Error):
    """An S3 error answer: HTTP status, S3 error code, message; `headers` go out with it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def no_bucket(name: str) -> S3Error:
    return S3Error(404, "NoSuchBucket", f"The specified bucket does not exist: {name}")


def no_key(key: str) -> S3Error:
    return S3Error(404, "NoSuchKey", f"The specified key does not exist: {key}")


def no_upload(upload_id: str) -> S3Error:
    return S3Error(404, "NoSuchUpload", f"The specified multipart upload does not exist: {upload_id}")


def invalid_argument(message: str) -> S3Error:
    return S3Error(400, "InvalidArgument", message)


def not_implemented(what: str) -> S3Error:
    return S3Error(501, "NotImplemented", f"{what} is not implemented by the embedded S3")


def bad_digest(algorithm: str) -> S3Error:
    return S3Error(400, "BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")


def precondition_failed(condition: str) -> S3Error:
    return S3Error(
        412, "PreconditionFailed", f"At least one of the pre-conditions you specified did not hold: {condition}"
    )
