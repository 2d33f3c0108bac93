"""`mnist/infer`: classify a handwritten digit with the published LeNet-5.

Input, exactly one of:
  {"url": "http(s)://..."}          fetched with a timeout and a byte cap; internal addresses
                                    (loopback, private, link-local...) are refused unless
                                    `allow_hosts` (comma list of host[:port]) names the host
  {"image": "<base64 PNG/JPEG>"}    a data: URL prefix is accepted
  {"images": ["<base64>", ...]}     a batch of at most MAX_BATCH
plus `model` (a published version, default `latest`) and the storage settings
`s3_endpoint`, `s3_bucket`, `s3_access_key`, `s3_secret_key` (bound by the manifest).

Output: {"digit", "probabilities"[10], "model"}, or {"predictions": [...], "model"} for
a batch. Every bad input answers {"error": "..."} saying what to fix; nothing raises out
of `main`, so the warm container keeps serving.
"""

import base64
import binascii
import os

import torch

from mlcore.errors import MLCoreError
from mlcore.fetch import fetch_url, parse_allow_hosts
from mlcore.inference import ModelCache, predict
from mlcore.preprocess import MAX_IMAGE_BYTES, preprocess_bytes
from mlcore.sizes import human_bytes
from mlcore.storage import Storage, StorageConfig

MAX_BATCH = 64
DEFAULT_FETCH_TIMEOUT_S = 10.0
MAX_FETCH_TIMEOUT_S = 30.0

torch.set_num_threads(int(os.environ.get("ACTION_TORCH_THREADS", "1")))
# One per warm container: OpenWhisk reuses the process, so the model loads once and the S3 client
# is made once per storage setting (making one per request costs more than the inference).
MODELS = ModelCache()
STORES: dict[StorageConfig, Storage] = {}
MAX_STORES = 4


def storage_for(args: dict) -> Storage:
    config = StorageConfig.from_params(args)
    store = STORES.get(config)
    if store is None:
        if len(STORES) >= MAX_STORES:
            STORES.pop(next(iter(STORES)))
        store = STORES[config] = Storage(config)
    return store


class BadInput(Exception):
    """The invocation parameters are wrong; the message says what to send instead."""


def decode_base64(value, where: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where} must be a non-empty base64 string of a PNG or JPEG image")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadInput(f"{where} is larger than the limit of {human_bytes(MAX_IMAGE_BYTES)}; send a smaller image")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"{where} is not valid base64 ({exc}); encode the image bytes with base64") from exc


def fetch_timeout(args: dict) -> float:
    raw = args.get("fetch_timeout_s", DEFAULT_FETCH_TIMEOUT_S)
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"fetch_timeout_s must be a number of seconds, got {raw!r}") from exc
    if not 0 < value <= MAX_FETCH_TIMEOUT_S:
        raise BadInput(f"fetch_timeout_s must be in (0, {MAX_FETCH_TIMEOUT_S:g}], got {raw!r}")
    return value


def images_from(args: dict) -> tuple[list[bytes], bool]:
    """(image bytes, is_batch) from exactly one of url / image / images."""
    given = [k for k in ("url", "image", "images") if args.get(k) not in (None, "")]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise BadInput(f"give exactly one of url, image (base64) or images (list of base64); got {what}")
    if given[0] == "url":
        url = args["url"]
        if not isinstance(url, str):
            raise BadInput(f"url must be a string, got {type(url).__name__}")
        allow_hosts = parse_allow_hosts(args.get("allow_hosts"))
        return [fetch_url(url.strip(), fetch_timeout(args), MAX_IMAGE_BYTES, allow_hosts)], False
    if given[0] == "image":
        return [decode_base64(args["image"], "image")], False
    batch = args["images"]
    if not isinstance(batch, list) or not batch:
        raise BadInput("images must be a non-empty list of base64 strings")
    if len(batch) > MAX_BATCH:
        raise BadInput(f"images holds {len(batch)} items, more than the limit of {MAX_BATCH}; split the batch")
    return [decode_base64(item, f"images[{i}]") for i, item in enumerate(batch)], True


def classify(args: dict) -> dict:
    version = args.get("model") or "latest"
    if not isinstance(version, str):
        raise BadInput(f"model must be a version name or 'latest', got {version!r}")
    blobs, is_batch = images_from(args)
    pixels = []
    for i, blob in enumerate(blobs):
        try:
            pixels.append(preprocess_bytes(blob))
        except MLCoreError as exc:
            where = f"images[{i}]: " if is_batch else ""
            raise BadInput(f"{where}{exc}") from exc
    loaded = MODELS.get(storage_for(args), version)
    results = predict(loaded.model, pixels)
    if is_batch:
        return {"predictions": [dict(r, model=loaded.version) for r in results], "model": loaded.version}
    return dict(results[0], model=loaded.version)


def main(args: dict) -> dict:
    try:
        return classify(args)
    except (BadInput, MLCoreError) as exc:
        return {"error": str(exc)}
