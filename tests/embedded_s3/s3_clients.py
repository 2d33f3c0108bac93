"""Helpers the embedded S3's tests share: a boto3 client of an endpoint, and the status and code of a refusal."""

from __future__ import annotations

import boto3
from botocore.config import Config


def client_of(endpoint_url: str, access_key: str, secret_key: str, **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **{"signature_version": "s3v4", **config}
        ),
    )


def error_of(info) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a botocore ClientError caught by pytest.raises."""
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]
