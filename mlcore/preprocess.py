"""Turn a real-world digit picture into an MNIST-like 28x28 uint8 image.

MNIST digits are white ink on black, size-normalised to fit 20x20 keeping their
aspect ratio and centred by centre of mass in 28x28 (LeCun et al.). A photo or a
canvas drawing is none of that, so the same steps are applied here before LeNet-5
sees it: decode safely, grayscale, invert a light background, subtract the paper
level, crop to the ink, scale to 20x20, centre by mass.

Untrusted bytes arrive here from URLs and uploads, so decoding checks the byte size
before opening, the pixel count and the samples (pixels x channels) from the header
before decoding (a small file can declare a huge canvas: a decompression bomb; an 80 KB
4096x4096 RGBA PNG needs about 660 MB to preprocess, which kills a 1024 MB action), and
accepts only a few formats.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MLCoreError
from .sizes import over_limit

MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
# Preprocessing costs about 20 bytes per sample at its peak: 16 Mi samples stay near 330 MB
# over a warm action's 550 MB, inside its 1024 MB.
MAX_IMAGE_SAMPLES = 4096 * 4096
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
BOX_PX = 20
SIZE_PX = 28
MIN_CONTRAST = 32
NOISE_FLOOR = 0.08
NOISE_SIGMAS = 6.0


class PreprocessError(MLCoreError):
    """The bytes are not a usable digit picture; the message says what to send instead."""


def decode_image(
    data: bytes,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_samples: int = MAX_IMAGE_SAMPLES,
) -> Image.Image:
    """Decodes PNG/JPEG/GIF/BMP/WEBP bytes into a loaded PIL image (first frame, EXIF-rotated).

    Raises:
        PreprocessError: empty, too many bytes, not an image, too many pixels or samples, or corrupt.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PreprocessError(f"expected image bytes, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise PreprocessError("the image is empty (0 bytes); send a PNG or JPEG picture of a digit")
    if size > max_bytes:
        raise PreprocessError(
            f"the image is {over_limit(size, max_bytes)}; send a smaller picture (a digit needs only a few KB)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
            _check_pixels(image, max_pixels, max_samples)
            image.load()
        except UnidentifiedImageError as exc:
            # the bytes are not echoed: fetched from a URL, they would tell a caller what else listens there
            raise PreprocessError(
                f"the data is not an image in a supported format ({', '.join(FORMATS)}); "
                "send a PNG or JPEG picture of a digit"
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PreprocessError(f"the image was refused as a decompression bomb: {exc}") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise PreprocessError(f"the image is corrupt or truncated ({exc}); send the whole file") from exc
    ImageOps.exif_transpose(image, in_place=True)  # in place keeps `image.format`, which callers report
    return image


def _check_pixels(image: Image.Image, max_pixels: int, max_samples: int) -> None:
    """The header's size and channels, checked before any pixel is decoded.

    Memory grows with pixels x channels, not pixels alone; a palette counts as the RGBA it
    may expand to.
    """
    width, height = image.size
    if width < 1 or height < 1:
        raise PreprocessError(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PreprocessError(
            f"the image declares {width}x{height} = {width * height} pixels, more than the "
            f"limit of {max_pixels}; send a smaller picture (this also refuses decompression bombs)"
        )
    channels = 4 if image.mode in ("P", "PA") else len(image.getbands())
    if width * height * channels > max_samples:
        raise PreprocessError(
            f"the image declares {width}x{height} {image.mode} = {width * height * channels} samples "
            f"(pixels x {channels} channels), more than the limit of {max_samples}; send a smaller "
            "picture or fewer channels (grayscale)"
        )


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Float [H,W] in 0..255; transparent areas become the background opposite to the ink.

    A canvas drawing is often ink on a transparent background, whatever the ink colour;
    filling the transparency with the opposite brightness keeps the strokes visible.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        gray = np.asarray(image.convert("RGBA").convert("L"), dtype=np.float32)
        if alpha.min() < 1.0:
            opaque = alpha > 0.5
            ink_level = gray[opaque].mean() if opaque.any() else 0.0
            background = 255.0 if ink_level < 128 else 0.0
            return gray * alpha + background * (1.0 - alpha)
        return gray
    return np.asarray(image.convert("L"), dtype=np.float32)


def _border(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    k = max(1, min(h, w) // 20)
    return np.concatenate([gray[:k].ravel(), gray[-k:].ravel(), gray[:, :k].ravel(), gray[:, -k:].ravel()])


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink as bright on zero: inverted when the background is light, paper level removed, peak 255.

    Raises:
        PreprocessError: no ink stands out from the background.
    """
    if np.median(_border(gray)) > 127:
        gray = 255.0 - gray
    border = _border(gray)
    paper = float(np.median(border))
    ink = gray - paper
    np.clip(ink, 0.0, None, out=ink)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise PreprocessError(
            "no digit found: the image is blank or has too little contrast; "
            "send a dark digit on a light background or a light digit on a dark one"
        )
    # Paper grain and sensor noise would stretch the crop to the whole page: drop what the
    # border's own spread (a robust sigma) explains, and pixels with no inked neighbour.
    noise_sigma = 1.4826 * float(np.median(np.abs(border - paper)))
    ink[ink < max(NOISE_FLOOR * peak, NOISE_SIGMAS * noise_sigma)] = 0.0
    ink[_neighbours(ink > 0) == 0] = 0.0
    if not ink.any():
        raise PreprocessError(
            "no digit found: only noise stands out from the background; "
            "send a clearer picture with a thicker, darker digit"
        )
    return ink * (255.0 / float(ink.max()))


def _neighbours(mask: np.ndarray) -> np.ndarray:
    """How many of the 8 neighbours of each pixel are set."""
    padded = np.pad(mask.astype(np.int8), 1)
    h, w = mask.shape
    return sum(padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def fit_box(ink: np.ndarray, box_px: int = BOX_PX) -> np.ndarray:
    """Crops to the ink's bounding box and scales its longer side to `box_px`, keeping aspect."""
    rows, cols = np.nonzero(ink)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = box_px / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 255.0)


def centre_by_mass(patch: np.ndarray, size_px: int = SIZE_PX) -> np.ndarray:
    """Places `patch` in a size_px square so its centre of mass falls on the square's centre."""
    h, w = patch.shape
    total = float(patch.sum())
    ys, xs = np.indices(patch.shape)
    cy = float((ys * patch).sum()) / total if total else (h - 1) / 2
    cx = float((xs * patch).sum()) / total if total else (w - 1) / 2
    centre = size_px / 2  # measured on MNIST: the mean centre of mass is (14.0, 14.0)
    top = int(np.clip(round(centre - cy), 0, size_px - h))
    left = int(np.clip(round(centre - cx), 0, size_px - w))
    out = np.zeros((size_px, size_px), dtype=np.float32)
    out[top : top + h, left : left + w] = patch
    return out


def to_mnist(image: Image.Image) -> np.ndarray:
    """A decoded picture of one digit -> uint8 [28,28], white ink on black, as in MNIST.

    Raises:
        PreprocessError: no ink stands out from the background.
    """
    return np.rint(centre_by_mass(fit_box(ink_map(to_grayscale(image))))).astype(np.uint8)


def preprocess_bytes(
    data: bytes,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_samples: int = MAX_IMAGE_SAMPLES,
) -> np.ndarray:
    """Untrusted image bytes -> uint8 [28,28] ready for `mlcore.model.normalize`.

    Raises:
        PreprocessError: the message says what was wrong with the input and what to send.
    """
    return to_mnist(decode_image(data, max_bytes, max_pixels, max_samples))
