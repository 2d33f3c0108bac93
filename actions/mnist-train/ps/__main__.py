"""mnist-train/ps: average the workers' updates of one step, apply the optimizer, publish the next model.

Input: {"job", "step", "workers": [ids whose updates to apply]} plus the storage settings.
A step whose next model version exists is skipped, so a re-delivered call applies nothing twice.
"""

import torch

from mlcore.dist_steps import load_config, ps_step
from mlcore.errors import MLCoreError
from mlcore.storage import warm_storage

torch.set_num_threads(1)
_configs = {}


def main(args: dict) -> dict:
    try:
        job, step = str(args["job"]), int(args["step"])
        workers = [int(w) for w in args["workers"]]
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"give job (name), step (int) and workers (list of ints); {exc.__class__.__name__}: {exc}"}
    try:
        storage = warm_storage(args)
        if job not in _configs:
            _configs[job] = load_config(storage, job)
        return ps_step(storage, _configs[job], step, workers)
    except MLCoreError as exc:
        return {"error": str(exc)}
