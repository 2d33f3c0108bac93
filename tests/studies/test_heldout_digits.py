"""The held-out study's own parts: scikit-learn's digits as a user's picture, scoring, batching, the leak check."""

from __future__ import annotations

import numpy as np
import pytest

from mlcore.fonts import FontFamily, FontSplit
from mlcore.preprocess import decode_image, preprocess_bytes
from studies import heldout_digits
from studies.errors import BenchError


def test_sklearn_digits_become_upscaled_dark_on_white_pictures_and_mnist_shaped_digits():
    # Execute
    pictures, labels = heldout_digits.sklearn_pictures()
    # Assert: all 1,797 digits of the 43 writers, as 64x64 grey pictures, dark ink on white paper
    assert len(pictures) == len(labels) == 1797 and np.bincount(labels).tolist()[0] == 178
    first = np.asarray(decode_image(pictures[0]))
    assert first.shape == (64, 64) and first.dtype == np.uint8 and first.max() == 255 and first.min() < 40
    assert np.median(first[:, :4]) == 255  # the paper around the digit is white
    # ... and the page's preprocessing makes MNIST's 28x28 white-on-black of each
    images = np.stack([preprocess_bytes(p) for p in pictures[:50]])
    assert images.shape == (50, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and (images[:, :2].max() == 0) and (images[:, :, :2].max() == 0)


def test_a_limit_takes_the_first_digits():
    pictures, labels = heldout_digits.sklearn_pictures(limit=10)
    assert len(pictures) == 10 and labels.tolist() == list(range(10))


def test_score_counts_digits_groups_and_confusions():
    result = heldout_digits.score([1, 7, 7, 3], np.array([1, 1, 7, 3]), keys=["a", "a", "b", "b"])
    assert (result["correct"], result["total"], result["accuracy"]) == (3, 4, 0.75)
    assert result["per_digit"]["1"] == 0.5 and result["per_group"] == {"a": 0.5, "b": 1.0}
    assert result["confusions"] == [{"label": 1, "predicted": 7, "count": 1}]


def test_classify_sends_batches_of_the_actions_limit_in_order():
    sent = []

    def invoke(batch):
        sent.append(len(batch))
        return [len(b) % 10 for b in batch]

    pictures = [b"x" * i for i in range(150)]
    digits = heldout_digits.classify(invoke, pictures, workers=2)
    assert sorted(sent) == [22, 64, 64] and len(digits) == 150
    with pytest.raises(BenchError, match="2 predictions for a batch of 64"):
        heldout_digits.classify(lambda batch: [0, 0], pictures, workers=1)


def test_a_model_that_trained_on_a_held_out_family_is_refused():
    split = FontSplit(training=(FontFamily("A Sans", (), "A Sans"),), heldout=(FontFamily("B Mono", (), "B Mono"),))
    clean = {"version": "v1", "metrics": {"printed_fonts": {"training": ["A Sans"]}}}
    heldout_digits.check_no_leak(clean, split)
    heldout_digits.check_no_leak({"version": "v0", "metrics": {}}, split)  # trained on no print at all
    leaked = {"version": "v2", "metrics": {"printed_fonts": {"training": ["A Sans", "B Mono"]}}}
    with pytest.raises(heldout_digits.HeldoutLeakError, match="v2 trained on B Mono"):
        heldout_digits.check_no_leak(leaked, split)
