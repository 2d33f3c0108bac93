"""deployer.target.resolve_storage: one rule for where every command's S3 is."""

from __future__ import annotations

from deployer.target import EMBEDDED, ENVIRONMENT, resolve_storage

EMBEDDED_ENV = {
    "S3_ENDPOINT_URL": "http://127.0.0.1:3234",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "ls",
    "S3_BUCKET": "deployer",
    "AWS_DEFAULT_REGION": "us-east-1",
}
USER_S3 = {
    "S3_ENDPOINT_URL": "https://minio.example",
    "AWS_ACCESS_KEY_ID": "user",
    "AWS_SECRET_ACCESS_KEY": "us",
    "S3_BUCKET": "mine",
}


def test_an_exported_endpoint_wins_over_the_embedded_s3_whole():
    storage = resolve_storage(EMBEDDED_ENV, USER_S3)
    assert storage.source == ENVIRONMENT and storage.env == {}
    assert (storage.config.endpoint_url, storage.config.access_key, storage.config.bucket) == (
        "https://minio.example",
        "user",
        "mine",
    )


def test_keys_without_an_endpoint_do_not_reach_the_embedded_s3():
    storage = resolve_storage(
        EMBEDDED_ENV, {"AWS_ACCESS_KEY_ID": "aws", "AWS_SECRET_ACCESS_KEY": "x", "S3_BUCKET": "b"}
    )
    assert storage.source == EMBEDDED
    assert (storage.config.endpoint_url, storage.config.access_key, storage.config.bucket) == (
        "http://127.0.0.1:3234",
        "local",
        "b",
    )


def test_manifests_see_the_embedded_settings_over_the_users_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws")
    monkeypatch.setenv("DEPLOYER_RUNTIME_IMAGE", "img")
    env = resolve_storage(EMBEDDED_ENV, {}).manifest_env()
    assert env["AWS_ACCESS_KEY_ID"] == "local" and env["DEPLOYER_RUNTIME_IMAGE"] == "img"


def test_without_the_local_platform_the_environment_is_the_storage():
    storage = resolve_storage(None, {"S3_BUCKET": "b"})
    assert storage.source == ENVIRONMENT and storage.config.endpoint_url is None and storage.config.bucket == "b"
