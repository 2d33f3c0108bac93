"""`mnist/infer`: classify a handwritten digit with the published LeNet-5.

Input, exactly one of:
  {"url": "http(s)://..."}          fetched with a timeout and a byte cap
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
import time
from urllib.parse import urlsplit

import torch

from mlcore.errors import MLCoreError
from mlcore.inference import ModelCache, predict
from mlcore.preprocess import MAX_IMAGE_BYTES, preprocess_bytes
from mlcore.storage import Storage, StorageConfig

MAX_BATCH = 64
DEFAULT_FETCH_TIMEOUT_S = 10.0
MAX_FETCH_TIMEOUT_S = 30.0
CHUNK_BYTES = 64 * 1024

torch.set_num_threads(int(os.environ.get("ACTION_TORCH_THREADS", "1")))
# One per warm container: OpenWhisk reuses the process, so the model loads once.
MODELS = ModelCache()


class BadInput(Exception):
    """The invocation parameters are wrong; the message says what to send instead."""


def fetch_url(url: str, timeout_s: float, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """GETs an http(s) URL, streaming, with a whole-request deadline and a byte cap.

    Raises:
        BadInput: unsupported scheme, unreachable host, HTTP error, too slow, too big.
    """
    import requests
    from urllib3.exceptions import HTTPError as RawHTTPError
    from urllib3.exceptions import ReadTimeoutError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"url must be an http:// or https:// address, got {url[:200]!r}")
    deadline = time.monotonic() + timeout_s
    try:
        with requests.get(url, stream=True, timeout=(timeout_s, timeout_s),
                          headers={"Accept": "image/*"}) as resp:
            if resp.status_code != 200:
                raise BadInput(f"fetching {url} answered HTTP {resp.status_code}; give the URL of an image")
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise BadInput(f"{url} is {declared} bytes, more than the limit of {max_bytes}; "
                               "give a smaller image")
            # read1 returns whatever has arrived, so a server trickling bytes still meets the deadline.
            read1 = getattr(resp.raw, "read1", None)
            chunks, size = [], 0
            while True:
                chunk = read1(CHUNK_BYTES, decode_content=True) if read1 else resp.raw.read(1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise BadInput(f"{url} sent more than the limit of {max_bytes} bytes; give a smaller image")
                if time.monotonic() > deadline:
                    raise BadInput(f"{url} did not finish sending within {timeout_s:g} s; "
                                   "check that the server is up and fast, or send the image as base64")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.exceptions.InvalidSchema as exc:
        raise BadInput(f"{url} redirected to an unsupported scheme; only http and https are fetched") from exc
    except (requests.Timeout, ReadTimeoutError) as exc:
        raise BadInput(f"{url} did not answer within {timeout_s:g} s; check that the server is up and fast, "
                       "or send the image as base64") from exc
    except requests.ConnectionError as exc:
        raise BadInput(f"cannot connect to {parts.netloc} to fetch {url}: check the host name and port "
                       f"({exc.__class__.__name__})") from exc
    except (requests.RequestException, RawHTTPError) as exc:
        raise BadInput(f"fetching {url} failed: {exc}") from exc


def decode_base64(value, where: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where} must be a non-empty base64 string of a PNG or JPEG image")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadInput(f"{where} is larger than the limit of {MAX_IMAGE_BYTES} bytes; send a smaller image")
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
        return [fetch_url(url.strip(), fetch_timeout(args))], False
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
    loaded = MODELS.get(Storage(StorageConfig.from_params(args)), version)
    results = predict(loaded.model, pixels)
    if is_batch:
        return {"predictions": [dict(r, model=loaded.version) for r in results], "model": loaded.version}
    return dict(results[0], model=loaded.version)


def main(args: dict) -> dict:
    try:
        return classify(args)
    except (BadInput, MLCoreError) as exc:
        return {"error": str(exc)}
