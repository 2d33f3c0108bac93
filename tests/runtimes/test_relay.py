"""Relays from a container's loopback to the services a platform publishes as `PORT.sock` in a folder.

Inside and outside share this machine's loopback here, so the service listens on one port and its
socket is published under another: what the container side relays is the socket's port, as in docker mode.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from runtimes import relay


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def service():
    """An HTTP service on 127.0.0.1 that answers with its own port and the body it got."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = json.dumps({"port": self.server.server_address[1], "got": len(body)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _sockets(tmp_path: Path) -> Path:
    folder = tmp_path / "sockets"
    folder.mkdir()
    os.chmod(folder, 0o755)
    return folder


def _post(port: int, size: int) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"x" * size, method="POST")
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.load(answer)


def test_a_socket_published_after_the_first_sync_is_relayed_at_the_next(service, tmp_path):
    folder = _sockets(tmp_path)
    inside = relay.RelayFolder(str(folder))
    assert inside.sync() == []
    port = _free_port()
    with relay.unix_to_tcp(str(folder / relay.socket_name(port)), service):
        assert inside.sync() == [port]
        assert _post(port, 3 << 20) == {"port": service, "got": 3 << 20}  # both ways, beyond one buffer
    assert not (folder / relay.socket_name(port)).exists()  # withdrawn with its owner


def test_names_that_are_not_ports_are_ignored_and_a_taken_port_is_tried_again(service, tmp_path):
    folder = _sockets(tmp_path)
    for name in ("api.sock", "0.sock", "70000.sock", "12.txt", "-1.sock"):
        (folder / name).touch()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    inside = relay.RelayFolder(str(folder))
    with relay.unix_to_tcp(str(folder / relay.socket_name(port)), service):
        assert inside.sync() == []  # the action holds the port: nothing relayed, nothing raised
        taken.close()
        assert inside.sync() == [port]
        assert _post(port, 10)["port"] == service


def test_the_nodejs_proxy_relays_what_is_published_before_its_next_activation(service, tmp_path, runtime_proxy):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    folder = _sockets(tmp_path)
    proxy = runtime_proxy("nodejs", env={"DEPLOYER_RELAY_DIR": str(folder)})
    code = (
        "const http = require('http')\n"
        "function main (a) {\n"
        "  return new Promise((resolve, reject) => {\n"
        "    const req = http.request({ host: '127.0.0.1', port: a.port, method: 'POST' }, res => {\n"
        "      let body = ''; res.on('data', c => { body += c }); res.on('end', () => resolve(JSON.parse(body)))\n"
        "    })\n"
        "    req.on('error', e => resolve({ error: e.code })); req.end('abc')\n"
        "  })\n"
        "}\n"
    )
    assert proxy.init({"code": code, "main": "main"}, 30)[0] == 200
    port = _free_port()
    assert proxy.run({"value": {"port": port}}, 30)[1] == {"error": "ECONNREFUSED"}
    with relay.unix_to_tcp(str(folder / relay.socket_name(port)), service):
        assert proxy.run({"value": {"port": port}}, 30)[1] == {"port": service, "got": 3}


def test_the_python_proxy_relays_what_is_published_before_its_next_activation(service, tmp_path, runtime_proxy):
    folder = _sockets(tmp_path)
    proxy = runtime_proxy("python", env={"DEPLOYER_RELAY_DIR": str(folder)})
    code = (
        "import json, urllib.request\n"
        "def main(a):\n"
        "    try:\n"
        "        r = urllib.request.urlopen(urllib.request.Request("
        "f\"http://127.0.0.1:{a['port']}/\", data=b'abc'), timeout=10)\n"
        "    except OSError as exc:\n"
        "        return {'error': type(exc).__name__}\n"
        "    return json.load(r)\n"
    )
    assert proxy.init({"code": code, "main": "main"}, 30)[0] == 200
    port = _free_port()
    assert "error" in proxy.run({"value": {"port": port}}, 30)[1]
    with relay.unix_to_tcp(str(folder / relay.socket_name(port)), service):
        assert proxy.run({"value": {"port": port}}, 30)[1] == {"port": service, "got": 3}
