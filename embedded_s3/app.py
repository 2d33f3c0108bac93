"""The embedded S3 as a WSGI application: path-style S3 REST over an `ObjectStore`.

What it speaks: buckets (create, head, delete, list, location), objects (PUT streamed to
disk, GET and HEAD with ranges, parts and conditions, DELETE, CopyObject, attributes),
ListObjects V1 and V2, ListObjectVersions of its unversioned buckets, DeleteObjects,
multipart uploads (UploadPart, UploadPartCopy, ListParts, ListMultipartUploads, complete
and abort), Content-MD5 and the `x-amz-checksum-*` family verified and kept, aws-chunked
bodies, and conditional writes. Every request is checked with Signature V4 first.

One addition of its own: a GET of a key that is not there yet, carrying `x-deployer-wait-ms`,
is answered when the key is put (or with NoSuchKey after that long, 2 s at most), so a
reader waiting for another's write pays one request instead of a poll each few milliseconds.
S3 ignores the header, and a client that sends it still polls there.

What it does not speak answers 501 NotImplemented in S3's XML, never a 200 that ignores
what was asked: ACLs other than private, policies, versioning, lifecycle, encryption,
object lock, tagging, CORS, website, logging, notifications, browser POST uploads.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import email.utils
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from xml.sax.saxutils import escape

from . import checksums, sigv4
from .chunked import AwsChunked
from .errors import (
    S3Error,
    invalid_argument,
    no_key,
    not_implemented,
    precondition_failed,
)
from .store import CHUNK, KEPT_HEADERS, Meta, ObjectInfo, ObjectStore, Payload

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
OWNER_ID = "deployer"
MAX_XML_BYTES = 4 << 20
MAX_DELETE_KEYS = 1000
# a GET of a key not there yet may ask to be answered when it is put, up to this long: S3 has no
# notification, and each poll that finds nothing is a request (S3 ignores the header; clients poll)
WAIT_HEADER = "x-deployer-wait-ms"
MAX_WAIT_MS = 2000
_REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}
# sub-resources of features this server does not have: asked for, they are refused, never ignored
UNSUPPORTED = {
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "website",
}
_FEATURE_HEADERS = {
    "x-amz-grant-": "ACL grants",
    "x-amz-server-side-encryption": "server-side encryption",
    "x-amz-copy-source-server-side-encryption": "server-side encryption",
    "x-amz-tagging": "object tagging",
    "x-amz-object-lock-": "object lock",
    "x-amz-website-redirect-location": "website redirects",
    "x-amz-mfa": "MFA delete",
    "x-amz-write-offset-bytes": "appendable objects",
}
_FEATURE_PREFIXES = tuple(_FEATURE_HEADERS)
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_TOKEN = b"after:"  # continuation tokens say where the last page ended
_ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


# XML
def _xml(root: str, body: str) -> bytes:
    ns = "" if root == "Error" else f' xmlns="{XMLNS}"'  # AWS's error bodies carry no namespace
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{ns}>{body}</{root}>'.encode()


def _tag(name: str, value) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _owner() -> str:
    return "<Owner>" + _tag("ID", OWNER_ID) + _tag("DisplayName", OWNER_ID) + "</Owner>"


def _checksum_tags(summary: dict | None, with_type: bool = True) -> str:
    if not summary:
        return ""
    out = _tag(f"Checksum{summary['algorithm']}", summary["value"])
    return out + (_tag("ChecksumType", summary["type"]) if with_type else "")


def _parse_xml(data: bytes) -> ET.Element:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise S3Error(400, "MalformedXML", f"The XML you provided was not well-formed: {exc}") from exc
    for el in root.iter():  # drop the namespace, which clients may or may not send
        el.tag = el.tag.rpartition("}")[2]
    return root


# request parsing
def _int_param(value: str | None, name: str, low: int, high: int | None = None, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise invalid_argument(f"{name} is required")
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_argument(f"Provided {name} not an integer or within integer range: {value[:40]!r}") from None
    if number < low:
        raise invalid_argument(f"Argument {name} must be an integer of at least {low}: {number}")
    return number if high is None else min(number, high)


def _parse_http_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return calendar.timegm(parsed[:9]) - (parsed[9] or 0)


def _text(value: str) -> str:
    """A header value as the client meant it: SDKs send text as UTF-8 bytes, which arrive latin-1 decoded."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _header_value(text: str) -> str:
    """Text as a header carries it: latin-1 where it fits (what HTTP clients decode), else RFC 2047, as S3 does."""
    try:
        text.encode("latin-1")
        if "\r" not in text and "\n" not in text:
            return text
    except UnicodeError:
        pass
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() + "?="


def _etags(value: str) -> list[str]:
    return [t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()]


class Request:
    """One S3 request as this application sees it: method, bucket, key, query, lower-case headers, body stream."""

    def __init__(self, environ: dict) -> None:
        self.method = environ["REQUEST_METHOD"]
        self.request_id = uuid.uuid4().hex[:16].upper()
        raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        self.raw_path, _, self.raw_query = raw.partition("?")
        raw_headers = environ.get("wsgiserver.headers")
        if raw_headers is not None:
            self.headers: dict[str, str] = {}
            for name, value in raw_headers:
                k, v = name.decode("latin-1").lower(), value.decode("latin-1")
                self.headers[k] = self.headers[k] + "," + v if k in self.headers else v
        else:  # another WSGI server: rebuild from the CGI names
            self.headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
            for cgi, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
                if environ.get(cgi):
                    self.headers[name] = environ[cgi]
        self.input = environ["wsgi.input"]
        self.file_wrapper = environ.get("wsgi.file_wrapper")
        # a presigned URL's own parameters are its signature, not an operation
        self.query = {
            k: v[-1]
            for k, v in urllib.parse.parse_qs(self.raw_query, keep_blank_values=True).items()
            if not k.startswith("X-Amz-")
        }
        try:
            path = urllib.parse.unquote_to_bytes(self.raw_path).decode("utf-8")
        except UnicodeDecodeError:
            path = None
        self.bucket, self.key = "", ""
        if path is not None:
            bucket, _, key = path.lstrip("/").partition("/")
            self.bucket, self.key = bucket, key
        self.unparsable = path is None

    @property
    def resource(self) -> str:
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def read_small(self, limit: int = MAX_XML_BYTES) -> bytes:
        """The whole body of a request that carries a document (XML), up to `limit` bytes."""
        data = self.input.read(limit + 1)
        if len(data) > limit:
            raise S3Error(400, "MaxMessageLengthExceeded", f"Your request was too big: at most {limit} bytes here")
        return data


