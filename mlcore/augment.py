"""Batch augmentation for MNIST training: what real-world digits do that MNIST's do not.

Printed and mouse-drawn digits differ from MNIST's in slant, size, position, wobble and
stroke width. Each of these is drawn here per image but applied to the whole batch at
once with tensor ops (one `affine_grid` + `grid_sample` for the affine and elastic parts,
pooling for stroke width), so augmentation costs little next to the model's own step on
CPU. All randomness comes from the `torch.Generator` passed in: a seed gives the same
batch back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .errors import MLCoreError


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; each image draws its own values uniformly within them.

    Shifts and the elastic strength are in pixels of the 28x28 image; `stroke` is the
    largest fraction of a 3x3 dilation (> 0, thicker) or erosion (< 0, thinner) blended in.
    """

    rotate_deg: float = 12.0
    scale: tuple[float, float] = (0.85, 1.1)
    shift_px: float = 2.0
    shear_deg: float = 8.0
    elastic_px: float = 1.5
    elastic_p: float = 0.5
    stroke: float = 0.8
    stroke_p: float = 0.6

    def check(self) -> None:
        """Raises MLCoreError naming the first setting out of range."""
        low, high = self.scale
        if not 0 < low <= high:
            raise MLCoreError(f"augment scale must be 0 < low <= high, got {self.scale}")
        for name in ("rotate_deg", "shift_px", "shear_deg", "elastic_px", "stroke"):
            if getattr(self, name) < 0:
                raise MLCoreError(f"augment {name} must be >= 0, got {getattr(self, name)}")
        for name in ("elastic_p", "stroke_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise MLCoreError(f"augment {name} must be a probability in [0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def affine_matrices(n: int, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """[n,2,3] matrices for `affine_grid`: rotation, shear, isotropic scale and shift per image.

    `affine_grid` maps output coordinates to input ones, so the matrix is the inverse of
    the transform the digit undergoes: a scale of 1.1 enlarges the digit by 1.1.
    """
    angle = torch.deg2rad(_uniform(n, -config.rotate_deg, config.rotate_deg, generator))
    shear = torch.tan(torch.deg2rad(_uniform(n, -config.shear_deg, config.shear_deg, generator)))
    scale = _uniform(n, *config.scale, generator)
    # shifts in normalised coordinates: the image spans [-1, 1], i.e. 2 units for 28 px
    shift = _uniform(2 * n, -config.shift_px, config.shift_px, generator).view(n, 2) * (2.0 / 28.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward transform A = R @ Sh / scale^-1; grid wants A^-1 = Sh^-1 @ R^-1 / scale
    inv = torch.empty(n, 2, 2)
    inv[:, 0, 0] = (cos + shear * sin) / scale
    inv[:, 0, 1] = (sin - shear * cos) / scale
    inv[:, 1, 0] = -sin / scale
    inv[:, 1, 1] = cos / scale
    theta = torch.empty(n, 2, 3)
    theta[:, :, :2] = inv
    theta[:, :, 2] = -(inv @ shift.unsqueeze(2)).squeeze(2)
    return theta


def elastic_offsets(
    n: int, size_px: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """[n,H,W,2] smooth random displacements in normalised units (Simard et al. 2003).

    White noise on a coarse 7x7 grid, upsampled bicubically, is a smooth field without a
    Gaussian convolution; images not chosen (probability 1 - `elastic_p`) get zero.
    """
    coarse = torch.rand(n, 2, 7, 7, generator=generator) * 2 - 1
    field = F.interpolate(coarse, size=(size_px, size_px), mode="bicubic", align_corners=False)
    chosen = (torch.rand(n, generator=generator) < config.elastic_p).to(field.dtype)
    field = field * (chosen * config.elastic_px * 2.0 / size_px).view(n, 1, 1, 1)
    return field.permute(0, 2, 3, 1)


def change_stroke(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Per image: blends towards a 3x3 dilation (amount > 0) or erosion (amount < 0) by |amount|.

    `x` is [N,1,H,W] ink in 0..1 (bright on zero); `amount` is [N] in [-1, 1].
    """
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    a = amount.view(-1, 1, 1, 1)
    return torch.where(a >= 0, x + a * (dilated - x), x + a * (x - eroded))


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """[N,1,H,W] ink in 0..1 -> the same shape and range, each image transformed at random.

    Raises:
        MLCoreError: `x` is not a batch of one-channel images.
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise MLCoreError(f"expected a batch of shape [N,1,H,W], got {list(x.shape)}")
    n, _, h, w = x.shape
    if h != w:
        raise MLCoreError(f"expected square images, got {h}x{w}")
    theta = affine_matrices(n, config, generator)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    grid = grid + elastic_offsets(n, h, config, generator)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    chosen = torch.rand(n, generator=generator) < config.stroke_p
    amount = _uniform(n, -config.stroke, config.stroke, generator) * chosen
    # erosion only half as strong: MNIST's thin strokes would break apart
    amount = torch.where(amount < 0, amount * 0.5, amount)
    return change_stroke(out, amount).clamp_(0.0, 1.0)


class Augmenter:
    """`augmenter(x)` applies `augment_batch` with its own seeded generator, so a run repeats exactly."""

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.config.check()
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return augment_batch(x, self.config, self.generator)


__all__ = ["AugmentConfig", "Augmenter", "affine_matrices", "augment_batch", "change_stroke", "elastic_offsets"]
