"""The inference demo's web page: draw or upload a digit, see what `mnist/infer` makes of it.

The page stores each picture in object storage, hosts it at a URL on this same server,
and invokes `mnist/infer` with that URL through the OpenWhisk client: the course
project's flow (an image URL handed to an action), with a page in front of it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from urllib.parse import urlsplit

from flask import Flask, Response, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from mlcore.errors import MLCoreError, ObjectNotFoundError, StorageError
from mlcore.preprocess import decode_image
from mlcore.sizes import human_bytes

from ..errors import DeployerError
from .uploads import UPLOAD_PREFIX, Uploads

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_UPLOAD_PIXELS = 2048 * 2048
CONTENT_TYPES = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "WEBP": ("webp", "image/webp"),
}
_IMAGE_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg|gif|bmp|webp)$")
_EXT_TYPES = {ext: ctype for ext, ctype in CONTENT_TYPES.values()}
# The page loads only its own script and style; data:/blob: for pictures the user picked or drew.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

log = logging.getLogger(__name__)

__all__ = ["UPLOAD_PREFIX", "UploadError", "Uploads", "create_app"]


class UploadError(DeployerError):
    """The uploaded file is missing, too big or not an accepted image."""


def create_app(
    client,
    storage,
    *,
    action: str = "mnist/infer",
    model: str | None = None,
    public_url: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    invoke_timeout_s: float = 60.0,
    uploads: Uploads | None = None,
) -> Flask:
    """`client` invokes the action; `storage` keeps the uploads it fetches back by URL.

    `public_url` is where the action can reach this server; by default the address the
    server is bound to (`server.bind` records it), never the request's Host header, which
    any client chooses. Each invoke allow-lists that host in the action's `allow_hosts`,
    since the action refuses loopback and private addresses otherwise.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes * 4 // 3 + 64 * 1024
    app.config.update(
        ACTION=action, MODEL=model, PUBLIC_URL=public_url, BOUND_URL=None, MAX_UPLOAD_BYTES=max_upload_bytes
    )
    uploads = uploads or Uploads(storage)
    _guard(app)
    _register_page(app, client, uploads, action, max_upload_bytes)
    _register_predict(app, client, uploads, action, model, max_upload_bytes, invoke_timeout_s)
    _register_images(app, uploads)
    return app


def _register_page(app: Flask, client, uploads: Uploads, action: str, max_upload_bytes: int) -> None:
    """The page itself and the health check it polls."""

    @app.get("/")
    def index():
        return render_template(
            "index.html",
            action=action,
            max_upload=human_bytes(max_upload_bytes),
            accepted=", ".join(CONTENT_TYPES),
            keep_minutes=round(uploads.max_age_s / 60),
        )

    @app.get("/api/health")
    def health():
        return jsonify(ok=True, action=action, apihost=client.apihost)


def _register_predict(
    app: Flask,
    client,
    uploads: Uploads,
    action: str,
    model: str | None,
    max_upload_bytes: int,
    invoke_timeout_s: float,
) -> None:
    """Stores the picture, invokes the action with its URL, and frees the picture unless the user kept it."""

    @app.post("/api/predict")
    def predict():
        base = (app.config["PUBLIC_URL"] or app.config["BOUND_URL"] or "").rstrip("/")
        if not base:
            return jsonify(
                error="this server does not know the address the action should fetch from; "
                "start it with `deployer serve` or give it --public-url"
            ), 500
        try:
            data, keep = _read_upload(max_upload_bytes)
            ext, content_type = _check_image(data)
        except UploadError as exc:
            return jsonify(error=str(exc)), 400
        name = uploads.put(data, ext, content_type)
        try:
            answer, status = _invoke(
                client, action, model, f"{base}/images/{name}", urlsplit(base).netloc, invoke_timeout_s
            )
        finally:
            uploads.release(name, keep=keep)
        answer["kept"] = keep
        return jsonify(answer), status


def _register_images(app: Flask, uploads: Uploads) -> None:
    """Serves the stored pictures the action fetches by URL; names are checked, so nothing else is reachable."""

    @app.get("/images/<name>")
    def image(name: str):
        if not _IMAGE_NAME.match(name):
            abort(404)
        try:
            data = uploads.get(name)
        except ObjectNotFoundError:
            abort(404)
        return Response(
            data, mimetype=_EXT_TYPES[name.rsplit(".", 1)[1]], headers={"Cache-Control": "private, max-age=3600"}
        )


