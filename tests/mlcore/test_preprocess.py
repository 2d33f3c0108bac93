"""Preprocessing on real MNIST digits, on photo-like and canvas-like pictures, and on every bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mlcore import preprocess
from mlcore.mnist import load_mnist
from mlcore.preprocess import PreprocessError, decode_image, preprocess_bytes


def encode(array_or_image, fmt: str = "PNG", **kwargs) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(img.shape)
    total = img.astype(np.float64).sum()
    return float((ys * img).sum() / total), float((xs * img).sum() / total)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def best_correlation_within_one_pixel(a: np.ndarray, b: np.ndarray) -> float:
    """Centring rounds to whole pixels, so a thin digit may land one pixel off its MNIST original."""
    return max(correlation(np.roll(a, (dy, dx), (0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.fixture(scope="module")
def test_digits(mnist_root):
    images, labels = load_mnist(train=False, root=mnist_root)
    return images[:200].numpy(), labels[:200].numpy()


def photo_like(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Dark ink on grey-white paper, 6x larger, off centre, tinted, noisy: what a phone photo gives."""
    ink = np.asarray(Image.fromarray(digit).resize((168, 168), Image.Resampling.BICUBIC), dtype=np.float64)
    page = np.full((300, 400), 215.0)
    page[30:198, 200:368] -= ink * (170 / 255)
    page += rng.normal(0, 4, page.shape)
    rgb = np.stack([page, page * 0.97, page * 0.92], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def test_mnist_digits_survive_almost_unchanged(test_digits):
    # Prepare
    images, _ = test_digits
    # Execute
    outputs = [preprocess_bytes(encode(img)) for img in images]
    # Assert: the same 28x28 picture back, within a few grey levels on average
    diffs = [np.abs(out.astype(int) - img.astype(int)).mean() for out, img in zip(outputs, images)]
    assert all(out.dtype == np.uint8 and out.shape == (28, 28) for out in outputs)
    assert np.mean(diffs) < 1.5
    # a centre of mass exactly between two pixels may round the other way: a one-pixel shift, rarely
    correlations = np.array([correlation(out, img) for out, img in zip(outputs, images)])
    assert (correlations > 0.98).mean() >= 0.95
    assert correlations.min() > 0.5


def test_white_background_photo_is_inverted_cropped_and_centred(test_digits):
    # Prepare
    images, _ = test_digits
    rng = np.random.default_rng(0)
    # Execute
    results = [(img, preprocess_bytes(encode(photo_like(img, rng), "JPEG", quality=85))) for img in images[:40]]
    # Assert: white ink on black, longer side about 20 px, centre of mass at MNIST's (14, 14), same shape
    for original, out in results:
        assert out[0].max() == 0 and out[-1].max() == 0 and out[:, 0].max() == 0 and out[:, -1].max() == 0
        rows, cols = np.nonzero(out)
        assert 19 <= max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) <= 21
        cy, cx = centre_of_mass(out)
        assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0
        assert out.max() >= 200
        assert best_correlation_within_one_pixel(out, original) > 0.9
    assert np.median([correlation(out, original) for original, out in results]) > 0.95


def test_transparent_canvas_drawing_keeps_its_strokes():
    # Prepare: a black "1" drawn on a fully transparent 280x280 canvas, as a browser exports it
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[40:240, 130:150] = (0, 0, 0, 255)
    # Execute
    out = preprocess_bytes(encode(Image.fromarray(canvas, "RGBA")))
    # Assert: a bright vertical bar 20 px tall in the middle
    rows, cols = np.nonzero(out > 128)
    assert rows.max() - rows.min() + 1 >= 19
    assert cols.max() - cols.min() + 1 <= 4
    assert abs(centre_of_mass(out)[1] - 14) < 1.0


