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
from .coordinator import eval_batch_size
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
        result = evaluate(
            model_from_vector(vector, single.model), test_images, test_labels, eval_batch_size(single.model)
        )
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


def _floor_worker(config: JobConfig, worker: int, steps: int, start, results) -> None:
    torch.set_num_threads(1)
    images, labels = data.load("local", None, train=True)
    size = data.train_size(config, len(labels))
    trainer = Trainer(config, worker, images, labels, size)
    vector = initial_vector(config.seed, config.model)
    for batch in range(5):
        trainer.gradient(vector, batch)
    start.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for batch in range(5, 5 + steps):
        trainer.gradient(vector, batch)
    results.put((worker, time.perf_counter() - started, time.process_time() - cpu))


def compute_floor(config: JobConfig, steps: int = 200) -> dict:
    """What a sync step costs the job's workers in compute alone, all of them at once on this machine.

    Each worker process computes its share of the global batch with one thread, as in a job,
    and exchanges nothing; no exchange design can make a step cheaper than this. The ratio
    to the baseline's step is the floor of a sync row's ratio on this machine.
    """
    import multiprocessing

    # forked from a server that imported torch once: 8 spawned workers spent longer importing than measuring
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    start, results = context.Barrier(config.workers), context.Queue()
    processes = [
        context.Process(target=_floor_worker, args=(config, w, steps, start, results), daemon=True)
        for w in range(config.workers)
    ]
    for process in processes:
        process.start()
    try:
        measured = [results.get(timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    wall = max(seconds for _, seconds, _ in measured)
    return {
        "workers": config.workers,
        "steps": steps,
        "step_s": round(wall / steps, 6),
        "cpu_per_step_s": round(sum(cpu for _, _, cpu in measured) / steps, 6),
    }
