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
                    made by others, sent as a small photo would be.

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

SETS = ("mnist", "printed_heldout", "printed_training", "sklearn")
HELDOUT_SEED = 1_000_003
TRAINING_SEED = 1_000_033  # not mlcore.augment's bank seeds: renderings training never saw
SKLEARN_SIZE_PX = 64
BATCH = 64  # actions/mnist/infer's MAX_BATCH


class HeldoutLeakError(SpecError):
    """The model trained on a family the split holds out; its held-out score would mean nothing."""


def png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def sklearn_pictures(size_px: int = SKLEARN_SIZE_PX, limit: int | None = None) -> tuple[list[bytes], np.ndarray]:
    """(PNG pictures, labels) of scikit-learn's digits: 8x8 ink 0-16 -> dark on white, upscaled to size_px."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(255.0 - digits.images[:limit] * (255.0 / 16.0)).astype(np.uint8)
    pictures = [png(Image.fromarray(p).resize((size_px, size_px), Image.Resampling.BILINEAR)) for p in pixels]
    return pictures, digits.target[:limit].astype(np.int64)


def mnist_pictures(root=None, limit: int | None = None) -> tuple[list[bytes], np.ndarray]:
    from PIL import Image

    from mlcore.mnist import load_mnist

    images, labels = load_mnist(train=False, root=root)
    images, labels = images[:limit].numpy(), labels[:limit].numpy()
    return [png(Image.fromarray(img)) for img in images], labels.astype(np.int64)


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
    """Digits the action answers for `pictures`, sent BATCH at a time by `workers` threads, in order."""
    chunks = [pictures[i : i + BATCH] for i in range(0, len(pictures), BATCH)]

    def send(chunk: list[bytes]) -> list[int]:
        digits = invoke([base64.b64encode(p).decode() for p in chunk])
        if len(digits) != len(chunk):
            raise BenchError(f"the action answered {len(digits)} predictions for a batch of {len(chunk)}")
        if on_batch is not None:
            on_batch(len(chunk))
        return digits

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [d for answer in pool.map(send, chunks) for d in answer]


def score(predicted: list[int], labels: np.ndarray, keys: list[str] | None = None) -> dict:
    """Accuracy, per digit and per key (a design group), and the commonest confusions."""
    labels = [int(y) for y in labels]
    right = [p == y for p, y in zip(predicted, labels)]
    out = {
        "total": len(labels),
        "correct": int(sum(right)),
        "accuracy": round(sum(right) / len(labels), 5) if labels else 0.0,
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
        else:
            pictures, labels = sklearn_pictures(limit=limit)
        progress(f"{name}: {len(pictures)} pictures through the action")
        report["sets"][name] = score(classify(invoke, pictures, on_batch=on_batch), labels, keys)
    return report
