"""How the training set is split over K clients: IID, the paper's label shards, Dirichlet label skew.

A partition is a list of K int64 index arrays into the training set, disjoint and
covering it exactly once; each is sorted so that the same seed gives the same bytes.
"""

from __future__ import annotations

import numpy as np

from .errors import PartitionError

KINDS = ("iid", "shards", "dirichlet")


def _check(num_examples: int, num_clients: int) -> None:
    if num_clients < 1:
        raise PartitionError(f"need at least 1 client, got {num_clients}")
    if num_examples < num_clients:
        raise PartitionError(f"{num_examples} examples cannot give each of {num_clients} clients one")


def iid(num_examples: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniform random split into K parts whose sizes differ by at most one."""
    _check(num_examples, num_clients)
    perm = rng.permutation(num_examples)
    return [np.sort(p).astype(np.int64) for p in np.array_split(perm, num_clients)]


def _shards_per_label(counts: np.ndarray, num_shards: int) -> np.ndarray:
    """Shards given to each label: proportional to its examples (largest remainder), at least one each."""
    exact = counts / counts.sum() * num_shards
    out = np.maximum(np.floor(exact).astype(np.int64), 1)
    while out.sum() > num_shards:
        out[np.argmax(out)] -= 1
    for label in np.argsort(-(exact - out), kind="stable")[: num_shards - int(out.sum())]:
        out[label] += 1
    return out


def shards(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, shards_per_client: int = 2
) -> list[np.ndarray]:
    """The paper's pathological non-IID split, generalised to any K.

    Sorted by label, cut into K * shards_per_client shards, shards_per_client random
    shards per client (the paper: 200 shards of 300 for K = 100). Shards are cut inside
    each label (a label gets shards in proportion to its examples), so no shard straddles
    two labels and every client holds at most shards_per_client labels. When there are
    fewer shards than labels, the sorted data is cut into K contiguous runs instead,
    which is the fewest labels per client that still covers the data.
    """
    labels = np.asarray(labels)
    _check(len(labels), num_clients)
    if shards_per_client < 1:
        raise PartitionError(f"shards per client must be at least 1, got {shards_per_client}")
    order = np.argsort(labels, kind="stable")
    num_shards = num_clients * shards_per_client
    classes, counts = np.unique(labels, return_counts=True)
    if num_shards < len(classes):
        return [np.sort(p).astype(np.int64) for p in np.array_split(order, num_clients)]
    if num_shards > len(labels):
        raise PartitionError(f"{num_shards} shards need at least as many examples, got {len(labels)}")
    per_label = _shards_per_label(counts, num_shards)
    pieces: list[np.ndarray] = []
    start = 0
    for count, n_shards in zip(counts, per_label):
        pieces.extend(np.array_split(order[start : start + count], n_shards))
        start += count
    assignment = rng.permutation(num_shards)
    return [
        np.sort(np.concatenate([pieces[s] for s in assignment[k::num_clients]])).astype(np.int64)
        for k in range(num_clients)
    ]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_examples: int = 1,
    max_attempts: int = 100,
) -> list[np.ndarray]:
    """Label skew: each label's examples go to clients in Dirichlet(alpha) proportions.

    Small alpha gives each client few labels, large alpha approaches IID. Draws are
    repeated until every client holds at least min_examples.

    Raises:
        PartitionError: alpha is not positive, or no draw gave every client enough examples.
    """
    labels = np.asarray(labels)
    _check(len(labels), num_clients)
    if not alpha > 0:
        raise PartitionError(f"Dirichlet alpha must be positive, got {alpha}")
    classes = np.unique(labels)
    for _ in range(max_attempts):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(idx)).astype(np.int64)[:-1]
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
        out = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in out) >= min_examples:
            return out
    raise PartitionError(
        f"Dirichlet(alpha={alpha}) left a client with fewer than {min_examples} examples in "
        f"{max_attempts} draws; use a larger alpha or fewer clients"
    )


def make_partition(
    kind: str, labels: np.ndarray, num_clients: int, seed: int, *, alpha: float = 0.5, shards_per_client: int = 2
) -> list[np.ndarray]:
    """The partition named `kind`, reproducible from `seed` alone.

    Raises:
        PartitionError: unknown kind or impossible settings.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    labels = np.asarray(labels)
    if kind == "iid":
        return iid(len(labels), num_clients, rng)
    if kind == "shards":
        return shards(labels, num_clients, rng, shards_per_client)
    if kind == "dirichlet":
        return dirichlet(labels, num_clients, rng, alpha)
    raise PartitionError(f"unknown partition {kind!r}; choose one of {', '.join(KINDS)}")


def label_counts(parts: list[np.ndarray], labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """[K, num_classes] examples of each label per client."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


def summary(parts: list[np.ndarray], labels: np.ndarray, num_classes: int = 10) -> dict:
    """Sizes and label spread, for reports and the CLI."""
    counts = label_counts(parts, labels, num_classes)
    sizes = counts.sum(axis=1)
    labels_per_client = (counts > 0).sum(axis=1)
    return {
        "clients": len(parts),
        "examples": int(sizes.sum()),
        "examples_per_client": {"min": int(sizes.min()), "mean": float(sizes.mean()), "max": int(sizes.max())},
        "labels_per_client": {
            "min": int(labels_per_client.min()),
            "mean": float(labels_per_client.mean()),
            "max": int(labels_per_client.max()),
        },
        "label_counts": counts.tolist(),
    }
