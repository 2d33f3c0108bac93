"""Batch augmentation on real MNIST digits: shape and range, identity when off, seeds, what each transform does."""

from __future__ import annotations

import pytest
import torch

from mlcore.augment import AugmentConfig, Augmenter, augment_batch, change_stroke, lose_resolution, small_bank
from mlcore.errors import MLCoreError
from mlcore.mnist import load_mnist
from mlcore.model import to_unit
from mlcore.train import train_lenet5

OFF = AugmentConfig(rotate_deg=0, scale=(1.0, 1.0), shift_px=0, shear_deg=0, elastic_px=0, stroke=0)


@pytest.fixture(scope="module")
def batch(mnist_root) -> torch.Tensor:
    images, _ = load_mnist(train=True, root=mnist_root)
    return to_unit(images[:64])


def height_px(x: torch.Tensor) -> torch.Tensor:
    """Per image: rows holding ink, from the first to the last."""
    rows = (x[:, 0] > 0.3).any(dim=2)
    idx = torch.arange(rows.shape[1]).expand_as(rows)
    top = torch.where(rows, idx, rows.shape[1]).min(dim=1).values
    bottom = torch.where(rows, idx, -1).max(dim=1).values
    return (bottom - top + 1).float()


def test_output_keeps_shape_and_range_and_changes_the_pictures(batch):
    # Execute
    out = augment_batch(batch.clone(), AugmentConfig(), torch.Generator().manual_seed(0))
    # Assert
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    changed = (out - batch).abs().flatten(1).mean(1) > 0.01
    assert changed.float().mean() > 0.9


def test_all_ranges_zero_is_the_identity(batch):
    out = augment_batch(batch.clone(), OFF, torch.Generator().manual_seed(0))
    assert torch.allclose(out, batch, atol=1e-5)


def test_same_seed_same_batches_other_seed_other_batches(batch):
    first, again, other = Augmenter(seed=3), Augmenter(seed=3), Augmenter(seed=4)
    a = [first(batch.clone()) for _ in range(2)]
    b = [again(batch.clone()) for _ in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # the generator moves on from batch to batch
    assert not torch.equal(a[0], other(batch.clone()))


def test_scale_enlarges_the_digit_by_its_factor(batch):
    grow = AugmentConfig(rotate_deg=0, scale=(1.25, 1.25), shift_px=0, shear_deg=0, elastic_px=0, stroke=0)
    out = augment_batch(batch.clone(), grow, torch.Generator().manual_seed(0))
    ratio = (height_px(out) / height_px(batch)).median().item()
    assert ratio == pytest.approx(1.25, abs=0.08)


def test_shift_moves_the_ink_at_most_its_range(batch):
    shift = AugmentConfig(rotate_deg=0, scale=(1.0, 1.0), shift_px=3, shear_deg=0, elastic_px=0, stroke=0)
    out = augment_batch(batch.clone(), shift, torch.Generator().manual_seed(0))
    ys = torch.arange(28.0).view(1, 28, 1)

    def centre_y(x):
        return (x[:, 0] * ys).sum((1, 2)) / x[:, 0].sum((1, 2))

    moved = (centre_y(out) - centre_y(batch)).abs()
    assert moved.max() <= 3.3 and moved.mean() > 0.5


def test_stroke_change_thickens_or_thins_the_ink(batch):
    n = len(batch)
    thick = change_stroke(batch, torch.ones(n))
    thin = change_stroke(batch, -torch.ones(n))
    assert (thick >= batch - 1e-6).all() and thick.sum() > 1.3 * batch.sum()
    assert (thin <= batch + 1e-6).all() and thin.sum() < 0.8 * batch.sum()
    assert torch.equal(change_stroke(batch, torch.zeros(n)), batch)


def test_bad_input_and_settings_are_refused(batch):
    with pytest.raises(MLCoreError, match=r"\[N,1,H,W\]"):
        augment_batch(batch[:, 0], AugmentConfig())
    with pytest.raises(MLCoreError, match="scale"):
        Augmenter(AugmentConfig(scale=(1.2, 0.9)))
    with pytest.raises(MLCoreError, match="elastic_p"):
        Augmenter(AugmentConfig(elastic_p=1.5))


def test_training_with_augmentation_repeats_with_a_seed_and_records_it(mnist_root):
    runs = [
        train_lenet5(
            epochs=1,
            batch_size=50,
            lr=0.05,
            seed=7,
            threads=1,
            train_limit=300,
            test_limit=100,
            root=mnist_root,
            augment=AugmentConfig(),
        )
        for _ in range(2)
    ]
    assert all(torch.equal(runs[0].state[k], runs[1].state[k]) for k in runs[0].state)
    assert runs[0].metrics()["config"]["augment"]["rotate_deg"] == AugmentConfig().rotate_deg
    plain = train_lenet5(
        epochs=1, batch_size=50, lr=0.05, seed=7, threads=1, train_limit=300, test_limit=100, root=mnist_root
    )
    assert plain.metrics()["config"]["augment"] is None
    assert not torch.equal(plain.state["features.0.weight"], runs[0].state["features.0.weight"])


def test_lost_resolution_keeps_shape_and_range_and_blurs():
    # Prepare: a one-pixel-wide bar
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 4:24, 13] = 1.0
    # Execute
    out = lose_resolution(x, torch.tensor([8, 14]))
    # Assert: same shape, peak back at 1, the bar spread wider, the coarser side wider still
    assert out.shape == x.shape and float(out.min()) >= 0 and torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(2))
    widths = (out[:, 0, 14] > 0).sum(dim=1)
    assert widths[0] > widths[1] > 1


