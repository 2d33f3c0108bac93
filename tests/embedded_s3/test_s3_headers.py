"""Header names reach the S3 application as they arrived: one with "_" vanished on the way, failing its signature."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_keys = itertools.count()
# metadata names as S3 takes them: any HTTP token characters, "_" and "." included
NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, value=st.from_regex(r"[A-Za-z0-9 _.-]{0,20}", fullmatch=True))
def test_signed_metadata_of_any_token_name_round_trips(s3c, bucket, name, value):
    key = f"meta/{next(_keys)}"
    s3c.put_object(Bucket=bucket, Key=key, Body=b"x", Metadata={name: value})
    assert s3c.head_object(Bucket=bucket, Key=key)["Metadata"] == {name: value.strip()}
