"""mnist-train/worker: pull a model version, compute on this worker's shard, push the update to S3.

Input: {"job", "step", "worker"} plus the storage settings bound by the manifest.
Output: the step's timing breakdown (seconds in S3 get/put and compute, bytes moved).
"""

import torch

from mlcore.dist_steps import load_config, worker_step
from mlcore.errors import MLCoreError
from mlcore.storage import warm_storage

torch.set_num_threads(1)
_configs = {}


def main(args: dict) -> dict:
    try:
        job, step, worker = str(args["job"]), int(args["step"]), int(args["worker"])
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"give job (name), step (int) and worker (int); {exc.__class__.__name__}: {exc}"}
    try:
        storage = warm_storage(args)
        if job not in _configs:
            _configs[job] = load_config(storage, job)
        return worker_step(storage, _configs[job], step, worker)
    except MLCoreError as exc:
        return {"error": str(exc)}
