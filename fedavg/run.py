"""The FedAvg round loop: sample clients, run their updates on an executor, average, evaluate, checkpoint.

Every random choice is a function of (seed, round, client), so a run is reproducible end
to end, any executor gives the same weights, and a resumed run equals an uninterrupted
one. A client that fails is left out and the average re-weighted over the others; the
failure is recorded in the round's entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlcore import compute, weights
from mlcore.errors import DamagedError

from . import partition as partitions
from .core import (
    ClientConfig,
    ClientFailure,
    ClientResult,
    ClientTask,
    RunningAverage,
    client_seed,
    fedavg,
    initial_state,
    sample_clients,
)
from .errors import CheckpointError, FedAvgError
from .models import build_model

CHECKPOINT = "checkpoint.pt"
KEEP = 3  # checkpoints kept per run: the newest and the two before it, to fall back on when one is damaged


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers (not where it runs)."""

    model: str = "cnn"
    clients: int = 100
    frac: float = 0.1
    epochs: int = 5
    batch_size: int | None = 10
    lr: float = 0.05
    mu: float = 0.0
    partition: str = "iid"
    alpha: float = 0.5
    shards_per_client: int = 2
    rounds: int = 50
    target: float | None = None
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    pixels: str = "standardized"

    def client_config(self) -> ClientConfig:
        return ClientConfig(
            self.model, self.epochs, self.batch_size, self.lr, self.mu, self.precision, self.channels_last, self.pixels
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The fields a resumed run must share with its checkpoint (rounds and target may grow).

        fp32 without channels-last is left out, so runs checkpointed before those fields
        existed keep their id and still resume.
        """
        d = self.as_dict()
        d.pop("rounds")
        d.pop("target")
        if d["precision"] == "fp32" and not d["channels_last"]:
            del d["precision"], d["channels_last"]
        if d["pixels"] == "standardized":
            del d["pixels"]
        return d

    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return f"{self.model}-{self.partition}-k{self.clients}-{hashlib.sha256(blob).hexdigest()[:10]}"


@dataclass
class Data:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def load_data(train_limit: int | None = None, test_limit: int | None = None, root: Path | None = None) -> Data:
    """Real MNIST as uint8 images and int64 labels; the limits take the first examples of each split."""
    from mlcore.mnist import load_mnist

    tx, ty = load_mnist(True, root)
    sx, sy = load_mnist(False, root)
    return Data(tx[:train_limit], ty[:train_limit], sx[:test_limit], sy[:test_limit])


def checkpoint_files(directory: Path) -> list[Path]:
    """A run's checkpoints, newest first: checkpoint.pt, then the ones before it (checkpoint.1.pt, ...)."""
    directory = Path(directory)
    return [directory / name for name in (CHECKPOINT, *(f"checkpoint.{i}.pt" for i in range(1, KEEP)))]


def has_checkpoint(directory: Path) -> bool:
    return any(path.is_file() for path in checkpoint_files(directory))


class ReportJSON:
    """A report as a checkpoint's meta JSON, each round's record formatted once, when it is added.

    Formatting the whole report every round made a checkpoint cost O(rounds): 0.34 s at
    round 4,300 of a 2NN run whose rounds take 0.2 s. The text is what json.dumps gives
    for {"report": report}, with "rounds" moved last.
    """

    def __init__(self, rounds: list[dict]) -> None:
        self._rounds = [json.dumps(record) for record in rounds]

    def append(self, record: dict) -> None:
        self._rounds.append(json.dumps(record))

    def meta_json(self, report: dict) -> str:
        rest = json.dumps({key: value for key, value in report.items() if key != "rounds"})
        fields = [rest[1:-1]] if rest != "{}" else []
        fields.append('"rounds": [' + ", ".join(self._rounds) + "]")
        return '{"report": {' + ", ".join(fields) + "}}"


def _save(directory: Path, state: dict, meta_json: str) -> None:
    """Writes the round's checkpoint whole (mlcore.weights, with its digest), keeping the KEEP - 1 before it.

    `meta_json` is ReportJSON.meta_json of the report so far.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CHECKPOINT + ".tmp")
    tmp.write_bytes(weights.encode(state, meta_json=meta_json))
    files = checkpoint_files(directory)
    for older, newer in zip(reversed(files[1:]), reversed(files[:-1])):
        if newer.is_file():
            os.replace(newer, older)
    os.replace(tmp, files[0])


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(global state, report so far) from one checkpoint file, checked against its digest.

    Files from before checkpoints carried a digest (a bare torch zip) are read unchecked,
    those with a digest line before the zip are checked against it (mlcore.weights).

    Raises:
        CheckpointError: missing, unreadable, or not whole (the message names the file and what is wrong).
    """
    path = Path(path)
    try:
        tensors, meta = weights.decode(path.read_bytes(), f"checkpoint {path}")
        if "report" in meta:
            return tensors, meta["report"]
        return tensors["state"], json.loads(tensors["report"])  # written by torch.save, before mlcore.weights
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    except DamagedError as exc:
        raise CheckpointError(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: it holds no state and report ({exc})") from exc


@dataclass
class Resumed:
    """The newest whole checkpoint of a run, and the newer ones refused on the way to it (one line each)."""

    state: dict
    report: dict
    path: Path
    refused: list[str]


def load_newest(directory: Path) -> Resumed:
    """The newest checkpoint that is whole; damaged ones are named in `refused` and skipped.

    Raises:
        CheckpointError: there is none, or none is whole (naming each file and what is wrong with it).
    """
    refused = []
    for path in checkpoint_files(directory):
        if not path.is_file():
            continue
        try:
            state, report = read_checkpoint(path)
        except CheckpointError as exc:
            refused.append(str(exc))
            continue
        return Resumed(state, report, path, refused)
    if refused:
        raise CheckpointError(f"no whole checkpoint in {directory}: {'; '.join(refused)}")
    raise CheckpointError(f"no checkpoint at {Path(directory) / CHECKPOINT}; run without --resume first")


def load_checkpoint(directory: Path) -> tuple[dict, dict]:
    """(global state, report so far) of the newest whole checkpoint in a run's directory.

    Raises:
        CheckpointError: nothing there, or nothing whole.
    """
    newest = load_newest(directory)
    return newest.state, newest.report


def _round_record(
    round_index: int, outcomes: list, loss_acc: tuple[float, float], round_s: float, eval_s: float
) -> dict:
    done = [o for o in outcomes if isinstance(o, ClientResult)]
    failed = [o for o in outcomes if isinstance(o, ClientFailure)]
    n = sum(r.num_examples for r in done)
    return {
        "round": round_index,
        "clients": [o.client_id for o in outcomes],
        "failed": [{"client": f.client_id, "error": f.error} for f in failed],
        "num_examples": n,
        "train_loss": sum(r.train_loss * r.num_examples for r in done) / n if n else None,
        "test_loss": loss_acc[0],
        "test_acc": loss_acc[1],
        "round_s": round_s,
        "eval_s": eval_s,
        "client_s": [r.duration_s for r in done],
    }


def first_round_at(accuracy: list[float], level: float) -> int | None:
    """The 1-based round whose test accuracy first reaches `level` (rounds are numbered from 1)."""
    return next((i + 1 for i, a in enumerate(accuracy) if a >= level), None)


def _reached(report: dict) -> bool:
    target = report["config"].get("target")
    return target is not None and first_round_at([r["test_acc"] for r in report["rounds"]], target) is not None


def summarize(report: dict) -> dict:
    """Adds rounds-to-target, best and final accuracy and time per round to a report."""
    rounds = report["rounds"]
    target = report["config"].get("target")
    reached = first_round_at([r["test_acc"] for r in rounds], target) if target is not None else None
    times = [r["round_s"] for r in rounds]
    report.update(
        rounds_done=len(rounds),
        rounds_to_target=reached,
        final_acc=rounds[-1]["test_acc"] if rounds else None,
        best_acc=max((r["test_acc"] for r in rounds), default=None),
        mean_round_s=sum(times) / len(times) if times else None,
        failed_clients=sum(len(r["failed"]) for r in rounds),
    )
    return report


def run(
    config: RunConfig,
    executor,
    data: Data,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    parts: list[np.ndarray] | None = None,
    stop_at_target: bool = True,
    max_idle_rounds: int = 3,
    on_round: Callable[[dict], None] | None = None,
    log: Callable[[str], None] | None = None,
    stop_when: Callable[[list[dict]], str | None] | None = None,
) -> tuple[dict, dict]:
    """Runs rounds 1..config.rounds (or continues a checkpointed run); returns (report, final weights).

    `log` hears of damaged checkpoints passed over on resume (they are also in the report).
    `parts` replaces the configured partition (tests, custom splits); it must have
    config.clients entries. C=0 runs one client a round, as the paper's m = max(C*K, 1)
    does. A round where every client fails keeps the weights; after max_idle_rounds such
    rounds in a row the cause is systemic (a broken executor), so the run stops with
    FedAvgError instead of burning its budget. `stop_when` sees the rounds so far and may end
    the run early with a reason (a study giving up on a diverged rate); it is in report["stopped"].

    Raises:
        CheckpointError: resume was asked but the checkpoint is missing or from another run.
        FedAvgError: impossible settings.
    """
    _check(config)
    labels = data.train_labels.numpy()
    parts = _partition(config, labels, parts)
    report = _new_report(config, executor.name, parts, labels)
    state = initial_state(config.model, config.seed)
    if resume:
        state = _resume(config, checkpoint_dir, report)
        for line in report.get("checkpoints_refused", []) if log else []:
            log(f"{line}; resumed after round {report['resumed_after_round']} instead")
    model = build_model(config.model)
    test_inputs = compute.prepare_inputs(data.test_images, config.channels_last, config.pixels)
    saved_json = ReportJSON(report["rounds"]) if checkpoint_dir is not None else None
    idle_rounds = 0
    for round_index in range(len(report["rounds"]) + 1, config.rounds + 1):
        if stop_at_target and _reached(report):
            break
        if stop_when is not None and (reason := stop_when(report["rounds"])):
            report["stopped"] = reason
            break
        started = time.perf_counter()
        outcomes, state, updated = average_round(executor, configure_round(config, parts, round_index), state)
        idle_rounds = 0 if updated else idle_rounds + 1
        round_s = time.perf_counter() - started
        started = time.perf_counter()
        loss_acc = _evaluate(
            model, state, test_inputs, data.test_labels, getattr(executor, "eval_threads", None), config.channels_last
        )
        record = _round_record(round_index, outcomes, loss_acc, round_s, time.perf_counter() - started)
        report["rounds"].append(record)
        if saved_json is not None:
            saved_json.append(record)
            _save(Path(checkpoint_dir), state, saved_json.meta_json(report))
        if on_round is not None:
            on_round(record)
        if idle_rounds >= max_idle_rounds:
            raise _stalled(idle_rounds, round_index, outcomes)
    report["final_state_sha256"] = state_digest(state)
    return summarize(report), state


def _new_report(config: RunConfig, executor_name: str, parts: list[np.ndarray], labels: np.ndarray) -> dict:
    """What the run's numbers depend on, recorded before the first round so every checkpoint carries it."""
    return {
        "config": config.as_dict(),
        "executor": executor_name,
        "run_id": config.run_id(),
        "arithmetic": compute.describe(),
        "partition": partitions.summary(parts, labels),
        "rounds": [],
    }


def _stalled(idle_rounds: int, round_index: int, outcomes: list) -> FedAvgError:
    """Rounds in a row without any update point at a systemic cause, which more rounds will not fix."""
    return FedAvgError(
        f"no client returned an update in {idle_rounds} rounds in a row (last round "
        f"{round_index}, e.g. client {outcomes[0].client_id}: {outcomes[0].error}); "
        f"the checkpoint keeps the rounds before, fix the cause and --resume"
    )


def _check(config: RunConfig) -> None:
    if not 0 <= config.frac <= 1:
        raise FedAvgError(f"client fraction must be in [0, 1] (0: one client a round), got {config.frac}")
    if config.epochs < 1 or config.rounds < 0:
        raise FedAvgError(f"epochs must be >= 1 and rounds >= 0, got {config.epochs} and {config.rounds}")


def _partition(config: RunConfig, labels: np.ndarray, parts: list[np.ndarray] | None) -> list[np.ndarray]:
    if parts is None:
        parts = partitions.make_partition(
            config.partition,
            labels,
            config.clients,
            config.seed,
            alpha=config.alpha,
            shards_per_client=config.shards_per_client,
        )
    if len(parts) != config.clients:
        raise FedAvgError(f"partition has {len(parts)} clients, config says {config.clients}")
    return parts


def _resume(config: RunConfig, checkpoint_dir: Path | None, report: dict) -> dict:
    """The weights of the newest whole checkpoint; its rounds go into `report`, so the loop continues after them.

    Damaged newer checkpoints are named in the report and renamed to *.damaged, out of the rotation.
    """
    newest = load_newest(checkpoint_dir)
    state, saved = newest.state, newest.report
    for path in checkpoint_files(checkpoint_dir)[: checkpoint_files(checkpoint_dir).index(newest.path)]:
        if path.is_file():
            os.replace(path, path.with_name(path.name + ".damaged"))
    if newest.refused:
        report["checkpoints_refused"] = newest.refused
    try:
        saved_identity = RunConfig(**saved["config"]).identity()
    except TypeError as exc:
        raise CheckpointError(
            f"checkpoint in {checkpoint_dir} has a configuration this version cannot read: {exc}"
        ) from exc
    if saved_identity != config.identity():
        raise CheckpointError(f"checkpoint in {checkpoint_dir} is from another configuration: {saved_identity}")
    report["rounds"] = saved["rounds"]
    report["resumed_after_round"] = len(saved["rounds"])
    return state


def configure_round(config: RunConfig, parts: list[np.ndarray], round_index: int) -> list[ClientTask]:
    """The round's ClientUpdates (Flower's configure_fit): which clients, on which examples, with which seeds."""
    client_config = config.client_config()
    return [
        ClientTask(k, round_index, client_seed(config.seed, round_index, k), parts[k], client_config)
        for k in sample_clients(config.clients, config.frac, config.seed, round_index)
    ]


def average_round(executor, tasks: list[ClientTask], state: dict) -> tuple[list, dict, bool]:
    """(outcomes without their weights, new global weights, whether any client returned) of one round.

    Each update is folded into a RunningAverage as the executor streams it, in client order
    (the tasks' order, which is `fedavg`'s summation order), and dropped: the parent holds the
    executor's window of updates, not the round's m. Weighted by the examples the tasks hold,
    the average has `fedavg`'s floats whenever every client with examples returns. When one
    fails midway, the weights of those folded before it were wrong and their updates are
    gone, so the survivors run again (every update is a function of its task and seed) and
    are folded over their own total: `fedavg`'s floats again, for the price of a second pass
    in a round that lost a client. The outcomes recorded are the first pass's.
    An executor with only `run_round` (a wrapper, a test double) is averaged the same way.
    """
    outcomes: dict[int, ClientResult | ClientFailure] = {}
    expected = max(sum(len(task.indices) for task in tasks), 1)
    while True:
        average, failed = RunningAverage(expected), False
        for outcome in _stream(executor, tasks, state):
            if isinstance(outcome, ClientResult):
                average.add(outcome.state, outcome.num_examples)
                outcomes.setdefault(outcome.client_id, dataclasses.replace(outcome, state={}))
            else:
                failed = True
                outcomes[outcome.client_id] = outcome
        if not failed or average.examples == average.expected_examples or not average.count:
            break
        tasks = [task for task in tasks if isinstance(outcomes[task.client_id], ClientResult)]
        expected = sum(outcomes[task.client_id].num_examples for task in tasks)
    listed = sorted(outcomes.values(), key=lambda o: o.client_id)
    return (listed, average.result(), True) if average.count else (listed, state, False)


def _stream(executor, tasks: list[ClientTask], state: dict):
    if hasattr(executor, "stream_round"):
        return executor.stream_round(tasks, state)
    return sorted(executor.run_round(tasks, state), key=lambda o: o.client_id)


def aggregate_round(state: dict, outcomes: list) -> tuple[dict, bool]:
    """(new global weights, True) from the clients that returned (Flower's aggregate_fit, failures as data).

    A round where every client failed keeps the weights: (state, False).
    """
    done = [o for o in outcomes if isinstance(o, ClientResult)]
    return (fedavg(done), True) if done else (state, False)


def run_resumable(
    config: RunConfig,
    executor,
    data: Data,
    checkpoint_root: Path | None,
    *,
    stop_at_target: bool = True,
    on_round: Callable[[dict], None] | None = None,
    stop_when: Callable[[list[dict]], str | None] | None = None,
) -> dict:
    """`run`, checkpointed under checkpoint_root/<run id> and continuing that checkpoint when there is one.

    Studies of hundreds of rounds (229 for the paper's non-IID CNN) outlast a session; this
    lets a bench or sweep be stopped and started again without losing the rounds done,
    and shares checkpoints with `deployer fedavg run` of the same configuration.
    """
    directory = Path(checkpoint_root) / config.run_id() if checkpoint_root is not None else None
    resume = directory is not None and has_checkpoint(directory)
    report, _ = run(
        config,
        executor,
        data,
        checkpoint_dir=directory,
        resume=resume,
        stop_at_target=stop_at_target,
        on_round=on_round,
        stop_when=stop_when,
    )
    if directory is not None:
        report["checkpoint_dir"] = str(directory)
    return report


def label_rounds(on_round: Callable[[str, dict], None] | None, label: str) -> Callable[[dict], None] | None:
    """`run`'s per-round callback for one setting of a study, whose rounds on_round tells apart by label."""
    return (lambda record: on_round(label, record)) if on_round else None


def run_setting(
    config: RunConfig,
    make_executor: Callable,
    data: Data,
    checkpoint_root: Path | None,
    label: str,
    on_round: Callable[[str, dict], None] | None,
    *,
    stop_at_target: bool = True,
) -> dict:
    """`run_resumable` for one setting of a study, on its own executor; on_round gets (label, record).

    A fresh executor per setting keeps one setting's broken workers out of the next.
    """
    with make_executor() as executor:
        return run_resumable(
            config,
            executor,
            data,
            checkpoint_root,
            stop_at_target=stop_at_target,
            on_round=label_rounds(on_round, label),
        )


def _evaluate(
    model, state: dict, inputs: torch.Tensor, labels: torch.Tensor, threads: int | None, channels_last: bool
) -> tuple[float, float]:
    """(loss, accuracy) of the weights, in fp32; it runs while the executor is idle, so on the executor's threads.

    `inputs` are the test images prepared once for the run (compute.prepare_inputs), not every round.
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model.load_state_dict(state)
        result = compute.evaluate_inputs(model, inputs, labels, channels_last=channels_last)
        return result["loss"], result["accuracy"]
    finally:
        torch.set_num_threads(before)


def state_digest(state: dict) -> str:
    """A short fingerprint of weights, to compare executors and resumed runs in reports."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