Response = tuple[int, dict, object]  # status, headers, body (bytes or a file wrapper)


class S3App:
    """The WSGI application; `store` holds the objects, `credentials` maps access keys to secrets."""

    def __init__(
        self,
        store: ObjectStore,
        credentials: dict[str, str],
        region: str = "us-east-1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.credentials = credentials
        self.region = region
        self.clock = clock  # what signatures are dated against

    def __call__(self, environ, start_response):
        req = Request(environ)
        try:
            status, headers, body = self.handle(req)
        except S3Error as exc:
            status, headers, body = self.error_response(req, exc)
        headers = {"x-amz-request-id": req.request_id, "x-amz-id-2": req.request_id, **headers}
        if isinstance(body, bytes):
            if body and "Content-Type" not in headers:
                headers["Content-Type"] = "application/xml"
            headers.setdefault("Content-Length", str(len(body)))
            body = [b"" if req.method == "HEAD" else body]
        start_response(f"{status} {_REASONS.get(status, 'Unknown')}", list(headers.items()))
        return body

    def error_response(self, req: Request, exc: S3Error) -> Response:
        body = _xml(
            "Error",
            _tag("Code", exc.code)
            + _tag("Message", exc.message)
            + _tag("Resource", req.resource)
            + _tag("RequestId", req.request_id),
        )
        return exc.status, dict(exc.headers), body

    @staticmethod
    def refusal(status: int, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
        """The HTTP server's own refusals (too many connections, a stalled client, oversized headers) in S3's XML."""
        code, status = {
            400: ("BadRequest", 400),
            408: ("RequestTimeout", 400),
            411: ("MissingContentLength", 411),
            413: ("EntityTooLarge", 400),
            431: ("RequestHeaderSectionTooLarge", 400),
            503: ("SlowDown", 503),
        }.get(status, ("InternalError", 500))
        body = _xml("Error", _tag("Code", code) + _tag("Message", message))
        return f"{status} {_REASONS[status]}", [("Content-Type", "application/xml")], body

    # dispatch
    def handle(self, req: Request) -> Response:
        if req.method == "OPTIONS":  # a CORS preflight: no CORS here
            if req.header("origin") is None:
                raise S3Error(400, "BadRequest", "Insufficient information. Origin request header needed.")
            raise S3Error(403, "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.")
        if req.unparsable:
            raise S3Error(400, "InvalidURI", "Couldn't parse the specified URI.")
        if req.method == "POST" and "multipart/form-data" in (req.header("content-type") or ""):
            raise not_implemented("POST object uploads (HTML forms)")  # signed inside the form, not the request
        signed = sigv4.verify(req.method, req.raw_path, req.raw_query, req.headers, self.credentials, self.clock())
        self._refuse_features(req)
        if not req.bucket:
            if req.method != "GET":
                raise S3Error(405, "MethodNotAllowed", f"{req.method} on the service is not allowed")
            return self.list_buckets(req)
        if not req.key:
            return self._bucket(req, signed)
        return self._object(req, signed)

    def _refuse_features(self, req: Request) -> None:
        asked = UNSUPPORTED & req.query.keys()
        if asked and not (req.method == "GET" and asked == {"acl"}):
            raise not_implemented(f"the {', '.join(sorted(asked))} sub-resource ({req.method})")
        if "acl" in req.query:
            raise not_implemented("reading ACLs")
        for name in req.headers:
            if name.startswith(_FEATURE_PREFIXES):
                if name == "x-amz-tagging-directive" and req.headers[name] == "COPY":
                    continue
                what = next(w for p, w in _FEATURE_HEADERS.items() if name.startswith(p))
                raise not_implemented(f"{what} ({name})")
        acl = req.header("x-amz-acl")
        if acl is not None and acl.strip().lower() not in ("private", "bucket-owner-full-control"):
            raise not_implemented(f"canned ACL {acl!r} (everything here is private to its keys)")

    def _bucket(self, req: Request, signed: sigv4.Signed) -> Response:
        m, q = req.method, req.query
        if m == "PUT":
            if "versioning" in q:
                raise not_implemented("bucket versioning")
            return self.create_bucket(req)
        if m == "HEAD":
            self.store.head_bucket(req.bucket)
            return 200, {"x-amz-bucket-region": self.region}, b""
        if m == "DELETE":
            self.store.delete_bucket(req.bucket)
            return 204, {}, b""
        if m == "POST":
            if "delete" in q:
                return self.delete_objects(req, signed)
            raise not_implemented("POST object uploads (HTML forms)")
        if m != "GET":
            raise S3Error(405, "MethodNotAllowed", f"{m} on a bucket is not allowed")
        if "location" in q:
            location = self.store.bucket_info(req.bucket).get("location", "")
            return 200, {}, _xml("LocationConstraint", escape(location))
        if "versioning" in q:
            self.store.head_bucket(req.bucket)
            return 200, {}, _xml("VersioningConfiguration", "")
        if "uploads" in q:
            return self.list_uploads(req)
        if "versions" in q:
            return self.list_objects(req, versions=True)
        return self.list_objects(req)

    def _object(self, req: Request, signed: sigv4.Signed) -> Response:
        m, q = req.method, req.query
        if m == "PUT":
            if "uploadId" in q:
                if "x-amz-copy-source" in req.headers:
                    return self.copy_part(req)
                return self.put_part(req, signed)
            if "x-amz-copy-source" in req.headers:
                return self.copy_object(req)
            return self.put_object(req, signed)
        if m in ("GET", "HEAD"):
            self._check_version(q)
            if "attributes" in q and m == "GET":
                return self.object_attributes(req)
            if "uploadId" in q and m == "GET":
                return self.list_parts(req)
            return self.get_object(req, head=m == "HEAD")
        if m == "DELETE":
            if "uploadId" in q:
                self.store.abort_upload(req.bucket, req.key, q["uploadId"])
                return 204, {}, b""
            self._check_version(q)
            self.store.delete(req.bucket, req.key)
            return 204, {}, b""
        if m == "POST":
            if "uploads" in q:
                return self.create_upload(req)
            if "uploadId" in q:
                return self.complete_upload(req)
            raise not_implemented(f"POST {req.resource} with {sorted(q) or 'no sub-resource'}")
        raise S3Error(405, "MethodNotAllowed", f"{m} on an object is not allowed")

    @staticmethod
    def _check_version(q: dict) -> None:
        version = q.get("versionId")
        if version is not None and version != "null":
            raise invalid_argument(f"Invalid version id specified: {version[:80]!r} (buckets here are unversioned)")

    # buckets
    def list_buckets(self, req: Request) -> Response:
        q = req.query
        limit = _int_param(q.get("max-buckets"), "max-buckets", 1, 10000, default=10000)
        prefix = q.get("prefix", "")
        after = self._decode_token(q["continuation-token"]) if "continuation-token" in q else ""
        names = [(n, ts) for n, ts in self.store.list_buckets() if n.startswith(prefix) and n > after]
        page, more = names[:limit], len(names) > limit
        items = "".join(
            "<Bucket>"
            + _tag("Name", n)
            + _tag("CreationDate", _iso(ts))
            + _tag("BucketRegion", self.region)
            + "</Bucket>"
            for n, ts in page
        )
        body = _owner() + f"<Buckets>{items}</Buckets>"
        if more:
            body += _tag("ContinuationToken", self._encode_token(page[-1][0]))
        if prefix:
            body += _tag("Prefix", prefix)
        return 200, {}, _xml("ListAllMyBucketsResult", body)

    def create_bucket(self, req: Request) -> Response:
        data = req.read_small(1 << 20)
        location = ""
        if data.strip():
            root = _parse_xml(data)
            location = root.findtext("LocationConstraint") or ""
            if location not in ("", self.region):
                raise S3Error(
                    400,
                    "InvalidLocationConstraint",
                    f"The specified location-constraint is not valid: {location[:60]!r} "
                    f"(this endpoint is {self.region})",
                )
        lock = req.header("x-amz-bucket-object-lock-enabled", "false").lower()
        if lock == "true":
            raise not_implemented("object lock")
        ownership = req.header("x-amz-object-ownership")
        if ownership not in (None, "BucketOwnerEnforced"):
            raise not_implemented(f"object ownership {ownership!r}")
        self.store.create_bucket(req.bucket, location)
        return 200, {"Location": f"/{req.bucket}"}, b""

    # listing
    @staticmethod
    def _encode_token(key: str) -> str:
        return base64.urlsafe_b64encode(_TOKEN + key.encode("utf-8", "surrogatepass")).decode()

    @staticmethod
    def _decode_token(token: str) -> str:
        try:
            raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
            if raw.startswith(_TOKEN):
                return raw[len(_TOKEN) :].decode("utf-8", "surrogatepass")
        except (binascii.Error, ValueError):
            pass
        raise invalid_argument("The continuation token provided is incorrect")

    def list_objects(self, req: Request, versions: bool = False) -> Response:
        q = req.query
        v2 = not versions and q.get("list-type") == "2"
        if not versions and q.get("list-type") not in (None, "2"):
            raise invalid_argument(f"list-type must be 2 when given: {q['list-type'][:20]!r}")
        encoding = q.get("encoding-type")
        if encoding not in (None, "url"):
            raise invalid_argument(f"Invalid Encoding Method specified in Request: {encoding[:20]!r}")
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = _int_param(q.get("max-keys"), "max-keys", 0, 1000, default=1000)
        if v2:
            token = q.get("continuation-token")
            after = self._decode_token(token) if token else q.get("start-after", "")
        elif versions:
            after = q.get("key-marker", "")
            if q.get("version-id-marker") not in (None, "", "null"):
                raise invalid_argument("Invalid version id specified")
        else:
            after = q.get("marker", "")
        self.store.head_bucket(req.bucket)
        contents, prefixes, last, truncated = self._collect(req.bucket, prefix, delimiter, after, max_keys)
        url = encoding == "url"

        def enc(s: str) -> str:
            return urllib.parse.quote(s, safe="/") if url else s

        body = _tag("Name", req.bucket) + _tag("Prefix", enc(prefix) if (v2 or versions) else prefix)
        body += _tag("MaxKeys", max_keys)
        if delimiter:
            body += _tag("Delimiter", enc(delimiter))
        if encoding:
            body += _tag("EncodingType", encoding)
        body += _tag("IsTruncated", "true" if truncated else "false")
        if v2:
            body += _tag("KeyCount", len(contents) + len(prefixes))
            if "continuation-token" in q:
                body += _tag("ContinuationToken", q["continuation-token"])
            if "start-after" in q:
                body += _tag("StartAfter", enc(q["start-after"]))
            if truncated:
                body += _tag("NextContinuationToken", self._encode_token(last))
        elif versions:
            body += _tag("KeyMarker", enc(after)) + _tag("VersionIdMarker", q.get("version-id-marker", ""))
            if truncated:
                body += _tag("NextKeyMarker", enc(last)) + _tag("NextVersionIdMarker", "null")
        else:
            body += _tag("Marker", enc(after))
            if truncated:
                body += _tag("NextMarker", enc(last))
        owner = _owner() if (not v2 or q.get("fetch-owner") == "true") else ""
        element = "Version" if versions else "Contents"
        for i in contents:
            body += f"<{element}>" + _tag("Key", enc(i.key))
            if versions:
                body += _tag("VersionId", "null") + _tag("IsLatest", "true")
            body += _tag("LastModified", _iso(i.mtime)) + _tag("ETag", f'"{i.etag}"') + _tag("Size", i.size)
            body += owner + _tag("StorageClass", i.storage_class)
            if i.checksum:
                body += _tag("ChecksumAlgorithm", i.checksum["algorithm"]) + _tag("ChecksumType", i.checksum["type"])
            body += f"</{element}>"
        body += "".join("<CommonPrefixes>" + _tag("Prefix", enc(p)) + "</CommonPrefixes>" for p in prefixes)
        root = "ListVersionsResult" if versions else "ListBucketResult"
        return 200, {}, _xml(root, body)

    def _collect(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[ObjectInfo], list[str], str, bool]:
        """One page: objects and common prefixes after `after`; the last name listed; whether more follow."""
        contents: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = after
        if max_keys == 0:
            return contents, prefixes, last, False
        for key, name in self.store.keys(bucket, prefix, after):
            common = None
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    if (prefixes and prefixes[-1] == common) or common <= after:
                        continue  # rolled into a prefix listed already (on this page or an earlier one)
            if len(contents) + len(prefixes) >= max_keys:
                return contents, prefixes, last, True
            if common is not None:
                prefixes.append(common)
                last = common
                continue
            info = self.store.info(bucket, name)
            if info is None:
                continue  # deleted meanwhile
            contents.append(info)
            last = key
        return contents, prefixes, last, False

    # objects: reading
    def _conditions(self, req: Request, info: ObjectInfo) -> None:
        """GET and HEAD preconditions, as RFC 7232 orders them: 412 or 304 (raised as S3Error)."""
        modified = int(info.mtime)
        if_match = req.header("if-match")
        if if_match is not None:
            if not self._etag_matches(if_match, info):
                raise precondition_failed("If-Match")
        else:
            since = _parse_http_date(req.header("if-unmodified-since"))
            if since is not None and modified > since:
                raise precondition_failed("If-Unmodified-Since")
        not_modified = S3Error(304, "NotModified", "Not Modified", {"ETag": f'"{info.etag}"'})
        if_none = req.header("if-none-match")
        if if_none is not None:
            if self._etag_matches(if_none, info):
                raise not_modified
        else:
            since = _parse_http_date(req.header("if-modified-since"))
            if since is not None and modified <= since:
                raise not_modified

    @staticmethod
    def _etag_matches(value: str, info: ObjectInfo | None) -> bool:
        if info is None:
            return False
        tags = _etags(value)
        return "*" in tags or info.etag in tags

    def _object_headers(self, req: Request, info: ObjectInfo) -> dict:
        headers = {
            "ETag": f'"{info.etag}"',
            "Last-Modified": _http_date(info.mtime),
            "Content-Type": info.content_type,
            "Accept-Ranges": "bytes",
        }
        for name in KEPT_HEADERS:
            if name in info.headers:
                headers[name.title()] = _header_value(info.headers[name])
        headers.update({f"x-amz-meta-{k}": _header_value(v) for k, v in info.metadata.items()})
        if info.storage_class != "STANDARD":  # as S3: the header is sent for the other classes only
            headers["x-amz-storage-class"] = info.storage_class
        for param, name in _RESPONSE_OVERRIDES.items():
            if param in req.query:
                headers[name] = req.query[param]
        return headers

    def get_object(self, req: Request, head: bool) -> Response:
        part = req.query.get("partNumber")
        number = _int_param(part, "partNumber", 1, None) if part is not None else None
        if number is not None and number > 10000:
            raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
        info, f = self._open(req, head)
        try:
            self._conditions(req, info)
            headers = self._object_headers(req, info)
            want_checksum = (req.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
            if number is not None:
                start, length = info.part_span(number)
                status = 206 if length else 200
                if length:
                    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{info.size}"
                if info.parts:
                    headers["x-amz-mp-parts-count"] = str(len(info.parts))
                if want_checksum and info.checksum:
                    value = info.parts[number - 1][1] if info.parts else info.checksum["value"]
                    if value:
                        headers[checksums.header_name(info.checksum["algorithm"])] = value
                        headers["x-amz-checksum-type"] = info.checksum["type"]
            else:
                span = self._range(req.header("range"), info.size)
                if span is None:
                    status, (start, length) = 200, (0, info.size)
                    if want_checksum and info.checksum:
                        headers[checksums.header_name(info.checksum["algorithm"])] = info.checksum["value"]
                        headers["x-amz-checksum-type"] = info.checksum["type"]
                else:
                    status, (start, length) = 206, span
                    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{info.size}"
            headers["Content-Length"] = str(length)
        except BaseException:
            f.close()
            raise
        if head or not length:
            f.close()
            return status, headers, [b""]
        f.seek(start)
        return status, headers, self._file_body(req, f, length)

    def _open(self, req: Request, head: bool):
        """The object, after waiting for it up to WAIT_HEADER's milliseconds on a GET that asks to."""
        wait = None if head else req.header(WAIT_HEADER)
        if wait is not None:
            try:
                wait_s = min(max(int(wait), 0), MAX_WAIT_MS) / 1000
            except ValueError:
                raise invalid_argument(f"{WAIT_HEADER} must be a number of milliseconds: {wait[:20]!r}") from None
        try:
            return self.store.open(req.bucket, req.key)
        except S3Error as exc:
            if exc.code != "NoSuchKey" or wait is None:
                raise
        self.store.wait_for(req.bucket, req.key, wait_s)
        return self.store.open(req.bucket, req.key)

    @staticmethod
    def _file_body(req: Request, f, length: int):
        if req.file_wrapper is not None:
            return req.file_wrapper(f, CHUNK)
        return ObjectStore.read_range(ObjectInfo("", length, "", 0.0), f.tell(), length, f)

    @staticmethod
    def _range(header: str | None, size: int) -> tuple[int, int] | None:
        """(start, length) of a single `bytes=` range; None for the whole object (no Range, or one S3 ignores)."""
        if not header:
            return None
        unit, _, spec = header.strip().partition("=")
        if unit.strip().lower() != "bytes" or "," in spec:
            return None  # S3 serves one range; several, or another unit, get the whole object
        first, dash, last = spec.strip().partition("-")
        first, last = first.strip(), last.strip()
        if not dash or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
            return None
        unsatisfiable = S3Error(
            416,
            "InvalidRange",
            "The requested range is not satisfiable",
            {"Content-Range": f"bytes */{size}"},
        )
        if not first:  # the last N bytes
            n = int(last)
            if n == 0 or size == 0:
                raise unsatisfiable
            return max(0, size - n), min(n, size)
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None  # not a valid range: ignored, as RFC 7233 says
        if start >= size:
            raise unsatisfiable
        return start, end - start + 1

    def object_attributes(self, req: Request) -> Response:
        wanted = [a.strip() for a in (req.header("x-amz-object-attributes") or "").split(",") if a.strip()]
        unknown = [a for a in wanted if a not in _ATTRIBUTES]
        if not wanted or unknown:
            raise invalid_argument(
                f"Invalid attribute name specified: {', '.join(unknown) or '(none)'}; "
                f"one or more of {', '.join(_ATTRIBUTES)}"
            )
        max_parts = _int_param(req.header("x-amz-max-parts"), "max-parts", 0, 1000, default=1000)
        marker = _int_param(req.header("x-amz-part-number-marker"), "part-number-marker", 0, default=0)
        info = self.store.head(req.bucket, req.key)
        self._conditions(req, info)
        body = ""
        if "ETag" in wanted:
            body += _tag("ETag", info.etag)
        if "Checksum" in wanted and info.checksum:
            body += "<Checksum>" + _checksum_tags(info.checksum) + "</Checksum>"
        if "ObjectParts" in wanted and info.parts:
            numbered = [(n, p) for n, p in enumerate(info.parts, 1) if n > marker]
            page = numbered[:max_parts]
            truncated = len(numbered) > max_parts
            body += "<ObjectParts>" + _tag("TotalPartsCount", len(info.parts)) + _tag("PartsCount", len(info.parts))
            body += _tag("PartNumberMarker", marker) + _tag("MaxParts", max_parts)
            body += _tag("IsTruncated", "true" if truncated else "false")
            if page:
                body += _tag("NextPartNumberMarker", page[-1][0])
            for n, (size, value) in page:
                body += "<Part>" + _tag("PartNumber", n) + _tag("Size", size)
                if value and info.checksum:
                    body += _tag(f"Checksum{info.checksum['algorithm']}", value)
                body += "</Part>"
            body += "</ObjectParts>"
        if "StorageClass" in wanted:
            body += _tag("StorageClass", info.storage_class)
        if "ObjectSize" in wanted:
            body += _tag("ObjectSize", info.size)
        return 200, {"Last-Modified": _http_date(info.mtime)}, _xml("GetObjectAttributesResponse", body)

    # objects: writing
    def _meta(self, req: Request) -> Meta:
        meta = Meta(
            content_type=req.header("content-type"),
            metadata={k[11:]: _text(v) for k, v in req.headers.items() if k.startswith("x-amz-meta-")},
            storage_class=req.header("x-amz-storage-class", "STANDARD"),
        )
        for name in KEPT_HEADERS:
            value = req.header(name)
            if name == "content-encoding" and value is not None:
                value = ", ".join(t.strip() for t in value.split(",") if t.strip() and t.strip() != "aws-chunked")
            if value:
                meta.headers[name] = _text(value)
        return meta

    def _write_precondition(self, req: Request) -> Callable[[ObjectInfo | None], None] | None:
        """If-Match and If-None-Match of a write, checked against the object it would replace."""
        if_match, if_none = req.header("if-match"), req.header("if-none-match")
        if if_match is None and if_none is None:
            return None

        def check(current: ObjectInfo | None) -> None:
            if if_match is not None:
                if current is None:
                    raise no_key(req.key)
                if not self._etag_matches(if_match, current):
                    raise precondition_failed("If-Match")
            if if_none is not None and self._etag_matches(if_none, current):
                raise precondition_failed("If-None-Match")

        return check

    def _payload(self, req: Request, signed: sigv4.Signed, default: str | None) -> Payload:
        """The request body as a Payload, with every digest the client vouched for checked at its end."""
        streaming = signed.payload_hash in sigv4.STREAMING
        length = req.header("content-length")
        chunked_transfer = "chunked" in (req.header("transfer-encoding") or "").lower()
        if length is None and not chunked_transfer:
            raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        content_md5 = req.header("content-md5")
        if content_md5 is not None and checksums.decode(content_md5, "MD5") is None:
            raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
        given = {a: v for n, v in req.headers.items() if (a := checksums.algorithm_of(n))}
        trailer = (req.header("x-amz-trailer") or "").strip().lower()
        trailed = checksums.algorithm_of(trailer) if trailer else None
        if trailer and trailed is None:
            raise S3Error(
                400, "InvalidRequest", f"x-amz-trailer names no checksum this endpoint knows: {trailer[:60]!r}"
            )
        named = (req.header("x-amz-sdk-checksum-algorithm") or "").upper() or None
        if named is not None and named not in checksums.ALGORITHMS:
            raise S3Error(
                400, "InvalidRequest", f"Value for x-amz-sdk-checksum-algorithm header is invalid: {named[:20]}"
            )
        claimed = set(given) | ({trailed} if trailed else set())
        if len(claimed) > 1 or (named and claimed and named not in claimed):
            raise S3Error(
                400,
                "InvalidRequest",
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            )
        algorithm = next(iter(claimed), None) or named or default
        if streaming:  # aws-chunked framing is announced by the payload hash; the encoding header alone is a label
            decoded = req.header("x-amz-decoded-content-length")
            body = AwsChunked(
                req.input.read,
                signed if signed.payload_hash.startswith("STREAMING-AWS4") else None,
                trailer=bool(trailer),
                decoded_length=_int_param(decoded, "x-amz-decoded-content-length", 0) if decoded is not None else None,
            )
            if trailed:
                expected = lambda: body.trailers.get(trailer)  # noqa: E731 - read once the body has ended
            else:
                expected = (lambda: given[algorithm]) if algorithm in given else None
            return Payload(body, algorithm, expected_checksum=expected, content_md5=content_md5)
        sha = signed.payload_hash if signed.payload_hash not in (sigv4.UNSIGNED, *sigv4.STREAMING) else None
        return Payload(
            self._chunks(req, length),
            algorithm,
            expected_checksum=(lambda: given[algorithm]) if algorithm in given else None,
            content_md5=content_md5,
            sha256=sha,
        )

    @staticmethod
    def _chunks(req: Request, length: str | None) -> Iterator[bytes]:
        left = _int_param(length, "Content-Length", 0) if length is not None else None
        while left is None or left > 0:
            chunk = req.input.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                if left:
                    raise S3Error(
                        400,
                        "IncompleteBody",
                        "You did not provide the number of bytes specified by the Content-Length HTTP header",
                    )
                return
            if left is not None:
                left -= len(chunk)
            yield chunk

    @staticmethod
    def _checksum_headers(summary: dict | None) -> dict:
        if not summary:
            return {}
        return {checksums.header_name(summary["algorithm"]): summary["value"], "x-amz-checksum-type": summary["type"]}

    def put_object(self, req: Request, signed: sigv4.Signed) -> Response:
        meta = self._meta(req)
        precondition = self._write_precondition(req)
        if precondition is not None:
            precondition(self.store.find(req.bucket, req.key))  # refuse before the body, when it can be told now
        else:
            self.store.head_bucket(req.bucket)
        payload = self._payload(req, signed, checksums.DEFAULT)
        info = self.store.put(req.bucket, req.key, payload, meta, precondition)
        return 200, {"ETag": f'"{info.etag}"', **self._checksum_headers(info.checksum)}, b""

    def _copy_source(self, req: Request) -> tuple[str, str]:
        raw = req.header("x-amz-copy-source", "")
        path, _, query = raw.partition("?")
        try:
            source = urllib.parse.unquote_to_bytes(path).decode("utf-8").lstrip("/")
        except UnicodeDecodeError:
            raise invalid_argument("Invalid copy source encoding") from None
        bucket, _, key = source.partition("/")
        if not bucket or not key:
            raise invalid_argument(f"Invalid copy source object key: {raw[:120]!r}")
        version = urllib.parse.parse_qs(query).get("versionId", [None])[0]
        if version not in (None, "null"):
            raise invalid_argument(f"Invalid version id specified: {version[:80]!r}")
        return bucket, key

    def _copy_conditions(self, req: Request, info: ObjectInfo) -> None:
        modified = int(info.mtime)
        if_match = req.header("x-amz-copy-source-if-match")
        if if_match is not None and not self._etag_matches(if_match, info):
            raise precondition_failed("x-amz-copy-source-If-Match")
        since = _parse_http_date(req.header("x-amz-copy-source-if-unmodified-since"))
        if if_match is None and since is not None and modified > since:
            raise precondition_failed("x-amz-copy-source-If-Unmodified-Since")
        if_none = req.header("x-amz-copy-source-if-none-match")
        if if_none is not None and self._etag_matches(if_none, info):
            raise precondition_failed("x-amz-copy-source-If-None-Match")
        since = _parse_http_date(req.header("x-amz-copy-source-if-modified-since"))
        if if_none is None and since is not None and modified <= since:
            raise precondition_failed("x-amz-copy-source-If-Modified-Since")

    def copy_object(self, req: Request) -> Response:
        src_bucket, src_key = self._copy_source(req)
        if req.header("x-amz-copy-source-range") is not None:
            raise invalid_argument("x-amz-copy-source-range is for UploadPartCopy only")
        directive = req.header("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise invalid_argument(f"Unknown metadata directive: {directive[:20]!r}")
        algorithm = (req.header("x-amz-checksum-algorithm") or "").upper() or None
        if algorithm is not None and algorithm not in checksums.ALGORITHMS:
            raise invalid_argument(f"Invalid checksum algorithm: {algorithm[:20]!r}")
        storage_class = req.header("x-amz-storage-class")
        if (
            (src_bucket, src_key) == (req.bucket, req.key)
            and directive == "COPY"
            and not storage_class
            and not algorithm
        ):
            raise S3Error(
                400,
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself without changing the "
                "object's metadata, storage class, website redirect location or encryption attributes.",
            )
        self.store.head_bucket(req.bucket)
        src, f = self.store.open(src_bucket, src_key)
        try:
            self._copy_conditions(req, src)
            meta = self._meta(req) if directive == "REPLACE" else src.meta
            meta.storage_class = storage_class or "STANDARD"
            if algorithm is None and src.checksum and src.checksum["type"] == checksums.FULL_OBJECT:
                algorithm = src.checksum["algorithm"]
            payload = Payload(self.store.read_range(src, 0, src.size, f), algorithm or checksums.DEFAULT)
        except BaseException:
            f.close()
            raise
        info = self.store.put(req.bucket, req.key, payload, meta, self._write_precondition(req))
        body = _tag("LastModified", _iso(info.mtime)) + _tag("ETag", f'"{info.etag}"')
        body += _checksum_tags(info.checksum, with_type=False)
        return 200, self._checksum_headers(info.checksum), _xml("CopyObjectResult", body)

    # multipart uploads
    def create_upload(self, req: Request) -> Response:
        req.read_small(0)
        algorithm = (req.header("x-amz-checksum-algorithm") or "").upper() or None
        kind = (req.header("x-amz-checksum-type") or "").upper() or None
        if algorithm is not None and algorithm not in checksums.ALGORITHMS:
            raise invalid_argument(f"Invalid checksum algorithm: {algorithm[:20]!r}")
        if kind is not None:
            if algorithm is None:
                raise S3Error(400, "InvalidRequest", "x-amz-checksum-type needs x-amz-checksum-algorithm")
            if kind not in (checksums.FULL_OBJECT, checksums.COMPOSITE):
                raise invalid_argument(f"Invalid checksum type: {kind[:20]!r}")
        if algorithm is not None and kind is None:
            kind = checksums.FULL_OBJECT if algorithm == "CRC64NVME" else checksums.COMPOSITE
        if (algorithm, kind) in (
            ("CRC64NVME", checksums.COMPOSITE),
            ("SHA1", checksums.FULL_OBJECT),
            ("SHA256", checksums.FULL_OBJECT),
        ):
            raise S3Error(
                400,
                "InvalidRequest",
                f"The {kind} checksum type cannot be used with the {algorithm} checksum algorithm.",
            )
        upload_id = self.store.create_upload(req.bucket, req.key, self._meta(req), algorithm, kind)
        headers = {"x-amz-checksum-algorithm": algorithm, "x-amz-checksum-type": kind} if algorithm else {}
        body = _tag("Bucket", req.bucket) + _tag("Key", req.key) + _tag("UploadId", upload_id)
        return 200, headers, _xml("InitiateMultipartUploadResult", body)

    def _part_number(self, req: Request) -> int:
        number = _int_param(req.query.get("partNumber"), "partNumber", 1, None)
        if number > 10000:
            raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
        return number

    def put_part(self, req: Request, signed: sigv4.Signed) -> Response:
        number = self._part_number(req)
        _, upload = self.store.upload(req.bucket, req.key, req.query["uploadId"])
        payload = self._payload(req, signed, upload.get("checksum"))
        if upload.get("checksum") and payload.algorithm != upload["checksum"]:
            raise S3Error(
                400,
                "InvalidRequest",
                f"this upload's parts carry {upload['checksum']} checksums, not {payload.algorithm}",
            )
        info = self.store.put_part(req.bucket, req.key, req.query["uploadId"], number, payload)
        return 200, {"ETag": f'"{info.etag}"', **self._checksum_headers(info.checksum)}, b""

    def copy_part(self, req: Request) -> Response:
        number = self._part_number(req)
        src_bucket, src_key = self._copy_source(req)
        _, upload = self.store.upload(req.bucket, req.key, req.query["uploadId"])
        src, f = self.store.open(src_bucket, src_key)
        try:
            self._copy_conditions(req, src)
            start, length = self._copy_range(req.header("x-amz-copy-source-range"), src.size)
            payload = Payload(self.store.read_range(src, start, length, f), upload.get("checksum"))
        except BaseException:
            f.close()
            raise
        info = self.store.put_part(req.bucket, req.key, req.query["uploadId"], number, payload)
        body = _tag("LastModified", _iso(info.mtime)) + _tag("ETag", f'"{info.etag}"')
        body += _checksum_tags(info.checksum, with_type=False)
        return 200, {}, _xml("CopyPartResult", body)

    @staticmethod
    def _copy_range(header: str | None, size: int) -> tuple[int, int]:
        if header is None:
            return 0, size
        unit, eq, spec = header.partition("=")
        first, dash, last = spec.partition("-")
        if unit != "bytes" or not eq or not dash or not first.isdigit() or not last.isdigit():
            raise invalid_argument(
                f"The x-amz-copy-source-range value must be of the form bytes=first-last: {header[:60]!r}"
            )
        start, end = int(first), int(last)
        if end < start or end >= size:
            raise S3Error(
                400, "InvalidRange", f"The requested range bytes={start}-{end} is not satisfiable ({size} bytes)"
            )
        return start, end - start + 1

    def list_parts(self, req: Request) -> Response:
        upload_id = req.query["uploadId"]
        max_parts = _int_param(req.query.get("max-parts"), "max-parts", 0, 1000, default=1000)
        marker = _int_param(req.query.get("part-number-marker"), "part-number-marker", 0, default=0)
        _, upload = self.store.upload(req.bucket, req.key, upload_id)
        parts = [(n, i) for n, i in self.store.list_parts(req.bucket, req.key, upload_id) if n > marker]
        page, truncated = parts[:max_parts], len(parts) > max_parts
        body = _tag("Bucket", req.bucket) + _tag("Key", req.key) + _tag("UploadId", upload_id)
        body += _tag("PartNumberMarker", marker)
        if page:
            body += _tag("NextPartNumberMarker", page[-1][0])
        body += _tag("MaxParts", max_parts) + _tag("IsTruncated", "true" if truncated else "false")
        body += "<Initiator>" + _tag("ID", OWNER_ID) + _tag("DisplayName", OWNER_ID) + "</Initiator>" + _owner()
        body += _tag("StorageClass", upload.get("storage_class") or "STANDARD")
        if upload.get("checksum"):
            body += _tag("ChecksumAlgorithm", upload["checksum"]) + _tag("ChecksumType", upload["checksum_type"])
        for n, info in page:
            body += "<Part>" + _tag("PartNumber", n) + _tag("LastModified", _iso(info.mtime))
            body += _tag("ETag", f'"{info.etag}"') + _tag("Size", info.size)
            body += _checksum_tags(info.checksum, with_type=False) + "</Part>"
        return 200, {}, _xml("ListPartsResult", body)

    def list_uploads(self, req: Request) -> Response:
        q = req.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_uploads = _int_param(q.get("max-uploads"), "max-uploads", 0, 1000, default=1000)
        key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
        uploads, prefixes = [], []
        truncated = False
        for key, upload_id, initiated, doc in self.store.list_uploads(req.bucket):
            if not key.startswith(prefix) or (key, upload_id) <= (key_marker, id_marker if id_marker else "\uffff"):
                continue
            if delimiter and (cut := key.find(delimiter, len(prefix))) >= 0:
                common = key[: cut + len(delimiter)]
                if (prefixes and prefixes[-1] == common) or common <= key_marker:
                    continue
                if len(uploads) + len(prefixes) >= max_uploads:
                    truncated = True
                    break
                prefixes.append(common)
                continue
            if len(uploads) + len(prefixes) >= max_uploads:
                truncated = True
                break
            uploads.append((key, upload_id, initiated, doc))
        body = _tag("Bucket", req.bucket) + _tag("KeyMarker", key_marker) + _tag("UploadIdMarker", id_marker)
        if truncated and uploads:
            body += _tag("NextKeyMarker", uploads[-1][0]) + _tag("NextUploadIdMarker", uploads[-1][1])
        body += _tag("Prefix", prefix) + (_tag("Delimiter", delimiter) if delimiter else "")
        body += _tag("MaxUploads", max_uploads) + _tag("IsTruncated", "true" if truncated else "false")
        for key, upload_id, initiated, doc in uploads:
            body += "<Upload>" + _tag("Key", key) + _tag("UploadId", upload_id)
            body += "<Initiator>" + _tag("ID", OWNER_ID) + _tag("DisplayName", OWNER_ID) + "</Initiator>" + _owner()
            body += _tag("StorageClass", doc.get("storage_class") or "STANDARD") + _tag("Initiated", _iso(initiated))
            if doc.get("checksum"):
                body += _tag("ChecksumAlgorithm", doc["checksum"]) + _tag("ChecksumType", doc["checksum_type"])
            body += "</Upload>"
        body += "".join("<CommonPrefixes>" + _tag("Prefix", p) + "</CommonPrefixes>" for p in prefixes)
        return 200, {}, _xml("ListMultipartUploadsResult", body)

    def complete_upload(self, req: Request) -> Response:
        upload_id = req.query["uploadId"]
        root = _parse_xml(req.read_small())
        parts = []
        for p in root.findall("Part"):
            number, etag = p.findtext("PartNumber"), p.findtext("ETag")
            if number is None or etag is None or not number.strip().isdigit():
                raise S3Error(
                    400,
                    "MalformedXML",
                    "The XML you provided was not well-formed: each Part needs a PartNumber and an ETag",
                )
            claimed = next(
                (p.findtext(f"Checksum{a}") for a in checksums.ALGORITHMS if p.find(f"Checksum{a}") is not None), None
            )
            parts.append((int(number), etag, claimed))
        given = {a: v for n, v in req.headers.items() if (a := checksums.algorithm_of(n))}
        if len(given) > 1:
            raise S3Error(400, "InvalidRequest", "Expecting a single x-amz-checksum- header.")
        expected = None
        if given:
            algorithm, expected = next(iter(given.items()))
            try:
                _, upload = self.store.upload(req.bucket, req.key, upload_id)
            except S3Error:
                upload = None  # completed already, or never was: the store answers that
            if upload is not None and upload.get("checksum") != algorithm:
                raise S3Error(
                    400,
                    "InvalidRequest",
                    f"this upload was created with checksum {upload.get('checksum')}, not {algorithm}",
                )
        info, summary = self.store.complete_upload(
            req.bucket, req.key, upload_id, parts, expected, self._write_precondition(req)
        )
        body = _tag("Location", f"/{req.bucket}/{req.key}") + _tag("Bucket", req.bucket) + _tag("Key", req.key)
        body += _tag("ETag", f'"{info.etag}"') + _checksum_tags(summary)
        return 200, {}, _xml("CompleteMultipartUploadResult", body)

    # deleting many
    def delete_objects(self, req: Request, signed: sigv4.Signed) -> Response:
        self.store.head_bucket(req.bucket)
        root = _parse_xml(req.read_small())
        objects = root.findall("Object")
        if len(objects) > MAX_DELETE_KEYS:
            raise S3Error(
                400,
                "MalformedXML",
                f"The XML you provided was not well-formed: at most {MAX_DELETE_KEYS} keys per request",
            )
        quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
        out = []
        for obj in objects:
            key, version = obj.findtext("Key") or "", obj.findtext("VersionId")
            try:
                if version not in (None, "null"):
                    raise S3Error(404, "NoSuchVersion", "The specified version does not exist.")
                self.store.delete(req.bucket, key)
                if not quiet:
                    out.append(
                        "<Deleted>" + _tag("Key", key) + (_tag("VersionId", version) if version else "") + "</Deleted>"
                    )
            except S3Error as exc:
                out.append(
                    "<Error>" + _tag("Key", key) + _tag("Code", exc.code) + _tag("Message", exc.message) + "</Error>"
                )
        return 200, {}, _xml("DeleteResult", "".join(out))
