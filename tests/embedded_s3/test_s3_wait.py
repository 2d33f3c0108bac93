"""A GET that asks to wait for a key not there yet (`x-deployer-wait-ms`): answered by the put, else NoSuchKey.

The store's wait is driven in this process, so the test can see the reader registered before it
puts; the HTTP form runs against the session's server with the storage client that sends it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from embedded_s3.store import Meta, ObjectStore, Payload
from mlcore.errors import ObjectNotFoundError, StorageError
from mlcore.storage import WAIT_HEADER


def _until(predicate, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_a_put_wakes_every_reader_waiting_for_its_key_and_no_other(tmp_path):
    store = ObjectStore(tmp_path)
    store.create_bucket("wait")
    with ThreadPoolExecutor(3) as pool:
        readers = [pool.submit(store.wait_for, "wait", "k", 30.0) for _ in range(2)]
        other = pool.submit(store.wait_for, "wait", "other", 0.5)
        _until(lambda: store._arrivals.get(("wait", "k"), (None, 0))[1] == 2, "both readers registered")
        store.put("wait", "k", Payload([b"v"], None), Meta())
        assert [r.result(timeout=10) for r in readers] == [True, True]
        assert other.result(timeout=10) is False
    assert store._arrivals == {}  # nothing kept for keys nobody waits for


def test_a_key_already_there_does_not_wait(tmp_path):
    store = ObjectStore(tmp_path)
    store.create_bucket("wait")
    store.put("wait", "k", Payload([b"v"], None), Meta())
    assert store.wait_for("wait", "k", 30.0) is True


def test_a_waiting_get_is_answered_with_what_is_put_meanwhile(storage):
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(storage.get_bytes, "late", wait_s=1.5)
        storage.put_bytes("late", b"arrived")
        assert reading.result(timeout=30) == b"arrived"


def test_a_key_never_put_is_still_not_found_after_the_wait(storage):
    with pytest.raises(ObjectNotFoundError, match="NoSuchKey"):
        storage.get_bytes("never", wait_s=0.05)


@pytest.mark.parametrize("value", ["soon", "1.5", "", "0x10"])
def test_a_wait_that_is_no_number_of_milliseconds_is_refused(storage, value):
    with pytest.raises(StorageError, match=f"InvalidArgument.*{WAIT_HEADER}"):
        storage._request("get", "GET", "k", headers={WAIT_HEADER: value})
