"""The font families installed on the machine, grouped by design and split into training and held-out families.

A held-out test of printed digits means something only if training never saw the held-out
designs. Family names do not say that: Arimo is Liberation Sans, FreeSans is Nimbus Sans is
TeX Gyre Heros, and every "Noto Sans <script>" carries Noto Sans' Latin digits. So families
are first joined into design groups, by two fixed rules (single linkage):

- names: one family's name is a word prefix of the other's, once a trailing one-letter word
  and hyphens are dropped ("Noto Sans" and "Noto Sans Tamil", "Linux Libertine O" and
  "Linux Libertine Display O", "Roboto" and "Roboto Condensed");
- shapes: their digits 0-9, drawn in the regular style and brought to 28x28 by the page's
  own preprocessing, correlate by DESIGN_SIMILARITY or more on average (blurred by one
  pixel, so that a pixel of rounding does not split a copy from its original).

Then a group is held out when the SHA-256 of SPLIT_SALT + its key (the alphabetically first
family name in it) has a first byte below HELDOUT_SHARE * 256: about a quarter of the
designs, decided by nothing anyone can tune. A family is used only when its character map
has 0-9 under their standard glyph names, in every file of it (a dingbat font maps '0' to a
pencil), and its name has none of NOT_TEXT's words (digits framed as keycaps or ornaments).

Installing more fonts may join groups and so move a family; the split is therefore recorded
with every model trained on it (`TrainingFonts`), and the held-out study checks the model's
record against the split it scores.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MLCoreError

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf")
DIGITS = "0123456789"
# the Adobe Glyph List names of 0-9, and the uniXXXX form some fonts use instead
DIGIT_GLYPHS = (
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    tuple(f"uni{0x30 + d:04X}" for d in range(10)),
)
NOT_TEXT = ("Keyboard", "Initials")
DESIGN_SIMILARITY = 0.97
SPLIT_SALT = "deployer held-out digits v1:"
HELDOUT_SHARE = 0.25
FONT_PACKAGES = (
    "fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-noto-core fonts-urw-base35 fonts-croscore "
    "fonts-crosextra-carlito fonts-crosextra-caladea fonts-open-sans fonts-roboto-unhinted fonts-lato "
    "fonts-cantarell fonts-texgyre fonts-linuxlibertine fonts-ebgaramond fonts-comic-neue fonts-inconsolata "
    "fonts-hack fonts-firacode fonts-quicksand fonts-oxygen fonts-cabin fonts-gfs-artemisia"
)


class FontFamiliesError(MLCoreError):
    """Too few font families are installed to split; the message names the packages."""


@dataclass(frozen=True)
class FontFile:
    path: Path
    weight: int
    italic: bool


@dataclass(frozen=True)
class FontFamily:
    name: str
    files: tuple[FontFile, ...]
    group: str = ""

    @property
    def regular(self) -> Path:
        """The upright file nearest to weight 400: the one whose digits stand for the design."""
        return min(self.files, key=lambda f: (f.italic, abs(f.weight - 400), str(f.path))).path


@dataclass(frozen=True)
class FontSplit:
    training: tuple[FontFamily, ...]
    heldout: tuple[FontFamily, ...]

    def to_dict(self) -> dict:
        """Names only: what a model's metadata records and a report shows."""
        return {
            "rule": f"sha256({SPLIT_SALT!r} + design group)[0] < {HELDOUT_SHARE} * 256 -> held out",
            "training": [f.name for f in self.training],
            "heldout": [f.name for f in self.heldout],
            "training_groups": sorted({f.group for f in self.training}),
            "heldout_groups": sorted({f.group for f in self.heldout}),
        }


def font_files(dirs: tuple[Path, ...] = FONT_DIRS) -> list[Path]:
    """Every TrueType/OpenType file fontconfig knows (`fc-list`), else those under `dirs`."""
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, check=False).stdout
        listed = sorted({Path(line) for line in out.splitlines() if line.lower().endswith(FONT_SUFFIXES)})
        if listed and dirs == FONT_DIRS:
            return listed
    found = set()
    for folder in dirs:
        for root, _, names in os.walk(folder, followlinks=True):
            found.update(Path(root) / n for n in names if n.lower().endswith(FONT_SUFFIXES))
    return sorted(found)


