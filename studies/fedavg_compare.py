"""Do two arithmetics train alike? Runs of one configuration, grouped by arithmetic and paired by seed.

"Rounds to 99%" is the first round a noisy curve touches a line; near a plateau it moves by
tens of rounds between seeds of the same arithmetic. Runs with the same seed draw the same
clients every round, so their per-round accuracy differences cancel that shared noise and say
far more about the arithmetic than two first-crossing rounds do. This module reports both,
beside the seed-to-seed spread that the crossing rounds have to be read against.
"""

from __future__ import annotations

import json
import statistics
from itertools import combinations
from pathlib import Path

from fedavg.run import CHECKPOINT, first_round_at, has_checkpoint, load_checkpoint

from .errors import ReportError

THRESHOLDS = (0.95, 0.97, 0.98, 0.985, 0.988, 0.99)
MAY_DIFFER = ("seed", "precision", "channels_last", "rounds", "target")


def load_report(path: Path) -> dict:
    """A run's report from `fedavg run --json`, or from its checkpoint (the directory or the file)."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except OSError as exc:
        raise ReportError(f"cannot read {str(path)[:200]}: {exc.strerror or exc}") from exc
    if is_dir or path.name == CHECKPOINT:
        directory = path if is_dir else path.parent
        if not has_checkpoint(directory):
            raise ReportError(f"{directory} holds no {CHECKPOINT}: not a run's checkpoint directory")
        report = load_checkpoint(directory)[1]
    else:
        try:
            report = json.loads(path.read_text())
        except OSError as exc:
            raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ReportError(f"{path} is not JSON: {exc}") from exc
    shaped = isinstance(report, dict) and isinstance(report.get("config"), dict)
    if not (shaped and isinstance(report.get("rounds"), list)):
        raise ReportError(f"{path} is not a FedAvg run report (no config and rounds; sweeps and tables are not runs)")
    if not all(isinstance(r, dict) and isinstance(r.get("test_acc"), (int, float)) for r in report["rounds"]):
        raise ReportError(f"{path}: a round without test_acc")
    return report


def arithmetic(config: dict) -> str:
    return config.get("precision", "fp32") + (" channels-last" if config.get("channels_last") else "")


def _check_comparable(named: list[tuple[str, dict]]) -> None:
    (first_name, first), others = named[0], named[1:]
    for name, report in others:
        for key in sorted(set(first["config"]) | set(report["config"])):
            a, b = first["config"].get(key), report["config"].get(key)
            if key not in MAY_DIFFER and a != b:
                raise ReportError(
                    f"{name} has {key}={b!r} where {first_name} has {a!r}; only the seed and the arithmetic may differ"
                )


def _spread(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "max_abs": max(abs(v) for v in values),
    }


def compare(named: list[tuple[str, dict]], thresholds=THRESHOLDS, from_round: int = 1) -> dict:
    """Per run, per arithmetic over seeds, and per seed between arithmetics; names label the sources.

    Raises:
        ReportError: fewer than two runs, configurations that differ in more than seed and
            arithmetic, or one seed run twice with the same arithmetic.
    """
    if len(named) < 2:
        raise ReportError("give at least two runs to compare")
    _check_comparable(named)
    runs, seen = [], {}
    for name, report in named:
        config = report["config"]
        accs = [r["test_acc"] for r in report["rounds"]]
        key = (arithmetic(config), config.get("seed"))
        if key in seen:
            raise ReportError(f"{name} and {seen[key]} are both {key[0]} with seed {key[1]}")
        seen[key] = name
        runs.append(
            {
                "source": name,
                "arithmetic": key[0],
                "seed": key[1],
                "rounds_run": len(accs),
                "best_acc": max(accs, default=0.0),
                "reached": {str(t): first_round_at(accs, t) for t in thresholds},
                "accuracy": accs,
            }
        )
    labels = list(dict.fromkeys(r["arithmetic"] for r in runs))
    label_pairs = list(combinations(labels, 2))
    pairs = [p for a, b in label_pairs for p in _pairs(runs, a, b, thresholds, from_round)]
    return {
        "config": {k: v for k, v in named[0][1]["config"].items() if k not in MAY_DIFFER},
        "thresholds": list(thresholds),
        "from_round": from_round,
        "runs": runs,
        "arithmetics": [_group(label, [r for r in runs if r["arithmetic"] == label], thresholds) for label in labels],
        "pairs": pairs,
        "summary": [_summary(a, b, pairs, thresholds) for a, b in label_pairs],
    }


def _group(label: str, runs: list[dict], thresholds) -> dict:
    """Each threshold's rounds over the seeds; the range is what one seed alone can tell apart."""
    reached = {}
    for t in thresholds:
        rounds = [r["reached"][str(t)] for r in runs]
        done = [n for n in rounds if n is not None]
        reached[str(t)] = {
            "runs": len(rounds),
            "reached": len(done),
            "mean": statistics.fmean(done) if done and len(done) == len(rounds) else None,
            "min": min(done, default=None),
            "max": max(done, default=None),
        }
    return {"arithmetic": label, "seeds": [r["seed"] for r in runs], "reached": reached}


def _pairs(runs: list[dict], a: str, b: str, thresholds, from_round: int) -> list[dict]:
    by_seed = {(r["arithmetic"], r["seed"]): r for r in runs}
    out = []
    for seed in [r["seed"] for r in runs if r["arithmetic"] == a]:
        ra, rb = by_seed.get((a, seed)), by_seed.get((b, seed))
        if rb is None:
            continue
        common = min(ra["rounds_run"], rb["rounds_run"])
        span = slice(from_round - 1, common)
        diffs = [y - x for x, y in zip(ra["accuracy"][span], rb["accuracy"][span])]
        rounds = {}
        for t in thresholds:
            na, nb = ra["reached"][str(t)], rb["reached"][str(t)]
            rounds[str(t)] = nb - na if na is not None and nb is not None else None
        out.append(
            {
                "seed": seed,
                "a": a,
                "b": b,
                "rounds_compared": [from_round, common] if diffs else None,
                "acc_b_minus_a": _spread(diffs) if diffs else None,
                "rounds_b_minus_a": rounds,
            }
        )
    return out


def _summary(a: str, b: str, pairs: list[dict], thresholds) -> dict:
    """Means over the seeds both arithmetics ran: the per-round difference, and each threshold's in rounds."""
    pairs = [p for p in pairs if p["a"] == a and p["b"] == b]
    accs = [p["acc_b_minus_a"]["mean"] for p in pairs if p["acc_b_minus_a"]]
    rounds = {}
    for t in thresholds:
        both = [p["rounds_b_minus_a"][str(t)] for p in pairs if p["rounds_b_minus_a"][str(t)] is not None]
        rounds[str(t)] = {"pairs": len(both), "mean": statistics.fmean(both) if both else None}
    return {
        "a": a,
        "b": b,
        "seeds": [p["seed"] for p in pairs],
        "acc_b_minus_a": statistics.fmean(accs) if accs else None,
        "rounds_b_minus_a": rounds,
    }
