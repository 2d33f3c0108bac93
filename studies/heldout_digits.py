"""`deployer model heldout`: accuracy on digits the model never trained on, each sent through `mnist/infer`.

Four sets, every picture sent as a user's upload (PNG, base64, in batches of the action's
limit) to the deployed action, which preprocesses it with the page's own code:
  mnist             MNIST's 10,000 test digits (28x28 PNGs);
  printed_heldout   printed digits in the held-out font families of mlcore.fonts' split,
                    which training never draws from (mlcore.printed's generator, HELDOUT_SEED);
  printed_training  the same generator over the training families, another seed than
                    training's: how much of the held-out gap is the fonts;
  sklearn           scikit-learn's 1,797 handwritten digits (43 writers, 8x8, 0-16), each
                    upscaled bilinearly to SKLEARN_SIZE_PX as dark ink on white: a real data set
                    made by others, sent as a small photo would be;
  mnist_8x8         MNIST's test digits made as that set was made (`optdigits_blocks`), then sent
                    as the sklearn set is: what the 8x8 blocks alone cost a model that reads
                    MNIST's own digits, the control for the sklearn score.

A model trained on printed digits records its split (`printed_fonts` in its metadata); a
model whose training families include one the split now holds out is refused, since its
held-out score would be a training score.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import BenchError, SpecError

SETS = ("mnist", "printed_heldout", "printed_training", "sklearn", "mnist_8x8")
HELDOUT_SEED = 1_000_003
TRAINING_SEED = 1_000_033  # not mlcore.augment's bank seeds: renderings training never saw
SKLEARN_SIZE_PX = 64
OPT_WIDTH_PX = 24  # the middle 6 of the 8 block columns: see optdigits_blocks
BATCH = 64  # actions/mnist/infer's MAX_BATCH


REFUSED = -1  # the prediction of a picture the action refused (no digit found in it)


class HeldoutLeakError(SpecError):
    """The model trained on a family the split holds out; its held-out score would mean nothing."""


class Refused(Exception):
    """The action refused one picture of a batch (its preprocessing found no digit), and so the whole batch."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"picture {index} of the batch refused: {reason}")
        self.index = index
        self.reason = reason


