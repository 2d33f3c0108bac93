"""Fetch a caller's image URL from inside an action without letting it reach inside the platform.

An action runs next to the object store, the OpenWhisk API and whatever else listens on
its host's loopback and private networks; a URL from a caller must not turn it into a
proxy to them. So each hop (the URL, then every redirect) is resolved once, every
address it resolves to is checked, and the connection goes to a checked address: no
second lookup that a rebinding DNS server could answer differently. Hosts a deployment
trusts (the local web page on 127.0.0.1) are named in `allow_hosts`, host[:port].

Errors say what a user can fix, in the shape "could not fetch URL (HTTP 404)". They never
carry fetched bytes, and a refused address is refused before any packet is sent to it,
so they cannot be used to map the ports behind the action.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from .errors import MLCoreError
from .sizes import human_bytes, over_limit

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(MLCoreError):
    """The URL is not allowed or could not be fetched; the message says what to send instead."""


@dataclass(frozen=True)
class _Hop:
    scheme: str
    host: str
    port: int
    host_header: str
    target: str

    @classmethod
    def parse(cls, url: str, shown: str) -> _Hop:
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if parts.scheme not in ("http", "https") or not host:
            raise FetchError(f"url must be an http:// or https:// address, got {shown!r}")
        default = 443 if parts.scheme == "https" else 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, host.lower(), port or default, parts.netloc.rpartition("@")[2], target)


def parse_allow_hosts(value) -> frozenset[tuple[str, int | None]]:
    """`"127.0.0.1:8080, images.internal"` -> {(host, port or None for any port)}.

    Raises:
        FetchError: an entry is not host[:port].
    """
    if value in (None, ""):
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise FetchError(f"allow_hosts must be a comma-separated list of host[:port], got {value!r}")
    allowed = set()
    for item in items:
        text = str(item).strip().lower()
        if not text:
            continue
        parts = urlsplit("//" + text)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port == -1 or parts.path or parts.query or "@" in text:
            raise FetchError(f"allow_hosts entry {text!r} is not host[:port]; give e.g. 127.0.0.1:8080")
        allowed.add((parts.hostname, port))
    return frozenset(allowed)


def is_internal(address: str) -> bool:
    """Loopback, link-local, private, unspecified, multicast or otherwise not global, IPv4 or IPv6.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by it too.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [
            ip.ipv4_mapped,
            ip.sixtofour,
            ip.teredo[1] if ip.teredo else None,
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None,
        ]
        if any(e is not None and is_internal(str(e)) for e in embedded):
            return True
    return not ip.is_global or ip.is_multicast or ip.is_unspecified


def _addresses(hop: _Hop, allow_hosts, shown: str) -> list[str]:
    """The hop's addresses, resolved once; refused unless all are public or the host is allow-listed."""
    try:
        infos = socket.getaddrinfo(hop.host, hop.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"could not fetch {shown}: the host {hop.host!r} does not resolve; check the URL") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    allowed = (hop.host, hop.port) in allow_hosts or (hop.host, None) in allow_hosts
    if not allowed and (not addresses or any(is_internal(a) for a in addresses)):
        raise FetchError(
            f"could not fetch {shown}: it leads to an internal address, which this action does "
            "not fetch; give a public image URL, or allow the host in the action's `allow_hosts`"
        )
    return addresses


def fetch_url(url: str, timeout_s: float, max_bytes: int, allow_hosts=frozenset()) -> bytes:
    """GETs an http(s) URL, following redirects, streaming, with a whole-request deadline and a byte cap.

    Raises:
        FetchError: bad scheme, internal address, unreachable, HTTP error, too slow, too big.
    """
    shown = url[:200]
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        hop = _Hop.parse(url, shown)
        pool, response = _open(hop, _addresses(hop, allow_hosts, shown), deadline, timeout_s, shown)
        try:
            if response.status in REDIRECTS and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                if urlsplit(url).scheme not in ("http", "https"):
                    raise FetchError(f"{shown} redirected to an unsupported scheme; only http and https are fetched")
                continue
            if response.status != 200:
                raise FetchError(f"could not fetch {shown} (HTTP {response.status}); give the URL of an image")
            return _read_body(response, deadline, timeout_s, max_bytes, shown)
        finally:
            response.release_conn()
            pool.close()
    raise FetchError(f"{shown} redirected more than {MAX_REDIRECTS} times; give the image's own URL")


def _open(hop: _Hop, addresses: list[str], deadline: float, timeout_s: float, shown: str):
    """(pool, response) from the first checked address that accepts a connection; the body is not read yet."""
    import urllib3
    from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        kwargs = {"timeout": urllib3.Timeout(connect=left, read=left), "retries": False, "maxsize": 1}
        if hop.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address,
                hop.port,
                server_hostname=hop.host,
                assert_hostname=hop.host,
                cert_reqs="CERT_REQUIRED",
                **kwargs,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, hop.port, **kwargs)
        try:
            return pool, pool.urlopen(
                "GET",
                hop.target,
                headers={"Host": hop.host_header, "Accept": "image/*"},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
        except NewConnectionError:
            pool.close()
            continue
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise _too_slow(shown, timeout_s) from exc
        except SSLError as exc:
            raise FetchError(f"could not fetch {shown}: its TLS certificate was not accepted") from exc
        except HTTPError as exc:
            raise FetchError(f"could not fetch {shown}: the connection failed; check the URL") from exc
    if deadline - time.monotonic() <= 0:
        raise _too_slow(shown, timeout_s)
    raise FetchError(f"cannot connect to {hop.host}:{hop.port} to fetch {shown}: check the host name and port")


def _too_slow(shown: str, timeout_s: float) -> FetchError:
    return FetchError(
        f"{shown} did not answer within {timeout_s:g} s; check that the server is up and fast, "
        "or send the image as base64"
    )


def _read_body(response, deadline: float, timeout_s: float, max_bytes: int, shown: str) -> bytes:
    from urllib3.exceptions import HTTPError, ReadTimeoutError

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{shown} is {over_limit(int(declared), max_bytes)}; give a smaller image")
    chunks, size = [], 0
    try:
        while True:
            # read1 returns whatever has arrived, so a server trickling bytes still meets the deadline
            chunk = response.read1(CHUNK_BYTES, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"{shown} sent more than the limit of {human_bytes(max_bytes)}; give a smaller image")
            if time.monotonic() > deadline:
                raise FetchError(
                    f"{shown} did not finish sending within {timeout_s:g} s; "
                    "check that the server is up and fast, or send the image as base64"
                )
            chunks.append(chunk)
    except ReadTimeoutError as exc:
        raise _too_slow(shown, timeout_s) from exc
    except HTTPError as exc:
        raise FetchError(f"could not fetch {shown}: the connection broke while reading; try again") from exc
