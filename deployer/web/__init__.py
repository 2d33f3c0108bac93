"""The inference demo's web page: draw or upload a digit, see what `mnist/infer` makes of it.

The page stores each picture in object storage, hosts it at a URL on this same server,
and invokes `mnist/infer` with that URL through the OpenWhisk client: the course
project's flow (an image URL handed to an action), with a page in front of it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid

from flask import Flask, Response, abort, jsonify, render_template, request

from mlcore.errors import MLCoreError, ObjectNotFoundError
from mlcore.preprocess import decode_image

UPLOAD_PREFIX = "web/uploads"
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_UPLOAD_PIXELS = 2048 * 2048
CONTENT_TYPES = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "GIF": ("gif", "image/gif"),
                 "BMP": ("bmp", "image/bmp"), "WEBP": ("webp", "image/webp")}
_IMAGE_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg|gif|bmp|webp)$")
_EXT_TYPES = {ext: ctype for ext, ctype in CONTENT_TYPES.values()}


class UploadError(Exception):
    """The uploaded file is missing, too big or not an accepted image."""


def create_app(client, storage, *, action: str = "mnist/infer", model: str | None = None,
               public_url: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               invoke_timeout_s: float = 60.0) -> Flask:
    """`client` invokes the action; `storage` keeps the uploads it fetches back by URL.

    `public_url` is where the action can reach this server; by default the address the
    browser used, which is right when the action runs on this machine (the local platform).
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes * 4 // 3 + 64 * 1024
    app.config.update(ACTION=action, MODEL=model, PUBLIC_URL=public_url)

    @app.get("/")
    def index():
        return render_template("index.html", action=action, max_upload_bytes=max_upload_bytes,
                               accepted=", ".join(CONTENT_TYPES))

    @app.get("/api/health")
    def health():
        return jsonify(ok=True, action=action, apihost=client.apihost)

    @app.post("/api/predict")
    def predict():
        try:
            data = _read_upload(max_upload_bytes)
            ext, content_type = _check_image(data)
        except UploadError as exc:
            return jsonify(error=str(exc)), 400
        name = f"{uuid.uuid4().hex}.{ext}"
        storage.put_bytes(f"{UPLOAD_PREFIX}/{name}", data, content_type)
        base = (public_url or request.host_url).rstrip("/")
        image_url = f"{base}/images/{name}"
        return _invoke(client, action, model, image_url, invoke_timeout_s)

    @app.get("/images/<name>")
    def image(name: str):
        if not _IMAGE_NAME.match(name):
            abort(404)
        try:
            data = storage.get_bytes(f"{UPLOAD_PREFIX}/{name}")
        except ObjectNotFoundError:
            abort(404)
        return Response(data, mimetype=_EXT_TYPES[name.rsplit(".", 1)[1]],
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.errorhandler(413)
    def too_large(_exc):
        return jsonify(error=f"the upload is larger than the limit of {max_upload_bytes} bytes; "
                             "send a smaller picture"), 413

    @app.errorhandler(404)
    def not_found(_exc):
        return jsonify(error="not found"), 404

    return app


def _read_upload(max_bytes: int) -> bytes:
    """The picture from a multipart field `image`, or JSON {"image": base64 or data: URL}."""
    if request.files:
        upload = request.files.get("image")
        if upload is None:
            raise UploadError("send the picture in the multipart field `image`")
        data = upload.read(max_bytes + 1)
    else:
        body = request.get_json(silent=True)
        value = body.get("image") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise UploadError("send a multipart field `image`, or JSON {\"image\": \"<base64 or data: URL>\"}")
        if value.startswith("data:"):
            value = value.partition(",")[2]
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UploadError(f"`image` is not valid base64: {exc}") from exc
    if not data:
        raise UploadError("the picture is empty")
    if len(data) > max_bytes:
        raise UploadError(f"the picture is larger than the limit of {max_bytes} bytes; send a smaller one")
    return data


def _check_image(data: bytes) -> tuple[str, str]:
    """(file extension, content type) of an accepted picture; refuses anything else before storing it."""
    try:
        image = decode_image(data, max_bytes=len(data), max_pixels=MAX_UPLOAD_PIXELS)
    except MLCoreError as exc:
        raise UploadError(str(exc)) from exc
    if image.format not in CONTENT_TYPES:
        raise UploadError(f"{image.format} pictures are not accepted; send one of {', '.join(CONTENT_TYPES)}")
    return CONTENT_TYPES[image.format]


def _invoke(client, action: str, model: str | None, image_url: str, timeout_s: float):
    from ..errors import ActivationFailedError, OpenWhiskError

    params = {"url": image_url}
    if model:
        params["model"] = model
    started = time.perf_counter()
    try:
        result = client.invoke(action, params, blocking=True, result=True, timeout_s=timeout_s)
    except ActivationFailedError as exc:
        message = exc.result.get("error") if isinstance(exc.result, dict) else None
        return jsonify(error=message or str(exc), image_url=image_url), 422
    except OpenWhiskError as exc:
        return jsonify(error=f"the platform could not run {action}: {exc}", image_url=image_url), 502
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if "error" in result:
        return jsonify(error=result["error"], image_url=image_url), 422
    return jsonify(digit=result["digit"], probabilities=result["probabilities"], model=result.get("model"),
                   image_url=image_url, latency_ms=latency_ms)
