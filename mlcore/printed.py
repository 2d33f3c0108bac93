"""The printed-digit score: does a model read digits typed in common fonts, as the page would send them?

MNIST's test set says nothing about printed digits (a serif 1, a closed 4, a flat-topped
7), so each digit 0-9 is rendered here with PIL in three fonts found on the machine, at
several sizes and small angles, dark on white, and sent through the very preprocessing
the `mnist/infer` action applies to an upload (`preprocess_bytes` on PNG bytes).

How the variants fold into "N of 30": a (font, digit) pair counts as right when the
majority of its size/angle variants is classified right, so one unlucky rendering does
not decide it, but a digit the model reads only at one size does not pass either. The
score of every variant on its own is reported beside it (`variants_right` of
`variants_total`), so nothing is hidden by the folding.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import MLCoreError
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
