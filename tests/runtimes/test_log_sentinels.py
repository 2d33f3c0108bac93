"""The sentinel that ends an activation's logs is a line of its own on the proxy's stdout and stderr, whatever
the action's last write was: a real proxy process (Python and Node.js), its raw output streams, a warm
container run several times."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtimes import contract

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = contract.SENTINEL.encode()
RUNTIMES = {
    "python": [sys.executable, "-u", "-m", "runtimes.proxy"],
    "nodejs": ["node", str(ROOT / "runtimes" / "nodejs" / "launcher.js")],
}
RUNS = 3

# Each run writes "o<n>" and "e<n>" with no newline, by every route its runtime has.
PYTHON = {
    route: "import os, subprocess, sys\ndef main(a):\n    n = a['n']\n" + "".join(f"    {line}\n" for line in body)
    for route, body in {
        "print": ["print(f'o{n}', end='')", "print(f'e{n}', end='', file=sys.stderr)", "return {}"],
        "write": ["sys.stdout.write(f'o{n}')", "sys.stderr.write(f'e{n}')", "return {}"],
        "fd": ["os.write(1, f'o{n}'.encode())", "os.write(2, f'e{n}'.encode())", "return {}"],
        "subprocess": ["subprocess.run(['sh', '-c', f'printf o{n}; printf e{n} >&2'], check=True)", "return {}"],
        "raises": ["sys.stdout.write(f'o{n}')", "sys.stderr.write(f'e{n}')", "raise ValueError('x')"],
    }.items()
}
NODE = {
    "write": "function main(a) { process.stdout.write('o' + a.n); process.stderr.write('e' + a.n); return {} }",
    "buffer": "function main(a) { process.stdout.write(Buffer.from('o' + a.n)); "
    "process.stderr.write(Buffer.from('e' + a.n)); return {} }",
    "async": "async function main(a) { process.stdout.write('o' + a.n); await null; process.stderr.write('e' + a.n);"
    " return {} }",
}


class Proxy:
    """The runtime's proxy started bare, as an invoker starts one, with its stdout and stderr read raw."""

    def __init__(self, runtime: str) -> None:
        read_fd, write_fd = os.pipe()
        cmd = RUNTIMES[runtime] + ["--ready-fd", str(write_fd)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_fd,), cwd=ROOT, env=env
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as ready:
            port = int(ready.readline())
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.seen = {"stdout": b"", "stderr": b""}

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        self.connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        return answer.status, json.loads(answer.read())

    def streams_until(self, sentinels: int, timeout_s: float = 30) -> dict[str, bytes]:
        """Both streams as read so far, once each holds `sentinels` sentinels."""
        pipes = {"stdout": self.proc.stdout, "stderr": self.proc.stderr}
        deadline = time.monotonic() + timeout_s
        while any(self.seen[name].count(SENTINEL) < sentinels for name in pipes):
            left = deadline - time.monotonic()
            assert left > 0, f"no {sentinels} sentinels in {self.seen}"
            ready, _, _ = select.select(list(pipes.values()), [], [], left)
            for name, pipe in pipes.items():
                if pipe in ready:
                    self.seen[name] += os.read(pipe.fileno(), 65536)
        return self.seen

    def close(self) -> None:
        self.connection.close()
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _check_runs(runtime: str, code: str, traceback: bool = False) -> None:
    proxy = Proxy(runtime)
    try:
        assert proxy.post(contract.INIT_PATH, {"value": {"name": "a", "main": "main", "code": code}})[0] == 200
        for n in range(1, RUNS + 1):
            proxy.post(contract.RUN_PATH, {"value": {"n": n}})
            streams = proxy.streams_until(n)
        for name, prefix in (("stdout", b"o"), ("stderr", b"e")):
            lines = streams[name].split(b"\n")
            assert [line for line in lines if SENTINEL in line] == [SENTINEL] * RUNS, streams[name]
            assert streams[name].endswith(b"\n" + SENTINEL + b"\n")
            # each activation's partial line, ended by the proxy, then the sentinel (a traceback goes between)
            ours = [
                line
                for line in lines
                if line.startswith(SENTINEL) or line in (prefix + b"1", prefix + b"2", prefix + b"3")
            ]
            expected = [part for n in range(1, RUNS + 1) for part in (prefix + str(n).encode(), SENTINEL)]
            assert ours == expected or (name == "stderr" and traceback), streams[name]
    finally:
        proxy.close()


@pytest.mark.parametrize("route", sorted(PYTHON))
def test_a_python_action_without_a_trailing_newline_leaves_the_sentinel_on_its_own_line(route):
    _check_runs("python", PYTHON[route], traceback=route == "raises")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the README's set-up has it)")
@pytest.mark.parametrize("route", sorted(NODE))
def test_a_node_action_without_a_trailing_newline_leaves_the_sentinel_on_its_own_line(route):
    _check_runs("nodejs", NODE[route])
