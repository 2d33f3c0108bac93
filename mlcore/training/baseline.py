"""The single-process baseline that `bench train` compares against: the same code, data and recipe, all cores.

It is one worker with the whole global batch and no storage: the same Trainer, batch
order, learning-rate schedule and precision, so a ratio to it measures only what
distribution costs. Evaluation is paused out of the clock, as for the serverless rows,
whose times are those of the checkpoints that reached each target.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ..compute import evaluate, resolve_precision
from . import data
from .job import JobConfig
from .trainer import Trainer, initial_vector, model_from_vector


def run_baseline(config: JobConfig, storage=None, threads: int | None = None, targets=(0.98, 0.99)) -> dict:
    """Trains `config` as one process with `threads` threads (default: every core)."""
    import os

    threads = threads or os.cpu_count() or 1
    single = dataclasses.replace(config, workers=1, mode="local", local_steps=1, quorum=0, threads=threads)
    torch.set_num_threads(threads)
    images, labels = data.load(single.data, storage, train=True)
    test_images, test_labels = data.test_set(single, storage)
    size = data.train_size(single, len(labels))
    total, every = single.total_batches(size), single.checkpoint_every(size)
    trainer = Trainer(single, 0, images, labels, size)
    vector = initial_vector(single.seed, single.model)
    history, clock, batch = [], 0.0, 0
    while batch < total:
        steps = min(every - batch % every, total - batch)
        started = time.perf_counter()
        delta, loss = trainer.local_steps(vector, batch, steps)
        vector = vector + delta
        clock += time.perf_counter() - started
        batch += steps
        result = evaluate(model_from_vector(vector, single.model), test_images, test_labels)
        history.append(
            {
                "batch": batch,
                "epoch": round(batch / single.batches_per_epoch(size), 4),
                "accuracy": result["accuracy"],
                "loss": round(result["loss"], 5),
                "train_loss": round(loss, 5),
                "seconds": round(clock, 3),
            }
        )
    return {
        "threads": threads,
        "precision": resolve_precision(single.precision),
        "channels_last": single.channels_last,
        "batch_size": single.batch_size,
        "model": single.model,
        "parameters": vector.numel(),
        "history": history,
        "final_accuracy": history[-1]["accuracy"],
        "train_seconds": round(clock, 3),
        "time_to_accuracy_s": {
            str(t): next((h["seconds"] for h in history if h["accuracy"] >= t), None) for t in targets
        },
    }