def test_print_in_a_batch_comes_from_training_families_only_with_its_own_labels():
    from mlcore.fonts import FontFamiliesError, split_families

    try:
        split = split_families(min_each=2)
    except FontFamiliesError as exc:
        pytest.skip(str(exc))
    config = AugmentConfig(printed_p=0.5, printed_count=30, blur_p=0.5)
    first, again = Augmenter(config, seed=1), Augmenter(config, seed=1)
    # Assert: the bank drew only training families, and records the split
    assert set(first.fonts["rendered"]) <= {f.name for f in split.training}
    assert not set(first.fonts["rendered"]) & {f.name for f in split.heldout}
    assert first.fonts["heldout"] == [f.name for f in split.heldout]
    # Execute: a batch of blanks labelled 11, half swapped for print
    blank, labels = torch.zeros(64, 1, 28, 28), torch.full((64,), 11)
    x, y = first.batch(blank, labels)
    x2, y2 = again.batch(blank, labels)
    # Assert: swapped images carry digits' labels and ink, kept ones stay label 11; a seed repeats it
    printed = y != 11
    assert 10 < int(printed.sum()) < 54 and set(y[printed].tolist()) <= set(range(10))
    assert (x[printed].amax(dim=(1, 2, 3)) > 0.5).all()
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_training_with_print_records_the_split_it_printed_from(mnist_root):
    result = train_lenet5(
        epochs=1,
        batch_size=50,
        lr=0.05,
        seed=7,
        threads=1,
        train_limit=200,
        test_limit=50,
        root=mnist_root,
        augment=AugmentConfig(printed_p=0.3, printed_count=40, blur_p=0.3),
    )
    fonts = result.metrics()["printed_fonts"]
    assert fonts["training"] and fonts["heldout"] and not set(fonts["rendered"]) & set(fonts["heldout"])
    assert result.metrics()["config"]["augment"]["printed_p"] == 0.3


def test_small_pictures_are_training_digits_shrunk_and_preprocessed_again(mnist_root):
    images, labels = load_mnist(train=True, root=mnist_root)
    source = (images[:300], labels[:300])
    # Execute: twice, the second read from the cache
    first, first_labels = small_bank(source, 40, (7, 9), seed=2)
    again, again_labels = small_bank(source, 40, (7, 9), seed=2)
    # Assert: 40 of the 300 with their own labels, blurred (more grey pixels than the originals), repeatable
    assert first.shape == (40, 1, 28, 28) and torch.equal(first, again) and torch.equal(first_labels, again_labels)
    assert float(first.min()) >= 0 and float(first.max()) > 0.8
    originals = to_unit(images[:300])
    matches = [int(((originals - x).abs().amax(dim=(1, 2, 3)) == 0).sum()) for x in first]
    assert sum(matches) == 0
    grey = ((first > 0.1) & (first < 0.9)).float().mean()
    assert grey > ((originals > 0.1) & (originals < 0.9)).float().mean()
    assert set(first_labels.tolist()) <= set(labels[:300].tolist())


def test_small_pictures_need_the_training_images():
    with pytest.raises(MLCoreError, match="source"):
        Augmenter(AugmentConfig(small_p=0.2))
    with pytest.raises(MLCoreError, match="printed_p \\+ small_p"):
        Augmenter(AugmentConfig(small_p=0.6, printed_p=0.6))


def test_aspect_widens_a_digit_and_keeps_its_height(batch):
    wide = AugmentConfig(
        rotate_deg=0, scale=(1.0, 1.0), shift_px=0, shear_deg=0, elastic_px=0, stroke=0, aspect=(1.5, 1.5)
    )
    out = augment_batch(batch.clone(), wide, torch.Generator().manual_seed(0))
    ratio = (out[:, 0] > 0.3).any(dim=1).sum(dim=1) / (batch[:, 0] > 0.3).any(dim=1).sum(dim=1)
    assert float(ratio.median()) > 1.3
    assert torch.allclose(height_px(out), height_px(batch), atol=1)
    with pytest.raises(MLCoreError, match="aspect"):
        Augmenter(AugmentConfig(aspect=(1.5, 0.8)))