def png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def blocks_pictures(blocks: np.ndarray, size_px: int = SKLEARN_SIZE_PX) -> list[bytes]:
    """PNG pictures of 8x8 ink counts 0-16: dark on white, upscaled bilinearly to size_px."""
    from PIL import Image

    pixels = np.rint(255.0 - np.asarray(blocks, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return [png(Image.fromarray(p).resize((size_px, size_px), Image.Resampling.BILINEAR)) for p in pixels]


def sklearn_pictures(size_px: int = SKLEARN_SIZE_PX, limit: int | None = None) -> tuple[list[bytes], np.ndarray]:
    """(PNG pictures, labels) of scikit-learn's digits: 8x8 ink 0-16 -> dark on white, upscaled to size_px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return blocks_pictures(digits.images[:limit], size_px), digits.target[:limit].astype(np.int64)


def optdigits_blocks(image: np.ndarray) -> np.ndarray:
    """An MNIST digit (28x28, white ink on black) made as UCI's optdigits, scikit-learn's set, was made.

    The set's description: the form's digits became 32x32 bitmaps, and each 4x4 block's
    on-pixels were counted into 8x8 at 0-16. Its own statistics fix the rest: every digit
    has ink in the first and the last row, and 97 % none in the first or last column. So the
    bitmap is the ink's box scaled to 32 rows, its width by the same factor up to OPT_WIDTH_PX,
    centred; that gives MNIST's digits 5.6-6.0 of 8 inked columns per class where scikit-learn's
    have 5.8-6.3 (its 1s, written with flag and foot, have 5.3; MNIST's 3.2). Its strokes are
    a little heavier than MNIST's (mean count 4.9 against 3.6 here), which this leaves as it is.
    """
    from PIL import Image

    ink = np.asarray(image) >= 128
    if not ink.any():
        return np.zeros((8, 8), dtype=np.int64)
    rows, cols = np.nonzero(ink)
    box = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    width = max(1, min(OPT_WIDTH_PX, round(box.shape[1] * 32 / box.shape[0])))
    scaled = Image.fromarray(box.astype(np.uint8) * 255).resize((width, 32), Image.Resampling.BILINEAR)
    bitmap = np.zeros((32, 32), dtype=bool)
    left = (32 - width) // 2
    bitmap[:, left : left + width] = np.asarray(scaled) >= 128
    return bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.int64)


def _mnist_test(root, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from mlcore.mnist import load_mnist

    images, labels = load_mnist(train=False, root=root)
    return images[:limit].numpy(), labels[:limit].numpy().astype(np.int64)


def mnist_pictures(root=None, limit: int | None = None) -> tuple[list[bytes], np.ndarray]:
    from PIL import Image

    images, labels = _mnist_test(root, limit)
    return [png(Image.fromarray(img)) for img in images], labels


def mnist_8x8_pictures(root=None, limit: int | None = None) -> tuple[list[bytes], np.ndarray]:
    """MNIST's test digits through `optdigits_blocks`, then pictured as the sklearn set is."""
    images, labels = _mnist_test(root, limit)
    return blocks_pictures(np.stack([optdigits_blocks(img) for img in images])), labels


def printed_pictures(families, count: int, seed: int) -> tuple[list[bytes], np.ndarray, list[str]]:
    """(PNG pictures, labels, design group of each) from mlcore.printed's generator."""
    from mlcore.printed import draw_specs, render_png

    specs = draw_specs(families, count, seed)
    return [render_png(s) for s in specs], np.array([s.digit for s in specs], dtype=np.int64), [s.group for s in specs]


def check_no_leak(model_meta: dict, split) -> None:
    """Raises HeldoutLeakError when the model's recorded training families meet the split's held-out ones."""
    recorded = ((model_meta.get("metrics") or {}).get("printed_fonts") or {}).get("training") or []
    heldout = {f.name for f in split.heldout}
    leaked = sorted(heldout.intersection(recorded))
    if leaked:
        raise HeldoutLeakError(
            f"model {model_meta.get('version')} trained on {', '.join(leaked)}, which this machine's split holds "
            "out (more fonts installed since joined their design groups); retrain it here with `deployer model train`"
        )


def classify(
    invoke: Callable[[list[str]], list[int]],
    pictures: list[bytes],
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
) -> list[int]:
    """Digits the action answers for `pictures`, sent BATCH at a time by `workers` threads, in order.

    The action refuses a whole batch for one picture it finds no digit in; that picture is
    REFUSED (a miss, counted apart by `score`) and the rest of its batch is sent again.
    """
    chunks = [pictures[i : i + BATCH] for i in range(0, len(pictures), BATCH)]

    def send(chunk: list[bytes]) -> list[int]:
        digits = [REFUSED] * len(chunk)
        left = list(range(len(chunk)))
        while left:
            try:
                answered = invoke([base64.b64encode(chunk[i]).decode() for i in left])
            except Refused as exc:
                if not 0 <= exc.index < len(left):
                    raise BenchError(f"the action refused picture {exc.index} of a batch of {len(left)}") from exc
                del left[exc.index]
                continue
            if len(answered) != len(left):
                raise BenchError(f"the action answered {len(answered)} predictions for a batch of {len(left)}")
            for i, digit in zip(left, answered):
                digits[i] = digit
            break
        if on_batch is not None:
            on_batch(len(chunk))
        return digits

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [d for answer in pool.map(send, chunks) for d in answer]


def score(predicted: list[int], labels: np.ndarray, keys: list[str] | None = None) -> dict:
    """Accuracy (a refused picture is a miss), per digit and per key (a design group), the commonest confusions,
    and the accuracy on the pictures the action answered."""
    labels = [int(y) for y in labels]
    right = [p == y for p, y in zip(predicted, labels)]
    refused = sum(p == REFUSED for p in predicted)
    answered = len(labels) - refused
    out = {
        "total": len(labels),
        "correct": int(sum(right)),
        "accuracy": round(sum(right) / len(labels), 5) if labels else 0.0,
        "refused": refused,
        "accuracy_answered": round(sum(right) / answered, 5) if answered else 0.0,
        "per_digit": {
            str(d): round(sum(r for r, y in zip(right, labels) if y == d) / max(1, labels.count(d)), 4)
            for d in range(10)
        },
        "confusions": [
            {"label": y, "predicted": p, "count": n}
            for (y, p), n in Counter((y, p) for p, y in zip(predicted, labels) if p != y).most_common(10)
        ],
    }
    if keys is not None:
        per: dict[str, list[bool]] = {}
        for key, r in zip(keys, right):
            per.setdefault(key, []).append(r)
        out["per_group"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(per.items())}
    return out


def run(
    invoke: Callable[[list[str]], list[int]],
    split,
    *,
    sets: tuple[str, ...] = SETS,
    printed_count: int = 2000,
    limit: int | None = None,
    mnist_root=None,
    progress: Callable[[str], None] = lambda _m: None,
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """The report: one entry per set in `sets`, each scored from the action's answers."""
    unknown = sorted(set(sets) - set(SETS))
    if unknown:
        raise SpecError(f"unknown sets {', '.join(unknown)}; choose from {', '.join(SETS)}")
    report: dict = {"fonts": split.to_dict(), "sets": {}}
    for name in sets:
        keys = None
        if name == "mnist":
            pictures, labels = mnist_pictures(mnist_root, limit)
        elif name == "printed_heldout":
            pictures, labels, keys = printed_pictures(split.heldout, printed_count, HELDOUT_SEED)
        elif name == "printed_training":
            pictures, labels, keys = printed_pictures(split.training, printed_count, TRAINING_SEED)
        elif name == "mnist_8x8":
            pictures, labels = mnist_8x8_pictures(mnist_root, limit)
        else:
            pictures, labels = sklearn_pictures(limit=limit)
        progress(f"{name}: {len(pictures)} pictures through the action")
        report["sets"][name] = score(classify(invoke, pictures, on_batch=on_batch), labels, keys)
    return report
