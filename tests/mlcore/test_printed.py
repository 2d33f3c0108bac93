"""The printed-digit score: fonts found, digits rendered and preprocessed as uploads are, the score folded honestly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlcore.model import LeNet5
from mlcore.preprocess import preprocess_bytes
from mlcore.printed import (
    ANGLES_DEG,
    SIZES_PX,
    FontsMissingError,
    PrintedScore,
    available_fonts,
    render_digit,
    score_printed,
)

VARIANTS = len(SIZES_PX) * len(ANGLES_DEG)


@pytest.fixture(scope="module")
def fonts():
    try:
        found = available_fonts()
    except FontsMissingError as exc:
        pytest.skip(str(exc))
    if len(found) < 3:
        pytest.skip(f"only {[n for n, _ in found]} installed; scripts/install-system-deps.sh installs the rest")
    return found


def test_a_rendered_one_preprocesses_into_a_tall_thin_mnist_digit(fonts):
    _, path = fonts[0]
    out = preprocess_bytes(render_digit(1, path, 48, 0.0))
    rows, cols = np.nonzero(out > 64)
    assert out.shape == (28, 28) and out[0].max() == 0
    assert rows.max() - rows.min() + 1 >= 18 and cols.max() - cols.min() + 1 <= 14


def test_a_model_that_always_says_3_scores_one_digit_per_font(fonts, constant_model):
    # Execute
    score = score_printed(constant_model(3), fonts)
    # Assert: only the 3s are right, each in every variant
    assert (score.right, score.total) == (3, 30)
    assert (score.variants_right, score.variants_total) == (3 * VARIANTS, 30 * VARIANTS)
    assert len(score.misses) == 27 and "DejaVu Sans 3" not in score.misses and "DejaVu Sans 4" in score.misses
    assert score.summary().startswith("printed digits: 3 of 30")


def test_an_untrained_model_runs_through_and_reports(fonts):
    torch.manual_seed(0)
    score = score_printed(LeNet5(), fonts)
    assert score.total == 30 and 0 <= score.right <= 30 and score.variants_total == 270
    assert PrintedScore(**score.to_dict()) == score


def test_no_fonts_names_the_packages(tmp_path):
    with pytest.raises(FontsMissingError, match="fonts-dejavu-core fonts-liberation"):
        available_fonts((tmp_path,))


# The generator over every installed family (mlcore.fonts' split)


@pytest.fixture(scope="module")
def split():
    from mlcore.fonts import FontFamiliesError, split_families

    try:
        return split_families(min_each=2)
    except FontFamiliesError as exc:
        pytest.skip(str(exc))


def test_a_seed_gives_the_same_pictures_and_a_longer_set_begins_with_a_shorter_one(split):
    from mlcore.printed import draw_specs, render_png

    first, again, longer = (
        draw_specs(split.heldout, 30, 5),
        draw_specs(split.heldout, 30, 5),
        draw_specs(split.heldout, 60, 5),
    )
    other = draw_specs(split.heldout, 30, 6)
    assert first == again == longer[:30] and first != other
    assert [render_png(s) for s in first[:5]] == [render_png(s) for s in again[:5]]


def test_specs_draw_each_side_only_from_its_families_and_cover_the_ranges(split):
    from mlcore.printed import MAX_ANGLE_DEG, MIN_CONTRAST, SPEC_SIZES_PX, draw_specs

    for side in (split.training, split.heldout):
        specs = draw_specs(side, 400, 0)
        assert {s.family for s in specs} <= {f.name for f in side}
        assert {s.group for s in specs} == {f.group for f in side}
        assert [s.digit for s in specs[:20]] == list(range(10)) * 2
    assert all(abs(s.angle_deg) <= MAX_ANGLE_DEG and SPEC_SIZES_PX[0] <= s.size_px <= SPEC_SIZES_PX[1] for s in specs)
    dark_on_light = [sum(s.paper) > sum(s.ink) for s in specs]
    assert 0.35 < np.mean(dark_on_light) < 0.65
    assert all(min(abs(i - p) for i, p in zip(s.ink, s.paper)) >= MIN_CONTRAST for s in specs)
    assert any(s.stroke_px > 0 for s in specs) and len({s.margins_px for s in specs}) > 300


def test_every_picture_goes_through_the_pages_preprocessing_as_its_digit(split):
    from mlcore.printed import printed_set

    images, labels, specs = printed_set(split.training + split.heldout, 100, 2)
    assert images.shape == (100, 28, 28) and images.dtype == np.uint8 and labels.tolist() == [s.digit for s in specs]
    assert (images.max(axis=(1, 2)) >= 200).all() and (images[:, 0, :] == 0).all()


def test_a_cached_set_reads_back_the_same(split, tmp_path):
    from mlcore.printed import printed_set

    made = printed_set(split.training, 20, 3, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    read = printed_set(split.training, 20, 3, cache_dir=tmp_path)
    assert np.array_equal(made[0], read[0]) and np.array_equal(made[1], read[1])
