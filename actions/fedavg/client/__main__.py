"""`fedavg/client`: one FedAvg ClientUpdate as an OpenWhisk action.

Reads the global weights and this client's examples from S3 (keys in the parameters),
runs E local epochs, writes the update under the given versioned key and answers keys
and counts only, since OpenWhisk caps payloads at 1 MB. Storage settings come from the
`s3_*` parameters (the manifest binds them from the deployer's environment).
"""

import time

import torch

from fedavg.core import ClientConfig, client_update
from fedavg.errors import FedAvgError
from fedavg.models import MODELS, build_model
from mlcore.compute import PRECISIONS
from mlcore.errors import MLCoreError, ObjectNotFoundError
from mlcore.model import PIXELS, model_input
from mlcore.storage import Storage, StorageConfig

KEYS = ("global_key", "data_key", "update_key")


class BadInput(Exception):
    pass


def _int(args: dict, name: str, default=None, minimum: int = 0) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadInput(f"parameter {name!r} must be an integer >= {minimum}, got {value!r}")
    try:
        number = int(value)
    except ValueError as exc:
        raise BadInput(f"parameter {name!r} must be an integer >= {minimum}, got {value!r}") from exc
    if number < minimum:
        raise BadInput(f"parameter {name!r} must be an integer >= {minimum}, got {value!r}")
    return number


def _float(args: dict, name: str, default: float, positive: bool) -> float:
    value = args.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"parameter {name!r} must be a number, got {value!r}") from exc
    if number < 0 or (positive and number == 0):
        raise BadInput(f"parameter {name!r} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return number


def _parse(args: dict) -> tuple[ClientConfig, dict]:
    missing = [k for k in KEYS if not isinstance(args.get(k), str) or not args.get(k)]
    if missing:
        raise BadInput(
            f"missing string parameter(s) {', '.join(missing)}: the S3 keys of the global weights, "
            "this client's data and where to write its update"
        )
    model = args.get("model", "cnn")
    if model not in MODELS:
        raise BadInput(f"parameter 'model' must be one of {', '.join(MODELS)}, got {model!r}")
    precision = args.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise BadInput(f"parameter 'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    channels_last = args.get("channels_last", False)
    if not isinstance(channels_last, bool):
        raise BadInput(f"parameter 'channels_last' must be true or false, got {channels_last!r}")
    pixels = args.get("pixels", "standardized")
    if pixels not in PIXELS:
        raise BadInput(f"parameter 'pixels' must be one of {', '.join(PIXELS)}, got {pixels!r}")
    config = ClientConfig(
        model=model,
        epochs=_int(args, "epochs", 5, 1),
        batch_size=_int(args, "batch_size", 10) or None,
        lr=_float(args, "lr", 0.05, True),
        mu=_float(args, "mu", 0.0, False),
        precision=precision,
        channels_last=channels_last,
        pixels=pixels,
    )
    extra = {
        "seed": _int(args, "seed", 0),
        "client_id": _int(args, "client_id", 0),
        "threads": _int(args, "threads", 1, 1),
    }
    return config, extra


def main(args: dict) -> dict:
    started = time.perf_counter()
    try:
        config, extra = _parse(args)
    except BadInput as exc:
        return {"error": str(exc)}
    torch.set_num_threads(extra["threads"])
    try:
        storage = Storage(StorageConfig.from_params(args))
        global_state = storage.get_state(args["global_key"])
        data = storage.get_state(args["data_key"])
        images, labels = data["images"], data["labels"]
        state, loss = client_update(
            build_model(config.model), global_state, model_input(images, config.pixels), labels, config, extra["seed"]
        )
        storage.put_state(args["update_key"], state)
    except ObjectNotFoundError as exc:
        return {"error": f"{exc}; check the keys and s3_bucket given to the action"}
    except (MLCoreError, FedAvgError, KeyError, RuntimeError) as exc:
        return {"error": f"client {extra['client_id']} failed: {type(exc).__name__}: {exc}"}
    return {
        "client_id": extra["client_id"],
        "update_key": args["update_key"],
        "num_examples": int(len(labels)),
        "train_loss": loss,
        "duration_s": round(time.perf_counter() - started, 4),
    }