_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def own_origins(app: Flask) -> set[str]:
    """The origins this page is: where it is bound (under each loopback name) and --public-url; never a request's.

    A request's Host header is whatever its sender chose: a page on an attacker's name that
    resolves to 127.0.0.1 (DNS rebinding) sends its own name there, and its own origin.
    """
    own = set()
    for url in (app.config["PUBLIC_URL"], app.config["BOUND_URL"]):
        if url:
            parts = urlsplit(url)
            own.add(f"{parts.scheme}://{parts.netloc}".lower())
    bound = urlsplit(app.config["BOUND_URL"] or "")
    if bound.hostname in ("127.0.0.1", "::1") and bound.port:
        own.update(f"http://{name}:{bound.port}" for name in _LOOPBACK_NAMES)
    return own


def _guard(app: Flask) -> None:
    """Host and origin checks, security headers on every response, JSON for every error."""

    @app.before_request
    def own_host_and_origin_only():
        own = own_origins(app)
        if own and request.host.lower() not in {origin.split("://", 1)[1] for origin in own}:
            return jsonify(
                error=f"a request for host {request.host[:100]!r} was refused: this page answers only as "
                f"{', '.join(sorted(own))}"
            ), 403
        origin = request.headers.get("Origin")
        if request.method != "POST" or origin is None:
            return None
        if origin.rstrip("/").lower() not in own:
            return jsonify(
                error=f"a post from {origin[:100]} was refused: this page accepts posts only from itself (same origin)"
            ), 403
        return None

    @app.after_request
    def security_headers(response):
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.errorhandler(StorageError)
    def storage_down(exc):
        log.warning("page storage failed: %s", exc)
        return jsonify(
            error="the page's object storage cannot be reached, so the picture was not stored; check "
            "that the platform is up (`deployer status`) and try again"
        ), 503

    @app.errorhandler(413)
    def too_large(_exc):
        limit = human_bytes(app.config["MAX_UPLOAD_BYTES"])
        return jsonify(error=f"the upload is larger than the limit of {limit}; send a smaller picture"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc):
        message = "not found" if exc.code == 404 else exc.description
        return jsonify(error=message), exc.code

    @app.errorhandler(500)
    def internal_error(exc):
        log.error("page request failed", exc_info=getattr(exc, "original_exception", None))
        return jsonify(error="the page's server failed on this request; its log has the details"), 500


def _read_upload(max_bytes: int) -> tuple[bytes, bool]:
    """(picture, keep) from a multipart field `image`, or JSON {"image": base64 or data: URL};
    `keep` (form field or JSON) asks to host the picture after classification, until it expires."""
    if request.files:
        upload = request.files.get("image")
        if upload is None:
            raise UploadError("send the picture in the multipart field `image`")
        data = upload.read(max_bytes + 1)
        keep = request.form.get("keep", "").lower() in ("1", "true", "on", "yes")
    else:
        body = request.get_json(silent=True)
        value = body.get("image") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise UploadError('send a multipart field `image`, or JSON {"image": "<base64 or data: URL>"}')
        if value.startswith("data:"):
            value = value.partition(",")[2]
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UploadError(f"`image` is not valid base64: {exc}") from exc
        keep = body.get("keep") is True
    if not data:
        raise UploadError("the picture is empty")
    if len(data) > max_bytes:
        # a multipart upload was read only to the limit plus one byte, so its real size is unknown here
        raise UploadError(f"the picture is larger than the limit of {human_bytes(max_bytes)}; send a smaller one")
    return data, keep


def _check_image(data: bytes) -> tuple[str, str]:
    """(file extension, content type) of an accepted picture; refuses anything else before storing it."""
    try:
        image = decode_image(data, max_bytes=len(data), max_pixels=MAX_UPLOAD_PIXELS)
    except MLCoreError as exc:
        raise UploadError(str(exc)) from exc
    if image.format not in CONTENT_TYPES:
        raise UploadError(f"{image.format} pictures are not accepted; send one of {', '.join(CONTENT_TYPES)}")
    return CONTENT_TYPES[image.format]


def _invoke(
    client, action: str, model: str | None, image_url: str, page_host: str, timeout_s: float
) -> tuple[dict, int]:
    """(answer, HTTP status) of one classification; the page's own host is the one the action may fetch from."""
    from ..errors import ActivationFailedError, OpenWhiskError

    params = {"url": image_url, "allow_hosts": page_host}
    if model:
        params["model"] = model
    started = time.perf_counter()
    try:
        result = client.invoke(action, params, blocking=True, result=True, timeout_s=timeout_s)
    except ActivationFailedError as exc:
        message = exc.result.get("error") if isinstance(exc.result, dict) else None
        return {"error": message or str(exc), "image_url": image_url}, 422
    except OpenWhiskError as exc:
        return {"error": f"the platform could not run {action}: {exc}", "image_url": image_url}, 502
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if "error" in result:
        return {"error": result["error"], "image_url": image_url}, 422
    return {
        "digit": result["digit"],
        "probabilities": result["probabilities"],
        "model": result.get("model"),
        "image_url": image_url,
        "latency_ms": latency_ms,
    }, 200
