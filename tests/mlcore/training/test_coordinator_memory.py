"""A coordinator's memory in a warm container: bounded during each job, and back to its floor after it.

The platform kills an activation whose process tree's resident memory passes its limit, and a
warm container runs job after job in one process, so what one job leaves or peaks at counts
against the next. The coordinator runs here in a process of its own, as in its container, on
the real S3 server: each job's checkpoint is put where a worker puts it and the worker's
stats say it is done, so the coordinator's work (adopt, evaluate, write the final model) is
all that runs. The process reads its own RSS and its peak (VmHWM, reset before each job).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
JOBS = 3
# The limits a coordinator must keep, whatever the model: above the RSS a job starts from, its
# peak (the evaluation's activations) and what it leaves behind.
PEAK_MB = 120
LEFT_MB = 24

CHILD = r"""
import json, sys, time
import torch
from mlcore.openwhisk import OpenWhiskClient
from mlcore.storage import Storage, StorageConfig
from mlcore.training.coordinator import Coordinator, create_job
from mlcore.training.job import JobConfig, JobLayout
from mlcore.training.state import state_blob
from mlcore.training.trainer import initial_vector

torch.set_num_threads(1)
args = json.loads(sys.argv[1])
storage = Storage(StorageConfig(**args["storage"]))
client = OpenWhiskClient("http://127.0.0.1:9", "unused:unused")  # nothing is launched: the workers are done


def status():
    with open("/proc/self/status") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return {k: int(fields[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM")}


def job(name, model):
    config = JobConfig(job=name, model=model, data="local", workers=1, epochs=1, batch_size=64, lr=0.05,
                       train_limit=256, test_limit=1000, eval_every=4)
    layout, total = JobLayout(name), config.total_batches(256)
    create_job(storage, config)
    header = {"round": 1, "batch": total, "k": 1, "time": time.time()}
    storage.put_bytes(layout.checkpoint(1), state_blob(initial_vector(1, model), None, header))
    storage.put_json(layout.checkpoint_pointer, header)
    storage.put_json(layout.worker_stats(0), {"state": "done", "batch": total, "owner": "w", "time": time.time()})
    coordinator = Coordinator(storage, client, config, worker_action="/_/mnist-train/worker", owner=name,
                              log=lambda _: None, poll_s=0.05)
    assert coordinator.run()["state"] == "done"


job("warm-up", "lenet5")  # a warm container: imports, the test set and the first evaluation are behind it
rows = []
for n in range(args["jobs"]):
    before = status()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    job(f"wide-{n}", args["model"])
    after = status()
    rows.append({"before": before, "peak": after["VmHWM"], "after": after["VmRSS"]})
print(json.dumps(rows))
"""


def run_jobs(storage_config, model: str, jobs: int) -> list[dict]:
    """{"before", "peak", "after"} MB of each of `jobs` sequential jobs in one fresh process."""
    args = {
        "jobs": jobs,
        "model": model,
        "storage": {
            "endpoint_url": storage_config.endpoint_url,
            "bucket": storage_config.bucket,
            "access_key": storage_config.access_key,
            "secret_key": storage_config.secret_key,
        },
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to read a process's peak")
def test_a_warm_coordinators_memory_stays_bounded_over_sequential_wide_jobs(storage, storage_config, mnist_root):
    # Execute: lenet5x4, the widest model, after a lenet5 job in the same process
    rows = run_jobs(storage_config, "lenet5x4", JOBS)
    # Assert
    floor = rows[0]["before"]
    for row in rows:
        assert row["peak"] - row["before"] < PEAK_MB, rows
        assert row["after"] - floor < LEFT_MB, rows
