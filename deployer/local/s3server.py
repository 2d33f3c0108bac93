"""The embedded S3 HTTP server: path-style S3 REST over an `ObjectStore`, in its own process.

It speaks the subset the project, boto3 and aws-cli use: buckets (create, head, delete,
list), objects (PUT streamed to disk, GET with Range, HEAD, DELETE, CopyObject),
ListObjects V1/V2, DeleteObjects and multipart uploads. Every request is checked with
Signature V4; there is no admin endpoint and no CORS. Run as
`python -m deployer.local.s3server --root DIR --credentials FILE --port N`; it prints
one JSON line with its port once it listens and dies with the process that started it.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import email.utils
import hashlib
import json
import os
import signal
import sys
import threading
import traceback
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from . import sigv4
from .objectstore import CHUNK, ObjectInfo, ObjectStore, S3Error

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_DRAIN = 64 << 20


def _xml(root: str, body: str) -> bytes:
    ns = "" if root == "Error" else f' xmlns="{XMLNS}"'  # AWS's error bodies carry no namespace
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{ns}>{body}</{root}>'.encode()


def _tag(name: str, value) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, length) for a single `bytes=` range; None means the whole object."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            start = max(0, size - int(last))
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
            if start >= size or end < start:
                raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
            return start, end - start + 1
    except ValueError:
        return None
    return start, size - start


class S3Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "deployer-s3"
    sys_version = ""
    server: S3Server

    def log_message(self, format, *args) -> None:
        pass

    def _dispatch(self) -> None:
        self.request_id = uuid.uuid4().hex[:16].upper()
        self._body_left = None
        self._answered = False
        raw_path, _, self.raw_query = self.path.partition("?")
        self.query = {
            k: v
            for k, v in urllib.parse.parse_qs(self.raw_query, keep_blank_values=True).items()
            if not k.startswith("X-Amz-")
        }  # a presigned URL's signature is no operation
        parts = urllib.parse.unquote(raw_path).lstrip("/").split("/", 1)
        bucket, key = parts[0], parts[1] if len(parts) > 1 else ""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            self.payload_hash = sigv4.verify(self.command, raw_path, self.raw_query, headers, self.server.credentials)
            if headers.get("content-encoding", "").startswith("aws-chunked"):
                raise S3Error(501, "NotImplemented", "aws-chunked uploads are not supported; use plain HTTP bodies")
            self._route(bucket, key)
        except S3Error as exc:
            self._error(exc, f"/{bucket}/{key}" if key else f"/{bucket}")
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._error(S3Error(500, "InternalError", f"{type(exc).__name__}: {exc}"), f"/{bucket}/{key}")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    def do_OPTIONS(self) -> None:
        self.request_id = uuid.uuid4().hex[:16].upper()
        self._body_left = None
        self._answered = False
        self._error(S3Error(403, "AccessDenied", "CORS is not enabled on this endpoint"), self.path)

    # routing
    def _route(self, bucket: str, key: str) -> None:
        m, q = self.command, self.query
        if not bucket:
            if m != "GET":
                raise S3Error(405, "MethodNotAllowed", f"{m} on the service is not allowed")
            return self._list_buckets()
        if not key:
            return self._bucket_route(m, bucket)
        if m == "PUT":
            if "uploadId" in q:
                return self._put_part(bucket, key)
            if "x-amz-copy-source" in self.headers:
                return self._copy(bucket, key)
            return self._put(bucket, key)
        if m in ("GET", "HEAD") and not {k for k in q if not k.startswith("response-")} - {"versionId", "partNumber"}:
            return self._get(bucket, key, head=m == "HEAD")
        if m == "DELETE":
            if "uploadId" in q:
                self.server.store.abort_upload(bucket, key, q["uploadId"][0])
            else:
                self.server.store.delete(bucket, key)
            return self._send(204)
        if m == "POST" and "uploads" in q:
            return self._create_upload(bucket, key)
        if m == "POST" and "uploadId" in q:
            return self._complete_upload(bucket, key)
        raise S3Error(501, "NotImplemented", f"{m} {self.path} is not implemented by the embedded S3")

    def _bucket_route(self, m: str, bucket: str) -> None:
        store, q = self.server.store, self.query
        if m == "PUT" and not q:
            self._read_body(limit=1 << 20)
            store.create_bucket(bucket)
            return self._send(200, headers={"Location": f"/{bucket}"})
        if m == "HEAD":
            store.head_bucket(bucket)
            return self._send(200)
        if m == "DELETE" and not q:
            store.delete_bucket(bucket)
            return self._send(204)
        if m == "POST" and "delete" in q:
            return self._delete_objects(bucket)
        if m == "GET" and "location" in q:
            store.head_bucket(bucket)
            return self._send(200, _xml("LocationConstraint", ""))
        if m == "GET" and "uploads" in q:
            store.head_bucket(bucket)
            return self._send(200, _xml("ListMultipartUploadsResult", _tag("Bucket", bucket)))
        if m == "GET" and not q.keys() - {
            "list-type",
            "prefix",
            "delimiter",
            "max-keys",
            "continuation-token",
            "start-after",
            "marker",
            "encoding-type",
            "fetch-owner",
        }:
            return self._list_objects(bucket)
        raise S3Error(501, "NotImplemented", f"{m} {self.path} is not implemented by the embedded S3")

    # bodies
    def _body_chunks(self) -> Iterator[bytes]:
        """The request body, streamed, checked against the signed SHA-256 at its end."""
        length = self.headers.get("content-length")
        if length is None:
            raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        self._body_left = left = int(length)
        sha = hashlib.sha256() if self.payload_hash != sigv4.UNSIGNED else None
        while left > 0:
            chunk = self.rfile.read(min(CHUNK, left))
            if not chunk:
                self.close_connection = True
                raise ConnectionError("client closed the connection mid-body")
            left -= len(chunk)
            self._body_left = left
            if sha:
                sha.update(chunk)
            yield chunk
        if sha and sha.hexdigest() != self.payload_hash:
            raise S3Error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("content-length") is None:
            return b""
        if int(self.headers["content-length"]) > limit:
            raise S3Error(400, "EntityTooLarge", f"request bodies here are at most {limit} bytes")
        return b"".join(self._body_chunks())

    def _drain(self) -> None:
        """Reads what is left of a refused body, so the client sees our answer and keeps the connection."""
        if self._body_left is None:
            try:
                self._body_left = int(self.headers.get("content-length") or 0)
            except ValueError:
                self._body_left = MAX_DRAIN + 1
        if self._body_left > MAX_DRAIN:
            self.close_connection = True
            return
        while self._body_left > 0:
            chunk = self.rfile.read(min(CHUNK, self._body_left))
            if not chunk:
                self.close_connection = True
                return
            self._body_left -= len(chunk)

    # answers
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        stream: Iterator[bytes] | None = None,
        length: int | None = None,
    ) -> None:
        self._answered = True
        self.send_response(status)
        self.send_header("x-amz-request-id", self.request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body and "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(length if length is not None else len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if stream is not None:
            for chunk in stream:
                self.wfile.write(chunk)
        elif body:
            self.wfile.write(body)

    def _error(self, exc: S3Error, resource: str) -> None:
        if self._answered:  # failed mid-body: the client sees a short read, never a second answer
            self.close_connection = True
            return
        self._drain()
        body = _xml(
            "Error",
            _tag("Code", exc.code)
            + _tag("Message", exc.message)
            + _tag("Resource", resource)
            + _tag("RequestId", self.request_id),
        )
        self._send(
            exc.status,
            b"" if self.command == "HEAD" else body,
            headers={"Connection": "close"} if self.close_connection else None,
        )

    # operations
    def _meta_headers(self) -> tuple[str | None, dict]:
        meta = {k.lower()[11:]: v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
        return self.headers.get("content-type"), meta

    def _put(self, bucket: str, key: str) -> None:
        content_type, meta = self._meta_headers()
        storage_class = self.headers.get("x-amz-storage-class", "STANDARD")
        info = self.server.store.put(bucket, key, self._body_chunks(), content_type, meta, storage_class)
        self._send(200, headers={"ETag": f'"{info.etag}"'})

    def _copy(self, bucket: str, key: str) -> None:
        source = urllib.parse.unquote(self.headers["x-amz-copy-source"].partition("?")[0]).lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        self._read_body(limit=0)
        replace = self.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        content_type, meta = self._meta_headers() if replace else (None, None)
        info = self.server.store.copy(src_bucket, src_key, bucket, key, content_type, meta)
        self._send(
            200, _xml("CopyObjectResult", _tag("LastModified", _iso(info.mtime)) + _tag("ETag", f'"{info.etag}"'))
        )

    def _object_headers(self, info: ObjectInfo) -> dict:
        headers = {
            "ETag": f'"{info.etag}"',
            "Last-Modified": email.utils.formatdate(info.mtime, usegmt=True),
            "Content-Type": self.query.get("response-content-type", [info.content_type])[0],
            "Accept-Ranges": "bytes",
        }
        headers.update({f"x-amz-meta-{k}": v for k, v in info.metadata.items()})
        if info.storage_class != "STANDARD":  # as S3: the header is sent for the other classes only
            headers["x-amz-storage-class"] = info.storage_class
        return headers

    def _get(self, bucket: str, key: str, head: bool) -> None:
        store = self.server.store
        info, body = store.open(bucket, key)  # metadata and body of one version, even under a concurrent PUT
        try:
            headers = self._object_headers(info)
            span = _parse_range(self.headers.get("range", ""), info.size)
        except BaseException:
            body.close()
            raise
        if span is None:
            status, (start, length) = 200, (0, info.size)
        else:
            status, (start, length) = 206, span
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{info.size}"
        if head:
            body.close()
        self._send(
            status, headers=headers, stream=None if head else store.read_range(info, start, length, body), length=length
        )

    def _list_buckets(self) -> None:
        items = "".join(
            "<Bucket>" + _tag("Name", name) + _tag("CreationDate", _iso(ts)) + "</Bucket>"
            for name, ts in self.server.store.list_buckets()
        )
        owner = "<Owner><ID>deployer</ID><DisplayName>deployer</DisplayName></Owner>"
        self._send(200, _xml("ListAllMyBucketsResult", owner + f"<Buckets>{items}</Buckets>"))

    def _list_objects(self, bucket: str) -> None:
        q = {k: v[0] for k, v in self.query.items()}
        v2 = q.get("list-type") == "2"
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = max(0, min(int(q.get("max-keys") or 1000), 1000))
        token = q.get("continuation-token")
        after = (
            (base64.urlsafe_b64decode(token.encode()).decode() if token else q.get("start-after", ""))
            if v2
            else q.get("marker", "")
        )
        contents, prefixes, last, truncated = self._collect(bucket, prefix, delimiter, after, max_keys)
        enc = (lambda s: urllib.parse.quote(s, safe="/")) if q.get("encoding-type") == "url" else (lambda s: s)
        body = _tag("Name", bucket) + _tag("Prefix", enc(prefix)) + _tag("MaxKeys", max_keys)
        body += _tag("IsTruncated", "true" if truncated else "false")
        if delimiter:
            body += _tag("Delimiter", enc(delimiter))
        if q.get("encoding-type"):
            body += _tag("EncodingType", q["encoding-type"])
        if v2:
            body += _tag("KeyCount", len(contents) + len(prefixes))
            if token:
                body += _tag("ContinuationToken", token)
            if truncated:
                body += _tag("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode())
        else:
            body += _tag("Marker", enc(after)) + (_tag("NextMarker", enc(last)) if truncated else "")
        body += "".join(
            "<Contents>"
            + _tag("Key", enc(i.key))
            + _tag("LastModified", _iso(i.mtime))
            + _tag("ETag", f'"{i.etag}"')
            + _tag("Size", i.size)
            + _tag("StorageClass", "STANDARD")
            + "</Contents>"
            for i in contents
        )
        body += "".join("<CommonPrefixes>" + _tag("Prefix", enc(p)) + "</CommonPrefixes>" for p in prefixes)
        self._send(200, _xml("ListBucketResult", body))

    def _collect(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[ObjectInfo], list[str], str, bool]:
        contents: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = after
        for info in self.server.store.list(bucket, prefix, after):
            if delimiter:
                cut = info.key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = info.key[: cut + len(delimiter)]
                    if (prefixes and prefixes[-1] == common) or common <= after:
                        continue
                    if len(contents) + len(prefixes) >= max_keys:
                        return contents, prefixes, last, True
                    prefixes.append(common)
                    last = common + "\uffff"
                    continue
            if len(contents) + len(prefixes) >= max_keys:
                return contents, prefixes, last, True
            contents.append(info)
            last = info.key
        return contents, prefixes, last, False

    def _delete_objects(self, bucket: str) -> None:
        self.server.store.head_bucket(bucket)
        try:
            root = ET.fromstring(self._read_body(limit=4 << 20))
        except ET.ParseError as exc:
            raise S3Error(400, "MalformedXML", f"The XML you provided was not well-formed: {exc}") from exc
        ns = {"s3": XMLNS}
        quiet = (root.findtext("s3:Quiet", "", ns) or root.findtext("Quiet", "")).lower() == "true"
        keys = [e.text or "" for e in root.findall("s3:Object/s3:Key", ns) + root.findall("Object/Key")]
        out = []
        for key in keys:
            try:
                self.server.store.delete(bucket, key)
                if not quiet:
                    out.append("<Deleted>" + _tag("Key", key) + "</Deleted>")
            except S3Error as exc:
                out.append(
                    "<Error>" + _tag("Key", key) + _tag("Code", exc.code) + _tag("Message", exc.message) + "</Error>"
                )
        self._send(200, _xml("DeleteResult", "".join(out)))

    def _create_upload(self, bucket: str, key: str) -> None:
        self._read_body(limit=0)
        content_type, meta = self._meta_headers()
        upload_id = self.server.store.create_upload(bucket, key, content_type, meta)
        self._send(
            200,
            _xml(
                "InitiateMultipartUploadResult", _tag("Bucket", bucket) + _tag("Key", key) + _tag("UploadId", upload_id)
            ),
        )

    def _put_part(self, bucket: str, key: str) -> None:
        try:
            number = int(self.query.get("partNumber", ["0"])[0])
        except ValueError:
            raise S3Error(400, "InvalidArgument", "partNumber must be an integer") from None
        etag = self.server.store.put_part(bucket, key, self.query["uploadId"][0], number, self._body_chunks())
        self._send(200, headers={"ETag": f'"{etag}"'})

    def _complete_upload(self, bucket: str, key: str) -> None:
        try:
            root = ET.fromstring(self._read_body(limit=4 << 20))
            ns = {"s3": XMLNS}
            parts = [
                (
                    int(p.findtext("s3:PartNumber", None, ns) or p.findtext("PartNumber")),
                    p.findtext("s3:ETag", None, ns) or p.findtext("ETag") or "",
                )
                for p in root.findall("s3:Part", ns) + root.findall("Part")
            ]
        except (ET.ParseError, TypeError, ValueError) as exc:
            raise S3Error(400, "MalformedXML", f"The XML you provided was not well-formed: {exc}") from exc
        info = self.server.store.complete_upload(bucket, key, self.query["uploadId"][0], parts)
        self._send(
            200,
            _xml(
                "CompleteMultipartUploadResult",
                _tag("Location", f"/{bucket}/{key}")
                + _tag("Bucket", bucket)
                + _tag("Key", key)
                + _tag("ETag", f'"{info.etag}"'),
            ),
        )


class S3Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], store: ObjectStore, credentials: dict[str, str]) -> None:
        self.store = store
        self.credentials = credentials
        super().__init__(address, S3Handler)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the owner dies, even by kill -9: acknowledged writes are on disk already."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--credentials", type=Path, required=True, help="JSON file: access_key, secret_key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int)
    opts = parser.parse_args(argv)
    os.umask(0o077)
    if opts.parent_pid:
        _die_with_parent(opts.parent_pid)
    try:
        creds = json.loads(opts.credentials.read_text())
        store = ObjectStore(opts.root)
        server = S3Server((opts.host, opts.port), store, {creds["access_key"]: creds["secret_key"]})
    except OSError as exc:
        what = (
            f"port {opts.port} on {opts.host} is taken"
            if exc.errno == 98
            else f"{exc.filename or opts.root}: {exc.strerror}"
        )
        print(f"embedded S3 cannot start: {what}", file=sys.stderr, flush=True)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(json.dumps({"port": server.server_port, "pid": os.getpid()}), flush=True)
    with server:
        server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
