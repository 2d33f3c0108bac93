"""`deployer train` and `deployer bench train`: serverless distributed training with progress and reports."""

from __future__ import annotations

import threading
import time

import click

from .output import table, write_report

MODES = ("sync", "local")


def _open(obj, data: str):
    from mlcore.storage import Storage

    from .. import train as training

    target = obj.target
    client = target.client()
    storage = Storage(training.storage_config_for(target))
    training.prepare(target, client, storage, data)
    return target, client, storage


def _watch(client, storage, job: str, activation: str | None, total_steps: int, label: str,
           driver_thread: threading.Thread | None = None, errors: list | None = None) -> None:
    """Progress bar over steps; prints each evaluation. Raises ClickException when the job stops."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mlcore.dist_job import TrainingError

    from .. import train as training

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}")) as progress:
        task = progress.add_task(label, total=total_steps, info="")
        try:
            for event in training.follow(client, storage, job, poll_s=1.0, first_activation=activation):
                kind = event.get("event")
                if kind == "step":
                    progress.update(task, completed=event["step"] + 1,
                                    info=f"loss {event['loss']:.3f}  {event['wall_s'] * 1000:.0f} ms/step")
                elif kind == "eval":
                    progress.console.print(f"epoch {event['epoch']:.2f}: test accuracy {event['accuracy']:.4f}")
                elif kind == "start" and event["step"]:
                    progress.update(task, completed=event["step"])
                    progress.console.print(f"coordinator {event['owner']} continues from step {event['step']}")
                elif kind in ("left_out", "failed", "superseded"):
                    progress.console.print(str(event))
                if errors:
                    raise click.ClickException(str(errors[0]))
                if driver_thread is not None and not driver_thread.is_alive() and errors:
                    raise click.ClickException(str(errors[0]))
        except TrainingError as exc:
            raise click.ClickException(str(exc)) from exc


def _show(summary: dict) -> None:
    rows = [(e["step"], f"{e['epoch']:.2f}", f"{e['accuracy']:.4f}", f"{e['loss']:.4f}") for e in summary["evaluations"]]
    table(["step", "epoch", "test accuracy", "test loss"], rows, title=f"job {summary['job']}")
    mean = summary["step_mean"]
    if mean["wall_s"]:
        table(["per step", "wall", "compute", "S3 get", "S3 put", "waiting", "bytes moved"],
              [("mean", f"{mean['wall_s'] * 1000:.0f} ms", f"{mean['compute_s'] * 1000:.0f} ms",
                f"{mean['s3_get_s'] * 1000:.0f} ms", f"{mean['s3_put_s'] * 1000:.0f} ms",
                f"{mean['wait_s'] * 1000:.0f} ms", f"{mean['bytes'] / 1e6:.2f} MB")])
    gb = summary["gb_s"]
    click.echo(f"final accuracy {summary['final_accuracy']}; {summary['steps']} steps in {summary['elapsed_s']} s; "
               f"communicating {summary['communication_fraction']:.0%} of step time; "
               f"{gb['workers_and_ps'] + gb['coordinator']:.1f} GB-s billed (workers+PS {gb['workers_and_ps']}, "
               f"coordinator {gb['coordinator']}); retries {summary['retries']}; "
               f"left out {len(summary['left_out'])} times; model at {summary['model_key']}")


def run_job(obj, settings: dict, driver: str = "action", resume_job: str | None = None, quiet: bool = False) -> dict:
    """Starts (or resumes) a job, follows it to the end, returns its report."""
    from mlcore.dist_job import TrainingError
    from mlcore.dist_steps import load_config
    from mlcore.mnist import TRAIN_SIZE

    from .. import train as training

    try:
        data = settings.get("data") or "s3"
        target, client, storage = _open(obj, data)
        thread, errors, activation = None, [], None
        if resume_job:
            config = load_config(storage, resume_job)
            training.check_capacity(client, config, driver)
            activation = training.resume(client, storage, resume_job)
        else:
            config = training.new_config(**settings)
            training.check_capacity(client, config, driver)
        if not resume_job and driver == "cli":
            def drive() -> None:
                try:
                    training.drive(target, storage, config)
                except Exception as exc:  # noqa: BLE001 - reported by the watcher in the main thread
                    errors.append(exc)

            thread = threading.Thread(target=drive, daemon=True)
            thread.start()
        elif not resume_job:
            activation = training.start(client, config)
        from mlcore import dist_data

        total = config.total_steps(dist_data.train_size(config, TRAIN_SIZE))
        label = f"{config.job} ({config.mode}, {config.workers} workers)"
        if not quiet:
            click.echo(f"job {config.job}: {total} steps; resume with `deployer train --resume {config.job}`")
        _watch(client, storage, config.job, activation, total, label, thread, errors)
        if thread is not None:
            thread.join()
            if errors:
                raise click.ClickException(str(errors[0]))
        return training.report(client, storage, config.job)
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("train")
@click.option("--workers", default=4, show_default=True, help="Parallel worker actions.")
@click.option("--epochs", default=8, show_default=True)
@click.option("--batch-size", default=128, show_default=True, help="Global batch per step, split over workers.")
@click.option("--mode", type=click.Choice(MODES), default="sync", show_default=True,
              help="sync: average gradients every step; local: K local steps, then average models.")
@click.option("--local-steps", type=int, default=None, help="K for --mode local  [default: 4]")
@click.option("--lr", type=float, default=0.1, show_default=True, help="Peak learning rate (warm-up, then cosine).")
@click.option("--compress", type=click.Choice(("none", "fp16")), default="none", show_default=True)
@click.option("--quorum", type=int, default=0, help="Apply a step once this many workers delivered (0 = all).")
@click.option("--straggler-wait-s", type=float, default=1.0, show_default=True,
              help="With --quorum: how long to wait for the rest.")
@click.option("--data", type=click.Choice(("s3", "local")), default="s3", show_default=True,
              help="Where workers read MNIST (local works on the local platform only).")
@click.option("--train-limit", type=int, default=0, help="Use the first N training images (0 = all).")
@click.option("--eval-every", type=int, default=0, help="Evaluate every N steps (0 = every epoch).")
@click.option("--keep-versions", type=int, default=2, show_default=True,
              help="Model versions kept in S3 while training (0 = all).")
@click.option("--driver", type=click.Choice(("action", "cli")), default="action", show_default=True,
              help="Run the coordinator as the mnist-train/train action or in this process.")
@click.option("--job", "job_name", default=None, help="Job name (default: generated).")
@click.option("--resume", "resume_job", default=None, metavar="JOB", help="Continue JOB from its last model version.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
@click.pass_obj
def train_command(obj, workers, epochs, batch_size, mode, local_steps, lr, compress, quorum, straggler_wait_s,
                  data, train_limit, eval_every, keep_versions, driver, job_name, resume_job, json_path) -> None:
    """Train LeNet-5 on MNIST with serverless workers and a parameter server (tensors through S3)."""
    if mode == "sync" and local_steps not in (None, 1):
        raise click.ClickException("--local-steps applies to --mode local only")
    settings = dict(job=job_name, workers=workers, epochs=epochs, batch_size=batch_size, mode=mode,
                    local_steps=local_steps or (4 if mode == "local" else 1), lr=lr, compress=compress,
                    quorum=quorum, straggler_wait_s=straggler_wait_s, data=data, train_limit=train_limit,
                    eval_every=eval_every, keep_versions=keep_versions)
    summary = run_job(obj, settings, driver, resume_job)
    _show(summary)
    write_report(json_path, summary)


def model_machines(run: dict, targets: list[float]) -> dict:
    """Time per step and to each target on N real machines, from this run's measured parts.

    Workers run in parallel on N machines, so a step costs the slowest worker's S3 get,
    compute and put, then the PS's, then the invocation overhead measured here. Worker
    compute scales with its share of the batch; the PS reads one update per worker.
    """
    steps = run["steps_detail"]
    if not steps:
        return {}
    mean = lambda key: sum(key(s) for s in steps) / len(steps)  # noqa: E731
    worker_busy = mean(lambda s: s["compute_s"] - s["ps"]["compute_s"])
    worker_io = mean(lambda s: s["s3_get_s"] + s["s3_put_s"] - s["ps"]["s3_get_s"] - s["ps"]["s3_put_s"])
    ps_get_per_update = mean(lambda s: s["ps"]["s3_get_s"]) / (run["workers"] + 2)
    ps_rest = mean(lambda s: s["ps"]["compute_s"] + s["ps"]["s3_put_s"])
    overhead = mean(lambda s: s["wait_s"])
    # On this machine N workers share 2 cores: undo that to get one worker's own compute time.
    contention = max(1.0, min(run["workers"], 4) / 2.0)
    compute_full_batch = worker_busy / contention * run["workers"]
    out = {}
    for n in (1, 2, 4, 8, 16):
        step_s = compute_full_batch / n + worker_io + ps_get_per_update * (n + 2) + ps_rest + overhead
        entry = {"step_s": round(step_s, 4), "communication_fraction": round(1 - (compute_full_batch / n + ps_rest)
                                                                             / step_s, 3)}
        for t in targets:
            reached = run["steps_to"].get(str(t))
            entry[f"time_to_{t}_s"] = round(reached * step_s, 1) if reached else None
        out[str(n)] = entry
    return out


NOTE = ("This machine has 2 cores shared by every worker, the PS, the coordinator and the platform: beyond 2 "
        "workers, adding workers cannot shorten compute, so measured time-to-accuracy shows the cost of "
        "communication and invocation, not scaling. model_n_machines extrapolates from the measured per-step "
        "parts (worker compute undone for core sharing, S3 get/put, PS apply, invocation overhead) to N machines.")


@click.command("train")
@click.option("--workers", "workers_list", default="1,2,4,8", show_default=True)
@click.option("--modes", default="sync,local", show_default=True)
@click.option("--epochs", default=8, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--local-steps", default=4, show_default=True)
@click.option("--targets", default="0.98,0.99", show_default=True)
@click.option("--train-limit", type=int, default=0, help="First N training images (0 = all); for quick runs.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
@click.pass_obj
def bench_train_command(obj, workers_list, modes, epochs, batch_size, local_steps, targets, train_limit,
                        json_path) -> None:
    """Time to 98%/99% test accuracy with 1-8 workers per mode, beside the single-process baseline."""
    import torch

    from mlcore.dist_coordinator import read_metrics

    try:
        counts = [int(x) for x in workers_list.split(",") if x.strip()]
        goal = [float(x) for x in targets.split(",") if x.strip()]
    except ValueError as exc:
        raise click.ClickException(f"--workers and --targets take comma-separated numbers: {exc}") from exc
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    if not counts or min(counts) < 1 or any(m not in MODES for m in chosen):
        raise click.ClickException(f"--workers needs positive integers and --modes a subset of {MODES}")

    from mlcore.train import train_lenet5

    click.echo("baseline: single process (mlcore.train.train_lenet5), 1 thread", err=True)
    torch.set_num_threads(1)
    started = time.perf_counter()
    baseline = train_lenet5(epochs=epochs, batch_size=batch_size, lr=0.05, threads=1,
                            train_limit=train_limit or None)
    base = {"seconds": round(time.perf_counter() - started, 2), "history": baseline.history,
            "final_accuracy": baseline.accuracy,
            "time_to_accuracy_s": {str(t): next((h["seconds"] for h in baseline.history
                                                 if h["test_accuracy"] >= t), None) for t in goal}}
    runs: list[dict] = []

    def report(runs: list[dict]) -> dict:
        return {"baseline": base, "runs": [{k: v for k, v in r.items() if k != "steps_detail"} for r in runs],
                "targets": goal, "note": NOTE, "complete": len(runs) == len(chosen) * len(counts),
                "settings": {"epochs": epochs, "batch_size": batch_size, "local_steps": local_steps,
                             "train_limit": train_limit}}

    for mode in chosen:
        for n in counts:
            settings = dict(workers=n, epochs=epochs, batch_size=batch_size, mode=mode,
                            local_steps=local_steps if mode == "local" else 1, train_limit=train_limit)
            summary = run_job(obj, settings, quiet=True)
            from mlcore.storage import Storage

            from .. import train as training

            storage = Storage(training.storage_config_for(obj.target))
            events = read_metrics(storage, summary["job"])
            steps = [e for e in events if e.get("event") == "step"]
            run = {"mode": mode, "workers": n, "job": summary["job"], "final_accuracy": summary["final_accuracy"],
                   "elapsed_s": summary["elapsed_s"],
                   "time_to_accuracy_s": {str(t): training.time_to_accuracy(events, t) for t in goal},
                   "communication_fraction": summary["communication_fraction"], "step_mean": summary["step_mean"],
                   "gb_s": summary["gb_s"], "steps_detail": steps,
                   "steps_to": {str(t): next((e["step"] for e in events if e.get("event") == "eval"
                                              and e["accuracy"] >= t), None) for t in goal}}
            run["model_n_machines"] = model_machines(run, goal)
            runs.append(run)
            write_report(json_path, report(runs), quiet=True)  # finished runs survive a later failure
    rows = [("baseline (1 process)", "-", *[base["time_to_accuracy_s"][str(t)] for t in goal], "-",
             f"{base['final_accuracy']:.4f}")]
    for r in runs:
        ratios = [f"{r['time_to_accuracy_s'][str(t)]} ({r['time_to_accuracy_s'][str(t)] / base['time_to_accuracy_s'][str(t)]:.1f}x)"
                  if r["time_to_accuracy_s"][str(t)] and base["time_to_accuracy_s"][str(t)] else "not reached"
                  for t in goal]
        rows.append((r["mode"], r["workers"], *ratios, f"{r['communication_fraction']:.0%}",
                     f"{r['final_accuracy']:.4f}" if r["final_accuracy"] is not None else "-"))
    table(["run", "workers", *[f"s to {t:.0%} (vs baseline)" for t in goal], "communicating", "final acc"], rows,
          title="bench train")
    click.echo(NOTE)
    write_report(json_path, report(runs))
