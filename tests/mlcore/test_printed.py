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
