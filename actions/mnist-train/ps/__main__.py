"""mnist-train/ps: the parameter server of a job with topology ps, for as many rounds as its time limit allows.

Input: {"job"} plus the storage settings bound by the manifest. It averages the workers'
updates of each round, applies them to the model it owns and publishes the next model
(see mlcore.training.ps); near its deadline it saves its state and invokes its successor
with the same input, and answers {"state": "continued", "successor"}.
Output: {"state": "done" | "continued" | "superseded", rounds, batch, the time split}.
"""

import os

from mlcore.errors import MLCoreError
from mlcore.openwhisk import OpenWhiskClient
from mlcore.storage import warm_storage
from mlcore.training.coordinator import load_config
from mlcore.training.ps import ParameterServer


def main(args: dict) -> dict:
    if not isinstance(args.get("job"), str) or not args["job"]:
        return {"error": f"give the job's name as job (a string), got {args.get('job')!r}"}
    job = args["job"]
    try:
        storage = warm_storage(args)
        config = load_config(storage, job)
        deadline = os.environ.get("__OW_DEADLINE")
        own_name = os.environ.get("__OW_ACTION_NAME") or "/_/mnist-train/ps"

        def handoff() -> str:
            with OpenWhiskClient.from_environment() as client:
                return client.invoke(own_name, {"job": job}, blocking=False)["activationId"]

        server = ParameterServer(
            storage,
            config,
            owner=os.environ.get("__OW_ACTIVATION_ID", "ps"),
            deadline_s=int(deadline) / 1000.0 if deadline else None,
            handoff=handoff if os.environ.get("__OW_API_KEY") else None,
        )
        return server.run()
    except MLCoreError as exc:
        return {"error": str(exc)}
