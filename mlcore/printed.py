"""Printed digits: the quick score of three fonts, and a seeded generator over every installed font family.

The score: does a model read digits typed in common fonts, as the page would send them?

MNIST's test set says nothing about printed digits (a serif 1, a closed 4, a flat-topped
7), so each digit 0-9 is rendered here with PIL in three fonts found on the machine, at
several sizes and small angles, dark on white, and sent through the very preprocessing
the `mnist/infer` action applies to an upload (`preprocess_bytes` on PNG bytes).

How the variants fold into "N of 30": a (font, digit) pair counts as right when the
majority of its size/angle variants is classified right, so one unlucky rendering does
not decide it, but a digit the model reads only at one size does not pass either. The
score of every variant on its own is reported beside it (`variants_right` of
`variants_total`), so nothing is hidden by the folding.

The generator (`draw_specs`, `render_png`, `printed_set`) draws digits the way users'
pictures come: any family of a side of mlcore.fonts' split (each design group as often as
any other), any of its styles, 16-96 px, thicker strokes, turned up to 15 degrees either
way, anywhere on a canvas of any margins, dark ink on light paper or light on dark, in
colour. Every spec is drawn from its own index and the seed alone, so a set is the same on
every run and its first N images do not change when more are asked for.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import MLCoreError
from .fonts import FontFamily
from .inference import predict
from .preprocess import preprocess_bytes

FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/TTF"), Path("/usr/local/share/fonts"))
# (name, file names tried in order): the first of each found is used; Debian's
# fonts-dejavu-core and fonts-liberation provide them (scripts/install-system-deps.sh).
FONTS = (
    ("DejaVu Sans", ("DejaVuSans.ttf",)),
    ("Liberation Sans", ("LiberationSans-Regular.ttf", "Arial.ttf")),
    ("Liberation Serif", ("LiberationSerif-Regular.ttf", "DejaVuSerif.ttf", "Times_New_Roman.ttf")),
)
SIZES_PX = (24, 48, 96)
ANGLES_DEG = (-8.0, 0.0, 8.0)
FONT_PACKAGES = "fonts-dejavu-core fonts-liberation"


class FontsMissingError(MLCoreError):
    """None of the fonts the score needs is installed; the message names the packages."""


@dataclass
class PrintedScore:
    right: int
    total: int
    variants_right: int
    variants_total: int
    fonts: list[str]
    misses: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"printed digits: {self.right} of {self.total} (majority of {len(SIZES_PX) * len(ANGLES_DEG)} "
            f"sizes/angles each; {self.variants_right} of {self.variants_total} renderings)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def find_font(file_names: tuple[str, ...], dirs: tuple[Path, ...] = FONT_DIRS) -> Path | None:
    """The first of `file_names` found under any of `dirs` (searched recursively), else None."""
    for name in file_names:
        for folder in dirs:
            if folder.is_dir():
                found = next(iter(sorted(folder.rglob(name))), None)
                if found is not None:
                    return found
    return None


def available_fonts(dirs: tuple[Path, ...] = FONT_DIRS) -> list[tuple[str, Path]]:
    """(name, path) of each of FONTS that is installed.

    Raises:
        FontsMissingError: not one of them is.
    """
    fonts = [(name, path) for name, files in FONTS if (path := find_font(files, dirs)) is not None]
    if not fonts:
        raise FontsMissingError(
            f"none of the fonts {', '.join(n for n, _ in FONTS)} is installed; "
            f"install {FONT_PACKAGES} (apt-get install -y {FONT_PACKAGES})"
        )
    return fonts


def render_digit(digit: int, font_path: Path, size_px: int, angle_deg: float) -> bytes:
    """PNG bytes: `digit` in black on a white page, `size_px` font size, turned by `angle_deg`."""
    font = ImageFont.truetype(str(font_path), size_px)
    side = size_px * 2
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).text((side / 2, side / 2), str(digit), font=font, fill=0, anchor="mm")
    image = image.rotate(angle_deg, resample=Image.Resampling.BICUBIC, fillcolor=255)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def printed_digits(fonts: list[tuple[str, Path]]) -> tuple[list[tuple[str, int]], list, list[int]]:
    """(keys (font, digit) per rendering, 28x28 preprocessed images, labels) for every variant."""
    keys, images, labels = [], [], []
    for name, path in fonts:
        for digit in range(10):
            for size_px in SIZES_PX:
                for angle in ANGLES_DEG:
                    keys.append((name, digit))
                    images.append(preprocess_bytes(render_digit(digit, path, size_px, angle)))
                    labels.append(digit)
    return keys, images, labels


def score_printed(model: torch.nn.Module, fonts: list[tuple[str, Path]] | None = None) -> PrintedScore:
    """Classifies every rendering with `model`; see the module docstring for how they fold into N of 30.

    Raises:
        FontsMissingError: no font to render with.
    """
    fonts = fonts if fonts is not None else available_fonts()
    keys, images, labels = printed_digits(fonts)
    answers = [p["digit"] for p in predict(model, images)]
    per_pair: dict[tuple[str, int], list[bool]] = {}
    for key, answer, label in zip(keys, answers, labels):
        per_pair.setdefault(key, []).append(answer == label)
    misses = [f"{name} {digit}" for (name, digit), hits in per_pair.items() if 2 * sum(hits) <= len(hits)]
    return PrintedScore(
        right=len(per_pair) - len(misses),
        total=len(per_pair),
        variants_right=sum(a == y for a, y in zip(answers, labels)),
        variants_total=len(labels),
        fonts=[name for name, _ in fonts],
        misses=misses,
    )


SPEC_SIZES_PX = (16, 96)
MAX_ANGLE_DEG = 15.0
MIN_CONTRAST = 90  # grey levels between ink and paper: users' pictures are readable


@dataclass(frozen=True)
class RenderSpec:
    """One printed digit, fully determined: `render_png` draws the same pixels for the same spec."""

    digit: int
    family: str
    group: str
    font_path: str
    size_px: int
    stroke_px: int
    angle_deg: float
    margins_px: tuple[int, int, int, int]  # left, top, right, bottom around the turned glyph
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(ink, paper) RGB, tinted: dark ink on light paper or light ink on dark paper, MIN_CONTRAST apart or more.

    Paper stays on its side of mid-grey (the page tells the background's polarity by it).
    """
    paper_level = int(rng.integers(150, 256))
    ink_level = int(rng.integers(0, paper_level - MIN_CONTRAST + 1))
    paper = tuple(int(np.clip(paper_level + t, 150, 255)) for t in rng.integers(-15, 16, size=3))
    ink = tuple(int(np.clip(ink_level + t, 0, min(paper) - MIN_CONTRAST)) for t in rng.integers(-15, 16, size=3))
    if rng.random() < 0.5:
        return ink, paper
    return tuple(255 - c for c in ink), tuple(255 - c for c in paper)


