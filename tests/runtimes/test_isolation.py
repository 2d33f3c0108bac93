"""Action code sees what it would see on OpenWhisk: its own process, its own environment, no platform modules."""

from __future__ import annotations

import base64
import io
import os
import zipfile

import pytest

from procs import wait_gone
from runtimes import contract

ENV_AT_IMPORT = (
    "import os\n"
    "AT_IMPORT = dict(os.environ)\n"
    "def main(a):\n"
    "    return {'import': AT_IMPORT, 'run': dict(os.environ), 'pid': os.getpid()}\n"
)


def _zip(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def container(runtime_proxy):
    """container(**env) -> a started Python proxy whose process has `env` (as an invoker would give it)."""
    return lambda **env: runtime_proxy(env={k: str(v) for k, v in env.items()})


def test_action_sees_only_ow_variables_its_init_env_and_a_minimal_path(monkeypatch, container):
    monkeypatch.setenv("__OW_API_KEY", "leaked:from-the-shell")
    monkeypatch.setenv("DEPLOYER_SECRET_FOR_TEST", "platform-only")
    with container(__OW_API_HOST="http://127.0.0.1:1") as c:
        init_env = {"__OW_ACTIVATION_ID": "a1", "__OW_NAMESPACE": "guest", "GREETING": "hi", "N": 3}
        status, body, _ = c.init({"name": "e", "main": "main", "code": ENV_AT_IMPORT, "env": init_env}, 30)
        assert status == 200, body
        status, body = c.run({"value": {}, "activation_id": "a2", "deadline": "99"}, 30)
        assert status == 200
        seen = body["import"]
        assert seen["__OW_ACTIVATION_ID"] == "a1" and seen["__OW_NAMESPACE"] == "guest"  # at import time
        assert seen["__OW_API_HOST"] == "http://127.0.0.1:1"
        assert seen["GREETING"] == "hi" and seen["N"] == "3"
        assert "__OW_API_KEY" not in seen  # neither the caller's shell nor the platform's own variables
        assert "DEPLOYER_SECRET_FOR_TEST" not in seen and "VIRTUAL_ENV" not in seen and "PYTHONPATH" not in seen
        allowed = {"PATH", "HOME", "LANG", "TMPDIR", "GREETING", "N"}
        assert {k for k in seen if not k.startswith("__OW_")} <= allowed
        assert body["run"]["__OW_ACTIVATION_ID"] == "a2" and body["run"]["__OW_DEADLINE"] == "99"
        assert body["pid"] != c.pid  # a child of the proxy, not the proxy itself


def test_platform_modules_are_refused_unless_the_action_ships_them(container):
    with container(ACTION_DENY_MODULES="mlcore,torch") as c:
        status, body, logs = c.init({"name": "d", "code": "import mlcore\ndef main(a):\n    return {}\n"}, 30)
        assert status == contract.BAD_GATEWAY
        assert "No module named 'mlcore'" in body["error"] and "docker:" in body["error"]
        assert any("ModuleNotFoundError" in line for line in logs)
    with container(ACTION_DENY_MODULES="mlcore,torch") as c:
        code = _zip(
            {
                "__main__.py": "import mlcore\ndef main(a):\n    return {'v': mlcore.VERSION}\n",
                "mlcore/__init__.py": "VERSION = 'bundled'\n",
            }
        )
        assert c.init({"name": "d", "code": code, "binary": True}, 30)[0] == 200
        assert c.run({"value": {}}, 30) == (200, {"v": "bundled"})


DAEMONS = (
    "import os, subprocess, sys\n"
    "LOOP = 'import time\\nwhile True: time.sleep(1)'\n"
    "def main(a):\n"
    "    own = subprocess.Popen([sys.executable, '-c', LOOP], start_new_session=True)\n"
    "    r, w = os.pipe()\n"
    "    if os.fork() == 0:\n"
    "        os.setsid()\n"
    "        if os.fork() == 0:\n"
    "            os.write(w, str(os.getpid()).encode())\n"
    "            os.execv(sys.executable, [sys.executable, '-c', LOOP])\n"
    "        os._exit(0)\n"
    "    daemon = int(os.read(r, 32))\n"
    "    return {'pids': [own.pid, daemon, os.getpid()]}\n"
)


def test_a_killed_container_takes_setsid_children_and_daemons_with_it(container):
    c = container()
    try:
        assert c.init({"name": "d", "code": DAEMONS}, 30)[0] == 200
        status, body = c.run({"value": {}}, 30)
        assert status == 200
        pids = body["pids"]
        assert wait_gone(pids, timeout_s=0) == pids  # all running before the kill
    finally:
        c.kill()
    assert wait_gone(pids, timeout_s=30.0) == []


def test_launcher_speaks_the_official_protocol_on_stdin_and_fd3(tmp_path):
    """The same wire format the official runtime's launcher uses: ack, then a JSON line in and out."""
    import json
    import subprocess
    import sys

    from runtimes import runner

    (tmp_path / "main__.py").write_text(
        "import os\ndef hi(a):\n    return {'x': a['x'], 'aid': os.environ['__OW_ACTIVATION_ID']}\n"
    )
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(runner.LAUNCHER), "hi"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        env={"__OW_WAIT_FOR_ACK": "1"},
        pass_fds=(3,),
        preexec_fn=lambda: os.dup2(w, 3),
    )
    os.close(w)
    with os.fdopen(r, "rb") as results:
        assert json.loads(results.readline()) == {"ok": True}
        proc.stdin.write(b'{"value": {"x": 7}, "activation_id": "z9"}\n')
        proc.stdin.flush()
        assert json.loads(results.readline()) == {"x": 7, "aid": "z9"}
        proc.stdin.close()
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("exit_code", [0, 3])
def test_an_action_that_exits_ends_its_container_cleanly(exit_code, container):
    with container() as c:
        code = f"import sys\ndef main(a):\n    sys.exit({exit_code})\n"
        assert c.init({"name": "x", "code": code}, 30)[0] == 200
        status, body = c.run({"value": {}}, 30)
        assert status == contract.BAD_REQUEST and body["error"] == contract.ERR_EXITED
        status, body = c.run({"value": {}}, 30)
        assert status == contract.INTERNAL_ERROR and body["error"] == contract.ERR_EXITED