def test_light_ink_on_transparent_background_is_also_seen():
    canvas = np.zeros((100, 100, 4), dtype=np.uint8)
    canvas[20:80, 45:55] = (255, 255, 255, 255)
    out = preprocess_bytes(encode(Image.fromarray(canvas, "RGBA")))
    assert out.max() > 200 and out[0].max() == 0


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty"),
        (b"hello, I am not a picture", "not an image"),
        (b"GIF89a" + b"\x00" * 3, "not an image"),
    ],
)
def test_not_an_image(data, expected):
    with pytest.raises(PreprocessError, match=expected):
        preprocess_bytes(data)


def test_not_bytes():
    with pytest.raises(PreprocessError, match="expected image bytes"):
        preprocess_bytes("a string")  # type: ignore[arg-type]


def test_unsupported_format_names_the_supported_ones():
    tiff = encode(np.zeros((8, 8), dtype=np.uint8), "TIFF")
    with pytest.raises(PreprocessError, match="PNG, JPEG"):
        preprocess_bytes(tiff)


def test_truncated_file():
    data = encode((np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8))
    with pytest.raises(PreprocessError, match="corrupt or truncated"):
        preprocess_bytes(data[: len(data) // 2])


def test_byte_limit():
    data = encode(np.zeros((28, 28), dtype=np.uint8))
    with pytest.raises(PreprocessError, match=f"{len(data)} bytes, more than the limit of 50"):
        preprocess_bytes(data, max_bytes=50)


def test_pixel_limit_is_checked_before_decoding():
    data = encode(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(PreprocessError, match="100x100 = 10000 pixels, more than the limit of 9999"):
        preprocess_bytes(data, max_pixels=9999)


def bomb(side_px: int) -> bytes:
    """A PNG of a few KB that decodes to side_px**2 pixels."""
    return encode(Image.new("1", (side_px, side_px)))


def test_decompression_bomb_is_refused_by_the_pixel_limit():
    data = bomb(5_000)
    assert len(data) < 50_000
    with pytest.raises(PreprocessError, match="5000x5000 = 25000000 pixels, more than the limit"):
        preprocess_bytes(data)


def test_decompression_bomb_is_refused_by_pillows_guard_too():
    with pytest.raises(PreprocessError, match="decompression bomb"):
        decode_image(bomb(10_000), max_pixels=10**9)


@pytest.mark.parametrize("value", [0, 255, 214])
def test_blank_image_says_no_digit(value):
    with pytest.raises(PreprocessError, match="no digit found"):
        preprocess_bytes(encode(np.full((50, 50), value, dtype=np.uint8)))


def test_errors_are_mlcore_errors():
    from mlcore.errors import MLCoreError

    assert issubclass(preprocess.PreprocessError, MLCoreError)


def test_decoded_image_keeps_its_format_and_exif_rotation_is_applied():
    image = Image.new("L", (30, 10), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(image, "JPEG", exif=exif)
    decoded = decode_image(data)
    assert decoded.format == "JPEG"
    assert decoded.size == (10, 30)


def rgba_bomb(side_px: int) -> bytes:
    """A transparent RGBA canvas with a few strokes: a small file whose preprocessing needs side_px**2 * 40 bytes."""
    image = Image.new("RGBA", (side_px, side_px), (255, 255, 255, 0))
    for x in range(0, side_px, side_px // 8):
        image.paste((0, 0, 0, 255), (x, 0, x + 4, side_px))
    return encode(image)


def test_memory_is_bounded_by_pixels_times_channels_before_decoding():
    # Prepare: inside the pixel limit, four channels over the samples limit, and its pixel data cut off
    data = rgba_bomb(4096)
    assert len(data) < 200_000
    # Execute / Assert: refused from the header, naming the size and the limit, not as a truncated file
    with pytest.raises(
        PreprocessError,
        match=r"4096x4096 RGBA = 67108864 samples \(pixels x 4 channels\), "
        r"more than the limit of 16777216",
    ):
        preprocess_bytes(data[:2000])
    with pytest.raises(PreprocessError, match="more than the limit of 16777216"):
        preprocess_bytes(data)
    grey = encode(Image.new("L", (4096, 4096), 255))
    with pytest.raises(PreprocessError, match="no digit found"):
        preprocess_bytes(grey)
