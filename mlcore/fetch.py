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

`timeout_s` bounds the whole fetch: the lookups, every hop's connection, its headers and
the body. Socket timeouts alone cannot do that, since they bound each read and a server
sending a byte a second never lets one expire; a watchdog shuts the connection down
when the time is up, whatever it is waiting for.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
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


class _Watchdog:
    """Shuts down the sockets it watches once the deadline passes, so a blocked read or handshake returns.

    It watches a duplicate of each socket's descriptor: shutting that down ends the
    connection for every descriptor of it, including the one TLS wraps.
    """

    def __init__(self, deadline: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        duplicate = sock.dup()
        with self._lock:
            self._sockets.append(duplicate)
            expired = self.expired
        if expired:
            self._shut(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _connection_classes():
    """urllib3 connection classes that hand each new socket to the pool's watchdog (`watchdog=` in conn_kw)."""
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class Watching:
        def __init__(self, *args, watchdog: _Watchdog, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.watchdog = watchdog

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            self.watchdog.watch(sock)
            return sock

    class Watched(Watching, HTTPConnection):
        pass

    class WatchedTLS(Watching, HTTPSConnection):
        pass

    return Watched, WatchedTLS


def _lookup(host: str, port: int, deadline: float):
    """getaddrinfo within the deadline; a resolver that never answers is left to finish on its own thread.

    Raises:
        TimeoutError: no answer before the deadline.
        socket.gaierror, UnicodeError: as getaddrinfo.
    """
    outcome: list = []
    done = threading.Event()

    def resolve() -> None:
        try:
            outcome.append(("ok", socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
        except Exception as exc:  # re-raised in the caller's thread
            outcome.append(("error", exc))
        done.set()

    threading.Thread(target=resolve, name=f"lookup-{host[:40]}", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(host)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def _addresses(hop: _Hop, allow_hosts, shown: str, deadline: float, timeout_s: float) -> list[str]:
    """The hop's addresses, resolved once; refused unless all are public or the host is allow-listed."""
    try:
        infos = _lookup(hop.host, hop.port, deadline)
    except TimeoutError as exc:
        raise _too_slow(shown, timeout_s) from exc
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
    watchdog = _Watchdog(deadline)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            hop = _Hop.parse(url, shown)
            addresses = _addresses(hop, allow_hosts, shown, deadline, timeout_s)
            pool, response = _open(hop, addresses, deadline, timeout_s, shown, watchdog)
            try:
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    if urlsplit(url).scheme not in ("http", "https"):
                        raise FetchError(
                            f"{shown} redirected to an unsupported scheme; only http and https are fetched"
                        )
                    continue
                if response.status != 200:
                    raise FetchError(f"could not fetch {shown} (HTTP {response.status}); give the URL of an image")
                return _read_body(response, deadline, timeout_s, max_bytes, shown, watchdog)
            finally:
                response.release_conn()
                pool.close()
        raise FetchError(f"{shown} redirected more than {MAX_REDIRECTS} times; give the image's own URL")
    finally:
        watchdog.close()


def _open(hop: _Hop, addresses: list[str], deadline: float, timeout_s: float, shown: str, watchdog: _Watchdog):
    """(pool, response) from the first checked address that accepts a connection; the body is not read yet."""
    import urllib3
    from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

    watched, watched_tls = _connection_classes()
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        kwargs = {
            "timeout": urllib3.Timeout(connect=left, read=left),
            "retries": False,
            "maxsize": 1,
            "watchdog": watchdog,
        }
        if hop.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address,
                hop.port,
                server_hostname=hop.host,
                assert_hostname=hop.host,
                cert_reqs="CERT_REQUIRED",
                **kwargs,
            )
            pool.ConnectionCls = watched_tls
        else:
            pool = urllib3.HTTPConnectionPool(address, hop.port, **kwargs)
            pool.ConnectionCls = watched
        try:
            response = pool.urlopen(
                "GET",
                hop.target,
                headers={"Host": hop.host_header, "Accept": "image/*"},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
        except HTTPError as exc:
            pool.close()
            if watchdog.expired:
                raise _too_slow(shown, timeout_s) from exc
            if isinstance(exc, NewConnectionError):
                continue
            if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
                raise _too_slow(shown, timeout_s) from exc
            if isinstance(exc, SSLError):
                raise FetchError(f"could not fetch {shown}: its TLS certificate was not accepted") from exc
            raise FetchError(f"could not fetch {shown}: the connection failed; check the URL") from exc
        if watchdog.expired:  # the headers were cut short, so what looks like an answer is not one
            response.release_conn()
            pool.close()
            raise _too_slow(shown, timeout_s)
        return pool, response
    if deadline - time.monotonic() <= 0:
        raise _too_slow(shown, timeout_s)
    raise FetchError(f"cannot connect to {hop.host}:{hop.port} to fetch {shown}: check the host name and port")


def _too_slow(shown: str, timeout_s: float) -> FetchError:
    return FetchError(
        f"{shown} did not answer within {timeout_s:g} s; check that the server is up and fast, "
        "or send the image as base64"
    )


def _read_body(response, deadline: float, timeout_s: float, max_bytes: int, shown: str, watchdog: _Watchdog) -> bytes:
    from urllib3.exceptions import HTTPError, ReadTimeoutError

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{shown} is {over_limit(int(declared), max_bytes)}; give a smaller image")
    chunks, size = [], 0
    unfinished = FetchError(
        f"{shown} did not finish sending within {timeout_s:g} s; "
        "check that the server is up and fast, or send the image as base64"
    )
    try:
        while True:
            chunk = response.read1(CHUNK_BYTES, decode_content=True)
            if watchdog.expired or time.monotonic() > deadline:
                raise unfinished  # an empty read after the watchdog fired is a cut, not the end
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"{shown} sent more than the limit of {human_bytes(max_bytes)}; give a smaller image")
            chunks.append(chunk)
    except ReadTimeoutError as exc:
        raise (unfinished if chunks else _too_slow(shown, timeout_s)) from exc
    except HTTPError as exc:
        if watchdog.expired:
            raise unfinished from exc
        raise FetchError(f"could not fetch {shown}: the connection broke while reading; try again") from exc
