"""mnist-train/worker: one worker of a training job, for as many rounds as its time limit allows.

Input: {"job", "worker"} plus the storage settings bound by the manifest. It reduces with
its peers through S3 (see mlcore.training.worker); near its deadline it saves its state and
invokes its successor with the same input, and answers {"state": "continued", "successor"}.
Output: {"state": "done" | "continued" | "superseded", rounds, batch, the time split}.
"""

import os

from mlcore.errors import MLCoreError
from mlcore.openwhisk import OpenWhiskClient
from mlcore.storage import warm_storage
from mlcore.training.coordinator import load_config
from mlcore.training.worker import Worker


def main(args: dict) -> dict:
    try:
        job, worker = str(args["job"]), int(args["worker"])
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"give job (name) and worker (int); {exc.__class__.__name__}: {exc}"}
    try:
        storage = warm_storage(args)
        config = load_config(storage, job)
        deadline = os.environ.get("__OW_DEADLINE")
        own_name = os.environ.get("__OW_ACTION_NAME") or "/_/mnist-train/worker"

        def handoff() -> str:
            with OpenWhiskClient.from_environment() as client:
                return client.invoke(own_name, {"job": job, "worker": worker}, blocking=False)["activationId"]

        runner = Worker(
            storage,
            config,
            worker,
            owner=os.environ.get("__OW_ACTIVATION_ID", f"worker-{worker}"),
            deadline_s=int(deadline) / 1000.0 if deadline else None,
            handoff=handoff if os.environ.get("__OW_API_KEY") else None,
        )
        return runner.run()
    except MLCoreError as exc:
        return {"error": str(exc)}