ORPHAN = (
    "import os, sys, time\n"
    "def main(a):\n"
    "    r, w = os.pipe()\n"
    "    first = os.fork()\n"
    "    if first == 0:\n"
    "        if os.fork() == 0:\n"
    "            os.write(w, str(os.getpid()).encode())\n"
    "            os._exit(0)\n"
    "        os._exit(0)\n"
    "    os.waitpid(first, 0)\n"
    "    orphan = int(os.read(r, 32))\n"
    "    deadline = time.monotonic() + 30\n"
    "    while time.monotonic() < deadline:\n"
    "        with open(f'/proc/{orphan}/stat') as fh:\n"
    "            fields = fh.read().rsplit(')', 1)[1].split()\n"
    "        if fields[0] == 'Z':\n"
    "            return {'orphan': orphan, 'parent': int(fields[1])}\n"
    "        time.sleep(0.01)\n"
    "    return {'error': 'the orphan did not exit'}\n"
)


def test_an_orphan_that_exited_is_collected_by_the_proxy_before_it_answers(container):
    """The proxy is the subreaper: an action's daemon that exits must not stay a zombie in the container."""
    with container() as c:
        assert c.init({"name": "o", "code": ORPHAN}, 30)[0] == 200
        for _ in range(3):
            status, body = c.run({"value": {}}, 30)
            assert status == 200, body
            assert body["parent"] == c.pid  # adopted by the proxy, not by init
            assert not os.path.exists(f"/proc/{body['orphan']}")
