"""A bucket's listing comes from an index read once, not from the folder on every page, and always agrees with it.

The index is checked against what the folder holds after generated puts and deletes
(keys of every shape, long ones stored under hashed names included), from a store that
lists before, between and after them, and from a fresh store that reads the folder anew.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedded_s3 import store as store_module
from embedded_s3.store import Meta, ObjectStore, Payload

BUCKET = "listing"


def _put(store: ObjectStore, key: str) -> None:
    store.put(BUCKET, key, Payload([b"x"]), Meta(storage_class="REDUCED_REDUNDANCY"))


def _listed(store: ObjectStore, prefix: str = "", after: str = "") -> list[str]:
    return [key for key, _ in store.keys(BUCKET, prefix, after)]


def test_start_and_pages_do_not_read_the_bucket_folder(tmp_path, monkeypatch):
    store = ObjectStore(tmp_path)
    store.create_bucket(BUCKET)
    keys = sorted(f"k/{i:05d}" for i in range(2500))
    for key in keys:
        _put(store, key)
    reads: list[str] = []
    real_listdir = os.listdir

    def listdir(path):
        reads.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(store_module.os, "listdir", listdir)
    fresh = ObjectStore(tmp_path)  # as the server starts on a full bucket
    assert not [r for r in reads if BUCKET in r], "start-up read the bucket's keys"
    assert _listed(fresh) == keys  # the first listing reads the folder, once
    assert _listed(fresh, "k/", keys[1200]) == keys[1201:]
    _put(fresh, "k/99999")
    fresh.delete(BUCKET, keys[0])
    assert _listed(fresh, "k/0")[:2] == keys[1:3]
    assert _listed(fresh)[-1] == "k/99999"
    assert len([r for r in reads if r.endswith(BUCKET)]) == 1


KEYS = st.one_of(
    st.sampled_from(["a", "a/b", "a/c", "ab", "b", "z", "~", "é", "a" * 300, "a" * 301]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12),
)
OPS = st.lists(st.tuples(st.sampled_from(["put", "delete", "list"]), KEYS), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, prefix=st.sampled_from(["", "a", "a/", "é", "zz"]), after=st.sampled_from(["", "a", "a/b", "b"]))
def test_listing_agrees_with_the_folder_after_any_puts_and_deletes(tmp_path_factory, ops, prefix, after):
    root = tmp_path_factory.mktemp("s3")
    store = ObjectStore(root)
    store.create_bucket(BUCKET)
    for op, key in ops:
        if op == "put":
            _put(store, key)
        elif op == "delete":
            store.delete(BUCKET, key)
        else:
            _listed(store)
    held = sorted(_listed(ObjectStore(root)))  # a fresh store reads the folder
    assert _listed(store) == held
    assert _listed(store, prefix, after) == [k for k in held if k.startswith(prefix) and k > after]
