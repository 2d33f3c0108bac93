"""Batch augmentation for MNIST training: what real-world digits do that MNIST's do not.

Printed and mouse-drawn digits differ from MNIST's in slant, size, position, wobble and
stroke width. Each of these is drawn here per image but applied to the whole batch at
once with tensor ops (one `affine_grid` + `grid_sample` for the affine and elastic parts,
pooling for stroke width), so augmentation costs little next to the model's own step on
CPU. All randomness comes from the `torch.Generator` passed in: a seed gives the same
batch back.

Two more things users' pictures do are off by default (`REAL_WORLD` turns them on, as
`deployer model train` does): small pictures (`small_p`: that share of each batch swapped
for training digits shrunk to a few pixels, grown back to a 64 px picture and brought to
28x28 again by the page's own preprocessing; `blur_p` does the like in tensor ops on the
28x28 image), and print (`printed_p`: that share swapped for printed digits of
mlcore.fonts' training families only, rendered by mlcore.printed's generator, through the
same preprocessing). The held-out families are never rendered here, so a held-out score
stays a test.
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
    largest fraction of a 3x3 dilation (> 0, thicker) or erosion (< 0, thinner) blended in;
    `aspect` stretches the digit's width against its height (wide or narrow hands and fonts).
    """

    rotate_deg: float = 12.0
    scale: tuple[float, float] = (0.85, 1.1)
    shift_px: float = 2.0
    shear_deg: float = 8.0
    elastic_px: float = 1.5
    elastic_p: float = 0.5
    stroke: float = 0.8
    stroke_p: float = 0.6
    aspect: tuple[float, float] = (1.0, 1.0)
    blur_p: float = 0.0
    blur_px: tuple[int, int] = (8, 16)
    printed_p: float = 0.0
    printed_count: int = 10_000
    small_p: float = 0.0
    small_px: tuple[int, int] = (7, 16)
    small_count: int = 10_000

    def check(self) -> None:
        """Raises MLCoreError naming the first setting out of range."""
        for name in ("scale", "aspect"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise MLCoreError(f"augment {name} must be 0 < low <= high, got {getattr(self, name)}")
        for name in ("rotate_deg", "shift_px", "shear_deg", "elastic_px", "stroke"):
            if getattr(self, name) < 0:
                raise MLCoreError(f"augment {name} must be >= 0, got {getattr(self, name)}")
        for name in ("elastic_p", "stroke_p", "blur_p", "printed_p", "small_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise MLCoreError(f"augment {name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("blur_px", "small_px"):
            low, high = getattr(self, name)
            if not 2 <= low <= high:
                raise MLCoreError(f"augment {name} must be 2 <= low <= high, got {getattr(self, name)}")
        if self.printed_p + self.small_p > 1:
            raise MLCoreError(f"augment printed_p + small_p must be <= 1, got {self.printed_p} + {self.small_p}")
        for share, count in (("printed_p", "printed_count"), ("small_p", "small_count")):
            if getattr(self, share) > 0 and getattr(self, count) < 1:
                raise MLCoreError(f"augment {count} must be >= 1 with {share} > 0, got {getattr(self, count)}")

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
    # drawn only when on, so the default ranges' random stream is as it was
    stretch = _uniform(n, *config.aspect, generator) if config.aspect != (1.0, 1.0) else torch.ones(n)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward transform A = R @ Sh @ diag(scale * stretch, scale); grid wants A^-1 = diag(...)^-1 @ Sh^-1 @ R^-1
    inv = torch.empty(n, 2, 2)
    inv[:, 0, 0] = (cos + shear * sin) / (scale * stretch)
    inv[:, 0, 1] = (sin - shear * cos) / (scale * stretch)
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


def lose_resolution(x: torch.Tensor, side_px: torch.Tensor) -> torch.Tensor:
    """Per image: shrunk to side_px[i] square by area, grown back bilinearly, peak back to 1, faint haze dropped.

    A digit photographed small, or scanned coarsely, reaches the page as a few blurred
    pixels grown back; the page stretches its ink to full range and drops what is under
    mlcore.preprocess.NOISE_FLOOR of the peak, as done here.
    """
    from .preprocess import NOISE_FLOOR

    out = x.clone()
    size = x.shape[-1]
    for side in side_px.unique().tolist():
        chosen = side_px == side
        small = F.interpolate(x[chosen], size=(side, side), mode="area")
        out[chosen] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    peak = out.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    out = out / peak
    return torch.where(out < NOISE_FLOOR, torch.zeros_like(out), out)


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
    out = change_stroke(out, amount).clamp_(0.0, 1.0)
    if config.blur_p > 0:  # drawn only when on, so the default recipe's random stream is as it was
        blurred = torch.rand(n, generator=generator) < config.blur_p
        low, high = config.blur_px
        sides = torch.randint(low, high + 1, (n,), generator=generator)
        if blurred.any():
            out[blurred] = lose_resolution(out[blurred], sides[blurred])
    return out


class Augmenter:
    """`augmenter(x)` applies `augment_batch` with its own seeded generator, so a run repeats exactly.

    With `printed_p` > 0 it renders its bank of printed digits (training families only) once,
    at construction, and `fonts` records the split it drew from; with `small_p` > 0 it makes
    its bank of small pictures from `source`, the (uint8 images, labels) being trained on.

    Raises:
        MLCoreError: a setting is out of range, `small_p` without a source, or (FontFamiliesError)
            no fonts to print with.
    """

    def __init__(
        self,
        config: AugmentConfig | None = None,
        seed: int = 0,
        source: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.config = config or AugmentConfig()
        self.config.check()
        self.generator = torch.Generator().manual_seed(seed)
        self.fonts: dict | None = None
        self.bank: tuple[torch.Tensor, torch.Tensor] | None = None
        self.small: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.config.printed_p > 0:
            self.bank, self.fonts = printed_bank(self.config.printed_count, seed)
        if self.config.small_p > 0:
            if source is None:
                raise MLCoreError("augment small_p > 0 needs the training images to shrink (source)")
            self.small = small_bank(source, self.config.small_count, self.config.small_px, seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return augment_batch(x, self.config, self.generator)

    def batch(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented batch, its labels): a `printed_p` share swapped for print, a `small_p` one for small pictures."""
        if self.bank is not None or self.small is not None:
            n = len(labels)
            draw = torch.rand(n, generator=self.generator)
            low = 0.0
            for bank, share in ((self.bank, self.config.printed_p), (self.small, self.config.small_p)):
                if bank is None:
                    continue
                images, bank_labels = bank
                swap = (draw >= low) & (draw < low + share)
                pick = torch.randint(len(bank_labels), (n,), generator=self.generator)
                x = torch.where(swap.view(n, 1, 1, 1), images[pick], x)
                labels = torch.where(swap, bank_labels[pick], labels)
                low += share
        return self(x), labels


def small_bank(
    source: tuple[torch.Tensor, torch.Tensor], count: int, sides_px: tuple[int, int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ink in 0..1 [count,1,28,28], labels): training digits as small pictures, through the page's preprocessing.

    Each digit, dark on white, is shrunk by area to a side of `sides_px` (its 20 px of ink to
    a few pixels), grown back bilinearly to a 64 px picture, and preprocessed as an upload.
    Kept on disk under a digest of the source, the settings and the preprocessing's code.
    """
    import hashlib
    import inspect
    import os

    import numpy as np
    from PIL import Image

    from . import preprocess
    from .mnist import default_root
    from .model import to_unit
    from .preprocess import PreprocessError, to_mnist

    images, labels = source
    rng = np.random.default_rng([seed, 1])
    chosen = rng.choice(len(labels), size=min(count, len(labels)), replace=False)
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(repr((count, sides_px, seed, inspect.getsource(preprocess))).encode())
    cached = default_root() / "printed" / f"small-{digest.hexdigest()[:20]}.npy"
    if cached.is_file():
        out = np.load(cached)
        if out.shape == (len(chosen), 28, 28):
            return to_unit(torch.from_numpy(out)), labels[torch.from_numpy(chosen)]
    out = np.empty((len(chosen), 28, 28), dtype=np.uint8)
    for row, i in enumerate(chosen):
        digit = images[int(i)].numpy()
        side = int(rng.integers(sides_px[0], sides_px[1] + 1))
        picture = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BOX)
        try:
            out[row] = to_mnist(picture.resize((64, 64), Image.Resampling.BILINEAR))
        except PreprocessError:  # shrunk to nothing readable: the page would refuse it too
            out[row] = digit
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    with open(partial, "wb") as file:
        np.save(file, out)
    os.replace(partial, cached)
    return to_unit(torch.from_numpy(out)), labels[torch.from_numpy(chosen)]


def printed_bank(count: int, seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
    """((ink in 0..1 [count,1,28,28], labels), the split's record): printed digits of the training families."""
    from .fonts import split_families
    from .mnist import default_root
    from .model import to_unit
    from .printed import printed_set

    split = split_families()
    images, labels, specs = printed_set(split.training, count, seed, cache_dir=default_root() / "printed")
    record = dict(split.to_dict(), rendered=sorted({s.family for s in specs}))
    return (to_unit(torch.from_numpy(images)), torch.from_numpy(labels)), record


# what `deployer model train` uses: the default ranges, plus small pictures and training-family print
REAL_WORLD = AugmentConfig(aspect=(0.8, 1.5), printed_p=0.15, small_p=0.15)


__all__ = [
    "REAL_WORLD",
    "AugmentConfig",
    "Augmenter",
    "affine_matrices",
    "augment_batch",
    "change_stroke",
    "elastic_offsets",
    "lose_resolution",
    "printed_bank",
    "small_bank",
]