def draw_specs(families: list[FontFamily] | tuple[FontFamily, ...], count: int, seed: int) -> list[RenderSpec]:
    """`count` specs over `families`: digits in turn, design groups in turn, the rest at random.

    Raises:
        MLCoreError: no family to draw from.
    """
    if not families:
        raise MLCoreError("no font family to draw digits from; see mlcore.fonts for the packages to install")
    groups: dict[str, list[FontFamily]] = {}
    for family in sorted(families, key=lambda f: f.name):
        groups.setdefault(family.group or family.name, []).append(family)
    order = sorted(groups)
    specs = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        members = groups[order[(i // 10) % len(order)]]
        family = members[int(rng.integers(len(members)))]
        file = family.files[int(rng.integers(len(family.files)))]
        size = int(rng.integers(SPEC_SIZES_PX[0], SPEC_SIZES_PX[1] + 1))
        stroke = int(rng.integers(0, max(1, round(size * 0.06)) + 1)) if rng.random() < 0.4 else 0
        angle = float(rng.uniform(-MAX_ANGLE_DEG, MAX_ANGLE_DEG))
        margins = tuple(int(m) for m in rng.uniform(0.1, 1.0, size=4) * size + 2)
        ink, paper = _colours(rng)
        specs.append(
            RenderSpec(i % 10, family.name, family.group, str(file.path), size, stroke, angle, margins, ink, paper)
        )
    return specs


def render_image(spec: RenderSpec) -> Image.Image:
    """An RGB picture of one spec: the glyph's coverage, turned, then coloured, inside its margins."""
    font = ImageFont.truetype(spec.font_path, spec.size_px)
    text = str(spec.digit)
    left, top, right, bottom = font.getbbox(text, stroke_width=spec.stroke_px)
    pad = 2
    coverage = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(coverage).text(
        (pad - left, pad - top), text, font=font, fill=255, stroke_width=spec.stroke_px, stroke_fill=255
    )
    coverage = coverage.rotate(spec.angle_deg, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    ml, mt, mr, mb = spec.margins_px
    mask = Image.new("L", (coverage.width + ml + mr, coverage.height + mt + mb), 0)
    mask.paste(coverage, (ml, mt))
    return Image.composite(Image.new("RGB", mask.size, spec.ink), Image.new("RGB", mask.size, spec.paper), mask)


def render_png(spec: RenderSpec) -> bytes:
    """PNG bytes of `render_image`: what a user would upload."""
    buf = io.BytesIO()
    render_image(spec).save(buf, "PNG")
    return buf.getvalue()


def printed_set(
    families: list[FontFamily] | tuple[FontFamily, ...], count: int, seed: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[RenderSpec]]:
    """(uint8 [count,28,28] through the page's preprocessing, labels [count], specs).

    With `cache_dir`, the images are kept there under a digest of the specs, the font files'
    sizes and the preprocessing's source, so a second training run does not render them again.
    """
    specs = draw_specs(families, count, seed)
    labels = np.array([s.digit for s in specs], dtype=np.int64)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"printed-{_digest(specs)}.npy"
        if path.is_file():
            images = np.load(path)
            if images.shape == (count, 28, 28):
                return images, labels, specs
    images = np.stack([preprocess_bytes(render_png(s)) for s in specs]) if specs else np.zeros((0, 28, 28), np.uint8)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as out:
            np.save(out, images)
        os.replace(partial, path)
    return images, labels, specs


def _digest(specs: list[RenderSpec]) -> str:
    import hashlib
    import inspect
    import json

    from . import preprocess

    sizes = {p: os.path.getsize(p) for p in sorted({s.font_path for s in specs})}
    blob = json.dumps([[asdict(s) for s in specs], sizes, inspect.getsource(preprocess)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
