"""mlcore.storage, the project's S3 access, against the session's embedded S3."""

import pytest
import torch

from mlcore.errors import ObjectNotFoundError, StorageError
from mlcore.storage import Storage, StorageConfig


def test_round_trip_bytes_json_state(storage):
    storage.put_bytes("a/b.bin", b"\x00\x01")
    storage.put_json("a/c.json", {"x": [1, 2]})
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    n = storage.put_state("a/model", state)
    assert n > 0
    assert storage.get_bytes("a/b.bin") == b"\x00\x01"
    assert storage.get_json("a/c.json") == {"x": [1, 2]}
    assert torch.equal(storage.get_state("a/model")["w"], state["w"])
    assert sorted(storage.list_keys("a/")) == ["a/b.bin", "a/c.json", "a/model"]
    assert storage.exists("a/model") and not storage.exists("a/nope")
    assert storage.delete_prefix("a/") == 3
    assert list(storage.list_keys("a/")) == []


def test_missing_key_names_bucket_and_endpoint(storage):
    with pytest.raises(ObjectNotFoundError, match=storage.bucket):
        storage.get_bytes("missing")


def test_unreachable_endpoint_is_a_clear_error():
    s = Storage(StorageConfig(endpoint_url="http://127.0.0.1:9", bucket="abc", access_key="a", secret_key="b"))
    with pytest.raises(StorageError, match="127.0.0.1:9"):
        s.ensure_bucket()


def test_params_round_trip(storage_config):
    assert StorageConfig.from_params(storage_config.as_params()) == storage_config


def test_short_bucket_rejected():
    with pytest.raises(StorageError, match="at least 3"):
        Storage(StorageConfig(bucket="ab"))