def _read(path: Path) -> tuple[str, FontFile, bool] | None:
    """(family name, file, draws 0-9 under their own names) of one font file, or None when it does not parse."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        font = TTFont(path, lazy=True, fontNumber=0)
        table = font["name"]
        family = table.getDebugName(16) or table.getDebugName(1)
        cmap = font.getBestCmap() or {}
        os2 = font["OS/2"] if "OS/2" in font else None
    except (TTLibError, OSError, KeyError, AssertionError, ValueError):
        return None
    if not family:
        return None
    glyphs = tuple(cmap.get(ord(c)) for c in DIGITS)
    # a suffix names a script's copy of the same digit ("zero.tamil"); a dingbat font's glyphs have other names
    stems = tuple(g.split(".")[0] if g else None for g in glyphs)
    has_digits = stems in DIGIT_GLYPHS
    weight = os2.usWeightClass if os2 is not None else 400
    italic = bool(os2.fsSelection & 1) if os2 is not None else "italic" in path.name.lower()
    return family.strip(), FontFile(path, int(weight), italic), has_digits


def installed_families(dirs: tuple[Path, ...] = FONT_DIRS) -> list[FontFamily]:
    """Families (sorted by name) every file of which draws text digits 0-9; design groups not yet set."""
    by_name: dict[str, list[FontFile]] = {}
    usable: dict[str, bool] = {}
    for path in font_files(dirs):
        read = _read(path)
        if read is None:
            continue
        name, file, has_digits = read
        by_name.setdefault(name, []).append(file)
        usable[name] = usable.get(name, True) and has_digits
    return [
        FontFamily(name, tuple(sorted(files, key=lambda f: str(f.path))))
        for name, files in sorted(by_name.items())
        if usable[name] and not any(word in name.split() for word in NOT_TEXT)
    ]


def _name_stem(name: str) -> tuple[str, ...]:
    words = re.sub(r"[-_]", " ", name).split()
    if len(words) > 1 and len(words[-1]) == 1:
        words = words[:-1]
    return tuple(words)


def same_name_line(a: str, b: str) -> bool:
    """One name is a word prefix of the other (see the module docstring)."""
    x, y = sorted((_name_stem(a), _name_stem(b)), key=len)
    return y[: len(x)] == x


def digit_signature(path: Path) -> np.ndarray | None:
    """[10, 784] unit vectors: the digits of one file through the page's preprocessing, blurred; None if blank."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    from .preprocess import PreprocessError, to_mnist

    font = ImageFont.truetype(str(path), 64)
    rows = []
    for digit in DIGITS:
        left, top, right, bottom = font.getbbox(digit)
        image = Image.new("L", (right - left + 64, bottom - top + 64), 255)
        ImageDraw.Draw(image).text((32 - left, 32 - top), digit, font=font, fill=0)
        try:
            pixels = to_mnist(image)
        except PreprocessError:
            return None
        blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64).ravel()
        blurred -= blurred.mean()
        rows.append(blurred / (np.linalg.norm(blurred) or 1.0))
    return np.stack(rows)


def design_groups(families: list[FontFamily]) -> list[FontFamily]:
    """The families with their design group set (see the module docstring); blank-drawing ones are dropped."""
    signatures = {f.name: digit_signature(f.regular) for f in families}
    kept = [f for f in families if signatures[f.name] is not None]
    stack = np.stack([signatures[f.name] for f in kept]) if kept else np.zeros((0, len(DIGITS), 1))
    similarity = np.einsum("adk,bdk->ab", stack, stack) / len(DIGITS)
    keys = link([f.name for f in kept], similarity)
    return [FontFamily(f.name, f.files, key) for f, key in zip(kept, keys)]


def link(names: list[str], similarity: np.ndarray) -> list[str]:
    """Each name's group key: single linkage of same_name_line or similarity >= DESIGN_SIMILARITY; key = first name."""
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if similarity[i, j] >= DESIGN_SIMILARITY or same_name_line(names[i], names[j]):
                parent[root(j)] = root(i)
    first: dict[int, str] = {}
    for i, name in enumerate(names):
        first[root(i)] = min(first.get(root(i), name), name)
    return [first[root(i)] for i in range(len(names))]


def is_heldout(group: str) -> bool:
    """The fixed rule of the module docstring."""
    return hashlib.sha256((SPLIT_SALT + group).encode()).digest()[0] < HELDOUT_SHARE * 256


@functools.lru_cache(maxsize=4)
def split_families(dirs: tuple[Path, ...] = FONT_DIRS, min_each: int = 1) -> FontSplit:
    """Training and held-out families of what is installed.

    Raises:
        FontFamiliesError: fewer than `min_each` families on either side.
    """
    grouped = design_groups(installed_families(dirs))
    split = FontSplit(
        tuple(f for f in grouped if not is_heldout(f.group)), tuple(f for f in grouped if is_heldout(f.group))
    )
    if len(split.training) < min_each or len(split.heldout) < min_each:
        raise FontFamiliesError(
            f"{len(split.training)} training and {len(split.heldout)} held-out font families installed, "
            f"{min_each} each needed; install more (apt-get install -y --no-install-recommends {FONT_PACKAGES})"
        )
    return split
