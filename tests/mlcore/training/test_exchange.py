"""The exchange's gets against the embedded S3, which waits for a key asked for, and an endpoint that does not."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from mlcore.storage import Storage
from mlcore.training.exchange import Exchange, Timer


def _until(predicate, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_a_peers_update_put_while_gathering_costs_no_miss(storage):
    exchange = Exchange(storage, Timer())
    try:
        with ThreadPoolExecutor(1) as pool:
            gathering = pool.submit(exchange.gather, ["u/1"], 30.0)
            storage.put_bytes("u/1", b"peer's update")
            assert gathering.result(timeout=30) == {"u/1": b"peer's update"}
        assert exchange.timer.misses == 0 and exchange._long_poll
    finally:
        exchange.close()


def test_an_endpoint_that_answers_at_once_is_polled(storage_config, storage):
    # boto3 alone sends no wait, as S3 would not honour one: the first miss tells the exchange to poll
    exchange = Exchange(Storage(storage_config, signed_path=False), Timer())
    try:
        with ThreadPoolExecutor(1) as pool:
            gathering = pool.submit(exchange.gather, ["u/2"], 30.0)
            _until(lambda: exchange.timer.misses > 0, "a miss")
            storage.put_bytes("u/2", b"later")
            assert gathering.result(timeout=30) == {"u/2": b"later"}
        assert not exchange._long_poll
    finally:
        exchange.close()
