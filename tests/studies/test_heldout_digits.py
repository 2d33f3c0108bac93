"""The held-out study's own parts: scikit-learn's digits as a user's picture, scoring, batching, the leak check."""

from __future__ import annotations

import base64

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


def test_an_mnist_digit_becomes_8x8_blocks_as_the_sklearn_digits_were_made():
    # Prepare: a thin upright bar (a 1) and a square ring (a 0), white on black as in MNIST
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 13:15] = 255
    zero = np.zeros((28, 28), np.uint8)
    zero[6:22, 6:22] = 255
    zero[9:19, 9:19] = 0
    # Execute
    blocks_one, blocks_zero = heldout_digits.optdigits_blocks(one), heldout_digits.optdigits_blocks(zero)
    # Assert: counts 0-16 of 4x4 blocks; the ink fills the 32 rows and keeps its aspect up to the
    # middle 6 columns, so the bar stays a bar and the square ring (32 wide by aspect) is held to
    # 24 px, leaving the first and last block columns empty, its hole empty
    assert blocks_one.shape == (8, 8) and blocks_one.min() >= 0 and blocks_one.max() <= 16
    assert (blocks_one.sum(axis=1) > 0).all() and (blocks_one.sum(axis=0) > 0).sum() <= 2
    assert blocks_one.sum() == 32 * 3  # 20x2 scaled by 1.6: a 32x3 bar
    assert (blocks_zero.sum(axis=1) > 0).all() and (blocks_zero.sum(axis=0) > 0).tolist() == [0] + [1] * 6 + [0]
    assert blocks_zero[0, 1:7].min() > 0 and blocks_zero[3:5, 3:5].max() == 0
    assert heldout_digits.optdigits_blocks(np.zeros((28, 28), np.uint8)).sum() == 0


def test_mnist_8x8_pictures_are_the_test_digits_pictured_as_the_sklearn_set(mnist_root):
    pictures, labels = heldout_digits.mnist_8x8_pictures(mnist_root, limit=20)
    mnist, mnist_labels = heldout_digits.mnist_pictures(mnist_root, limit=20)
    assert labels.tolist() == mnist_labels.tolist() and len(pictures) == 20
    first = np.asarray(decode_image(pictures[0]))
    assert first.shape == (64, 64) and np.median(first[:, :4]) == 255 and first.min() < 40


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


def test_a_picture_the_action_refuses_is_a_miss_and_the_rest_of_its_batch_is_answered():
    # Prepare: an action that, like mnist/infer, refuses a whole batch for its first empty picture
    calls = []

    def invoke(batch):
        calls.append(len(batch))
        for i, picture in enumerate(batch):
            if picture == "":
                raise heldout_digits.Refused(i, "no digit found")
        return [len(base64.b64decode(p)) % 10 for p in batch]

    pictures = [b"x" * (i % 9 + 1) for i in range(70)]
    pictures[3] = pictures[5] = pictures[66] = b""
    # Execute
    digits = heldout_digits.classify(invoke, pictures, workers=1)
    # Assert: the three are refused, every other picture has its answer, in order
    assert [i for i, d in enumerate(digits) if d == heldout_digits.REFUSED] == [3, 5, 66]
    assert all(d == len(p) % 10 for d, p in zip(digits, pictures) if p)
    assert calls == [64, 63, 62, 6, 5]
    result = heldout_digits.score(digits, np.array([len(p) % 10 for p in pictures]))
    assert (result["correct"], result["refused"], result["accuracy_answered"]) == (67, 3, 1.0)
    with pytest.raises(BenchError, match="refused picture 9 of a batch of 2"):
        heldout_digits.classify(lambda batch: (_ for _ in ()).throw(heldout_digits.Refused(9, "x")), [b"a", b"b"])


def test_a_model_that_trained_on_a_held_out_family_is_refused():
    split = FontSplit(training=(FontFamily("A Sans", (), "A Sans"),), heldout=(FontFamily("B Mono", (), "B Mono"),))
    clean = {"version": "v1", "metrics": {"printed_fonts": {"training": ["A Sans"]}}}
    heldout_digits.check_no_leak(clean, split)
    heldout_digits.check_no_leak({"version": "v0", "metrics": {}}, split)  # trained on no print at all
    leaked = {"version": "v2", "metrics": {"printed_fonts": {"training": ["A Sans", "B Mono"]}}}
    with pytest.raises(heldout_digits.HeldoutLeakError, match="v2 trained on B Mono"):
        heldout_digits.check_no_leak(leaked, split)
