"""S3-compatible object storage through boto3: AWS S3, MinIO, Ceph or the embedded endpoint.

Actions get their settings from invocation parameters (`s3_endpoint`, `s3_bucket`,
`s3_access_key`, `s3_secret_key`, `s3_region`), the deployer from the environment
(`S3_ENDPOINT_URL`, `S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`), so no credential is ever written into code or manifests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ObjectNotFoundError, StorageError

DEFAULT_BUCKET = "deployer"
DEFAULT_REGION = "us-east-1"
WAIT_HEADER = "x-deployer-wait-ms"  # embedded_s3.app's, which S3 ignores
WEIGHTS_TYPE = "application/vnd.deployer.weights"  # mlcore.weights' format, which carries its own sha256
# each setting's name as an action parameter and in the environment
_PARAM_NAMES = {
    "bucket": "s3_bucket",
    "region": "s3_region",
    "endpoint_url": "s3_endpoint",
    "access_key": "s3_access_key",
    "secret_key": "s3_secret_key",
}
_ENV_NAMES = {
    "bucket": "S3_BUCKET",
    "region": "AWS_DEFAULT_REGION",
    "endpoint_url": "S3_ENDPOINT_URL",
    "access_key": "AWS_ACCESS_KEY_ID",
    "secret_key": "AWS_SECRET_ACCESS_KEY",
}
PARAM_KEYS = tuple(_PARAM_NAMES.values())


@dataclass(frozen=True)
class StorageConfig:
    endpoint_url: str | None = None
    bucket: str = DEFAULT_BUCKET
    access_key: str | None = None
    secret_key: str | None = None
    region: str = DEFAULT_REGION

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageConfig:
        env = os.environ if environ is None else environ
        return cls(**{field: env.get(name) or getattr(cls, field) for field, name in _ENV_NAMES.items()})

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> StorageConfig:
        """Settings an action received as parameters; missing ones fall back to the environment."""
        base = cls.from_env()
        return cls(**{field: params.get(name) or getattr(base, field) for field, name in _PARAM_NAMES.items()})

    def as_params(self) -> dict[str, str]:
        """The inverse of from_params, to pass storage settings on to an action."""
        return self._named(_PARAM_NAMES)

    def as_env(self) -> dict[str, str]:
        return self._named(_ENV_NAMES)

    def _named(self, names: dict[str, str]) -> dict[str, str]:
        """Bucket and region, and the other settings only when set (an empty one would override a default)."""
        return {
            name: getattr(self, field)
            for field, name in names.items()
            if field in ("bucket", "region") or getattr(self, field)
        }


class Storage:
    """One bucket. Keys are plain strings; values are bytes, JSON or named tensors (mlcore.weights)."""

    def __init__(self, config: StorageConfig, signed_path: bool = True) -> None:
        """`signed_path`: GET, PUT and HEAD of one object as lean signed requests (mlcore.signed_http), when the
        keys are given; else, and for everything else, boto3 (whose credential chain finds keys elsewhere too)."""
        import boto3
        from botocore.config import Config

        if len(config.bucket) < 3:
            raise StorageError(f"bucket name {config.bucket!r} is too short: S3 needs at least 3 characters")
        self.config = config
        self.bucket = config.bucket
        self._client = boto3.client(
            "s3",
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            region_name=config.region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"},
            ),
        )
        self._signed = None
        if signed_path and config.access_key and config.secret_key:
            from .signed_http import SignedHTTP

            self._signed = SignedHTTP(config.endpoint_url, config.region, config.access_key, config.secret_key)

    @property
    def client(self):
        return self._client

    def _where(self, key: str = "") -> str:
        endpoint = self.config.endpoint_url or "AWS S3"
        return f"s3://{self.bucket}/{key} at {endpoint}"

    def _call(self, what: str, key: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchBucket", "NotFound"):
                raise ObjectNotFoundError(f"{what} {self._where(key)}: not found ({code})") from exc
            raise StorageError(f"{what} {self._where(key)} failed: {code} {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what} {self._where(key)} failed: {exc}; check the endpoint and credentials") from exc

    def _request(self, what: str, method: str, key: str, body: bytes = b"", headers: dict | None = None, **kwargs):
        """One signed request, its S3 errors raised as _call raises boto3's."""
        from .signed_http import SignedHTTPError

        try:
            response = self._signed.request(method, self.bucket, key, body, headers, **kwargs)
        except SignedHTTPError as exc:
            raise StorageError(f"{what} {self._where(key)} failed: {exc}; check the endpoint and credentials") from exc
        if response.status == 404:
            raise ObjectNotFoundError(f"{what} {self._where(key)}: not found ({response.code})")
        if response.status >= 300:
            raise StorageError(f"{what} {self._where(key)} failed: {response.code} {response.message}")
        return response

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError:
            pass
        except Exception as exc:
            raise StorageError(f"cannot reach {self._where()}: {exc}") from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.config.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
        try:
            self._call("create bucket", "", self._client.create_bucket, **kwargs)
        except StorageError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", storage_class: str | None = None
    ) -> None:
        """`storage_class` REDUCED_REDUNDANCY marks reproducible data that need not survive a power loss.

        Data of WEIGHTS_TYPE carries a sha256 that every reader checks (mlcore.weights): over
        HTTPS or loopback its request signs UNSIGNED-PAYLOAD, and neither end hashes it again.
        """
        if self._signed is not None:
            headers = {"content-type": content_type}
            if storage_class:
                headers["x-amz-storage-class"] = storage_class
            unsigned = content_type == WEIGHTS_TYPE and self._signed.private
            self._request("put", "PUT", key, data, headers, sign_payload=not unsigned)
            return
        extra = {"StorageClass": storage_class} if storage_class else {}
        self._call(
            "put",
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            **extra,
        )

    def get_bytes(self, key: str, wait_s: float = 0.0) -> bytes:
        """`wait_s`: an endpoint that can (the embedded S3) answers a key not there yet once it is put, up to
        that long, instead of at once with not found (S3 answers at once)."""
        if self._signed is not None:
            headers = {WAIT_HEADER: str(round(wait_s * 1000))} if wait_s > 0 else None
            return self._request("get", "GET", key, headers=headers).body
        resp = self._call("get", key, self._client.get_object, Bucket=self.bucket, Key=key)
        return resp["Body"].read()

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value).encode(), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_state(self, key: str, state: dict) -> int:
        """Stores named tensors in the weights format (mlcore.weights); returns the bytes written."""
        from . import weights

        blob = weights.encode(state)
        self.put_bytes(key, blob, WEIGHTS_TYPE)
        return len(blob)

    def get_state(self, key: str) -> dict:
        """Named tensors stored by put_state. Raises DamagedError naming the key for bytes that are not whole."""
        from . import weights

        return weights.decode(self.get_bytes(key), self._where(key))[0]

    def exists(self, key: str) -> bool:
        try:
            if self._signed is not None:
                self._request("head", "HEAD", key)
            else:
                self._call("head", key, self._client.head_object, Bucket=self.bucket, Key=key)
            return True
        except ObjectNotFoundError:
            return False

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        for key, _, _ in self.list_objects(prefix):
            yield key

    def list_objects(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        """(key, size in bytes, last modified as a Unix time) of each object under `prefix`."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = self._call("list", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        for page in pages:
            for item in page.get("Contents", []):
                modified = item.get("LastModified")
                yield item["Key"], int(item.get("Size", 0)), modified.timestamp() if modified else 0.0

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object, Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.list_keys(prefix))
        self.delete_keys(keys, what=prefix)
        return len(keys)

    def delete_keys(self, keys: list[str], what: str | None = None) -> None:
        """Deletes known keys in batched requests (absent ones are not an error, as in S3)."""
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "delete",
                what or chunk[0]["Key"],
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": chunk, "Quiet": True},
            )


def storage_from_params(params: Mapping[str, Any]) -> Storage:
    return Storage(StorageConfig.from_params(params))


_warm_storages: dict[StorageConfig, Storage] = {}


def warm_storage(params: Mapping[str, Any]) -> Storage:
    """One boto3 client per settings per warm container: making one costs more than a step's S3 traffic."""
    config = StorageConfig.from_params(params)
    if config not in _warm_storages:
        _warm_storages[config] = Storage(config)
    return _warm_storages[config]
