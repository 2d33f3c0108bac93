"""mnist-train/train: the coordinator. Creates or resumes a job, starts and watches its workers.

Input: job settings (see mlcore.training.job.JobConfig; `job` names it) for a new job, or
{"job": NAME, "resume": true} to continue one: the workers still running are adopted, the
others restarted from the newest checkpoint. Before its deadline it invokes itself
(non-blocking) with {"job", "resume": true}, so a job may run longer than one activation.
"""

import os

import torch

from mlcore.errors import MLCoreError
from mlcore.openwhisk import OpenWhiskClient, sibling_action
from mlcore.storage import PARAM_KEYS, storage_from_params
from mlcore.training.coordinator import Coordinator, create_job, load_config
from mlcore.training.job import JobConfig, new_job_name

torch.set_num_threads(1)
CONTROL_KEYS = {"resume", "predecessor"}


def main(args: dict) -> dict:
    try:
        storage = storage_from_params(args)
        settings = {k: v for k, v in args.items() if k not in PARAM_KEYS and k not in CONTROL_KEYS}
        if args.get("resume"):
            if "job" not in args:
                return {"error": 'resume needs the job name: {"job": NAME, "resume": true}'}
            config = load_config(storage, str(args["job"]))
        else:
            config = JobConfig.from_dict({"job": new_job_name(), **settings})
            storage.ensure_bucket()
            create_job(storage, config)
        own_name = os.environ.get("__OW_ACTION_NAME") or "/_/mnist-train/train"
        client = OpenWhiskClient.from_environment()
        deadline = os.environ.get("__OW_DEADLINE")
        owner = os.environ.get("__OW_ACTIVATION_ID", "coordinator")

        def handoff() -> str:
            reply = client.invoke(own_name, {"job": config.job, "resume": True, "predecessor": owner}, blocking=False)
            return reply.get("activationId", "")

        coordinator = Coordinator(
            storage,
            client,
            config,
            worker_action=sibling_action(own_name, "worker"),
            owner=owner,
            deadline_ms=int(deadline) if deadline else None,
            handoff=handoff,
            predecessor=args.get("predecessor"),
        )
        return {"job": config.job, **coordinator.run()}
    except MLCoreError as exc:
        return {"error": str(exc)}
