"""The namespace segment of a REST path, read as OpenWhisk's controller reads it, for every route at once.

The controller parses the segment after `/namespaces/` as an EntityPath: decoded, split on `/`,
empty parts dropped, so `%2Fwhisk.system` (the npm client's spelling of a namespace it was given
as `/whisk.system`), `whisk.system%2F` and `%2F_` name `whisk.system` and the caller's own
namespace. WSGI hands the application a decoded PATH_INFO, where that `%2F` is indistinguishable
from a separator, so the segment is taken from the raw request line instead and the path rewritten
before any route sees it. Web action paths (`/web/<namespace>/...`) take the segment as an entity
name, as OpenWhisk's WebActions do, and are left alone.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes, urlsplit

_PREFIX = ("", "api", "v1", "namespaces")
_NS = len(_PREFIX)


def namespace_segment(decoded: str) -> str:
    """The namespace a decoded path segment names: its one non-empty part between slashes, or, when it has
    none or several (`%2F`, `a%2Fb`), the segment with its slashes kept as `%2F`, which the namespace check
    refuses as illegal characters."""
    parts = [part for part in decoded.split("/") if part]
    return parts[0] if len(parts) == 1 else decoded.replace("/", "%2F")


class NamespacePaths:
    """WSGI middleware: PATH_INFO with the namespace segment normalised (`app.wsgi_app = NamespacePaths(...)`)."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw and "%" in raw:
            path_info = _normalised(raw)
            if path_info is not None:
                environ["PATH_INFO"] = path_info
        return self.app(environ, start_response)


def _normalised(raw_uri: str) -> str | None:
    """PATH_INFO for `raw_uri` (the request target as sent, latin-1) with its namespace segment normalised;
    None where it names no namespace with a slash in it."""
    path = raw_uri if raw_uri.startswith("/") else urlsplit(raw_uri).path
    path = path.split("?", 1)[0]
    segments = [unquote_to_bytes(raw).decode("latin-1") for raw in path.split("/")]
    if len(segments) <= _NS or tuple(segments[:_NS]) != _PREFIX or "/" not in segments[_NS]:
        return None
    segments[_NS] = namespace_segment(segments[_NS])
    return "/".join(segments)
