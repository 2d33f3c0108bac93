"""Trained LeNet-5 models for the action tests, trained once and kept in pytest's cache directory.

Training is the slow part on 2 cores, so a model is trained on the first run of a given
configuration and reused later; the tests measure what the model does every time.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ImageHandler(BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (status, headers, body)`; `/stall`, `/trickle` and `/trickle-headers` misbehave."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.seen.append((path, self.headers.get("Host")))
        if path == "/stall":
            self.server.release.wait(300)
            return
        if path == "/trickle-headers":
            # a valid answer whose status line and headers come a byte every 20 ms, for about 25 s
            pad = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"x" * 20) for i in range(40))
            answer = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" + pad + b"Content-Length: 4\r\n\r\n\x89PNG"
            try:
                for i in range(len(answer)):
                    if self.server.release.wait(0.02):
                        return
                    self.wfile.write(answer[i : i + 1])
            except OSError:
                return  # the client gave up, as it should
            self.server.headers_trickled.append(path)
            self.close_connection = True
            return
        if path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(6000):
                    if self.server.release.wait(0.05):
                        return
                    self.wfile.write(b"\x89")
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up, as it should
            return
        if path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(1000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        status, headers, body = self.server.routes.get(path, (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-request (size limits, timeouts) are expected here, not errors."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ImageServer:
    """A real HTTP server on 127.0.0.1 in a thread; `stop()` releases stalled handlers first."""

    def __init__(self, tls=None) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), ImageHandler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.seen = []
        self.httpd.headers_trickled = []  # one entry per /trickle-headers answer sent to the end
        self.httpd.release = threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def allow(self) -> str:
        """The `allow_hosts` value an action needs to fetch from this loopback server."""
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, body: bytes, status: int = 200, headers: dict | None = None) -> str:
        self.httpd.routes[path] = (status, headers or {"Content-Type": "image/png"}, body)
        return self.base_url + path

    def stop(self) -> None:
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def image_server():
    server = ImageServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.stop()


def self_signed(folder, name: str):
    """(certificate path, key path) for `name`, valid for a day, made here: nothing is downloaded."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_image_server(tmp_path_factory):
    """(an HTTPS image server on 127.0.0.1 whose certificate names img.test, that certificate's path)."""
    import ssl

    cert, key = self_signed(tmp_path_factory.mktemp("tls"), "img.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ImageServer(tls=context)
    server.thread.start()
    try:
        yield server, cert
    finally:
        server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def connects(monkeypatch) -> list:
    """Every outgoing connect is recorded and refused before a packet leaves: (host, port) in order."""
    attempts = []

    def refuse(sock, address):
        attempts.append(address[:2])
        raise ConnectionRefusedError(f"test guard: no connection to {address[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def fake_dns(monkeypatch):
    """`fake_dns({"name": ["1.2.3.4", ...]})`: each lookup of a name takes the next answer (the last repeats).

    IP literals resolve as usual (no packet); any other name fails, so no query leaves the machine.
    Returns the list of names looked up.
    """
    real = socket.getaddrinfo
    lookups = []

    def install(table: dict[str, list[str]]) -> list[str]:
        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
            name = host.decode() if isinstance(host, bytes) else host
            try:
                ipaddress.ip_address(name)
                return real(host, port, family, type, proto, flags)
            except ValueError:
                pass
            lookups.append(name)
            answers = table.get(name)
            if not answers:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            address = answers[min(lookups.count(name), len(answers)) - 1]
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if fam == socket.AF_INET6 else (address, int(port or 0))
            return [(fam, socket.SOCK_STREAM, 6, "", sockaddr)]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return lookups

    return install
