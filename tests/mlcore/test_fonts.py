"""The font split: design groups, a fixed hash rule, and no held-out design on the training side."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore import fonts
from mlcore.fonts import (
    DESIGN_SIMILARITY,
    FontFamiliesError,
    digit_signature,
    is_heldout,
    link,
    same_name_line,
    split_families,
)


@pytest.fixture(scope="module")
def split():
    try:
        return split_families(min_each=2)
    except FontFamiliesError as exc:
        pytest.skip(str(exc))


def test_no_held_out_design_is_on_the_training_side(split):
    # Assert: names, groups, name lines and digit shapes all keep apart, each measured here on its own
    training = {f.name for f in split.training}
    heldout = {f.name for f in split.heldout}
    assert training and heldout and not training & heldout
    assert not {f.group for f in split.training} & {f.group for f in split.heldout}
    assert not [(a, b) for a in training for b in heldout if same_name_line(a, b)]
    shapes = {f.name: digit_signature(f.regular) for f in split.training + split.heldout}
    closest = max(float(np.einsum("dk,dk->", shapes[a], shapes[b]) / 10) for a in training for b in heldout if a != b)
    assert closest < DESIGN_SIMILARITY


def test_copies_of_one_design_land_in_one_group(split):
    group = {f.name: f.group for f in split.training + split.heldout}
    for a, b in (("Arimo", "Liberation Sans"), ("FreeSans", "Nimbus Sans"), ("Noto Sans", "Noto Sans Tamil")):
        if a in group and b in group:
            assert group[a] == group[b], (a, b)


def test_the_split_is_the_same_when_asked_again(split):
    fonts.split_families.cache_clear()
    again = split_families(min_each=2)
    assert again.to_dict() == split.to_dict()
    assert all(is_heldout(f.group) for f in again.heldout) and not any(is_heldout(f.group) for f in again.training)


def test_dingbats_and_framed_digits_are_not_families(split):
    names = {f.name for f in split.training + split.heldout}
    assert not any("Keyboard" in n or "Initials" in n or n == "D050000L" for n in names)


def test_too_few_families_names_the_packages(tmp_path):
    with pytest.raises(FontFamiliesError, match="fonts-noto-core"):
        split_families((tmp_path,))


NAMES = st.lists(
    st.text(alphabet=st.sampled_from("ABC -"), min_size=1, max_size=8).filter(str.strip), min_size=1, max_size=12
)


@settings(max_examples=80, deadline=None)
@given(names=NAMES, data=st.data())
def test_linked_families_share_a_group_and_a_side(names, data):
    # Prepare: any names, any symmetric similarities
    n = len(names)
    values = data.draw(st.lists(st.floats(0.0, 1.0), min_size=n * n, max_size=n * n))
    sim = np.array(values).reshape(n, n)
    sim = (sim + sim.T) / 2
    # Execute
    keys = link(names, sim)
    # Assert: every link joins a group, whose key is its first name
    for i in range(n):
        for j in range(n):
            if sim[i, j] >= DESIGN_SIMILARITY or same_name_line(names[i], names[j]):
                assert keys[i] == keys[j]
    members: dict[str, list[str]] = {}
    for name, key in zip(names, keys):
        members.setdefault(key, []).append(name)
    assert all(key == min(group) for key, group in members.items())


def test_name_lines():
    assert same_name_line("Noto Sans", "Noto Sans Tamil")
    assert same_name_line("Linux Libertine O", "Linux Libertine Display O")
    assert same_name_line("Oxygen-Sans", "Oxygen Sans Book")
    assert not same_name_line("Noto Sans", "Noto Serif")
    assert not same_name_line("DejaVu Sans", "DejaVu Serif")
