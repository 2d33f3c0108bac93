"""Byte counts as people read them, and limits that never read the same as the size they refuse."""

from __future__ import annotations

import pytest

from mlcore.sizes import human_bytes, over_limit


@pytest.mark.parametrize(
    "n, shown",
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KB"),
        (1536, "1.5 KB"),
        (20_000, "19.5 KB"),
        (200_000, "195 KB"),
        (2 * 1024 * 1024, "2 MB"),
        (8 * 1024 * 1024, "8 MB"),
        (10**9, "954 MB"),
        (1024 * 1024 - 10, "1 MB"),
        (5 * 1024**3, "5 GB"),
    ],
)
def test_human_bytes(n, shown):
    assert human_bytes(n) == shown


def test_over_limit_says_both_in_words():
    assert over_limit(9 * 1024 * 1024, 8 * 1024 * 1024) == "9 MB, more than the limit of 8 MB"
    assert over_limit(70, 50) == "70 bytes, more than the limit of 50 bytes"


def test_over_limit_adds_exact_bytes_where_rounding_would_hide_the_difference():
    assert (
        over_limit(8 * 1024 * 1024 + 1, 8 * 1024 * 1024)
        == "8 MB (8388609 bytes), more than the limit of 8 MB (8388608 bytes)"
    )
