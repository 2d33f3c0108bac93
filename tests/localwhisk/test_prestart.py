"""Launchers start before /init: a stem cell's /init only imports the action, and changes nothing it sees."""

from __future__ import annotations

import json
import select
import sqlite3
import threading

from localwhisk.invoker.container import Container
from localwhisk.invoker.proxy_connection import ProxyConnection
from localwhisk.store import Store
from runtimes.wsgiserver import WSGIServer

SEES = (
    "import os, sys\n"
    "PRELOADED = 'torch' in sys.modules\n"
    "PATH_AT_IMPORT = list(sys.path)\n"
    "ENV_AT_IMPORT = dict(os.environ)\n"
    "def main(a):\n"
    "    return {'preloaded': PRELOADED, 'path': PATH_AT_IMPORT, 'env': ENV_AT_IMPORT}\n"
)


def _init_and_run(env: dict, init_env: dict | None = None) -> dict:
    with Container("pre", memory_mb=1024, log_limit_bytes=1 << 20, env=env) as c:
        c.start()
        status, body, logs = c.init({"name": "s", "main": "main", "code": SEES, "env": init_env or {}}, 60)
        assert status == 200, (body, logs)
        status, body = c.run({"value": {}}, 30)
        assert status == 200, body
        return body


def test_an_ml_stem_cell_has_torch_imported_before_the_action_arrives():
    body = _init_and_run({"ACTION_PRELOAD_MODULES": "mlcore.preload"}, {"GREETING": "hi"})
    assert body["preloaded"] is True
    assert body["env"]["GREETING"] == "hi"
    assert "ACTION_PRELOAD_MODULES" not in body["env"] and "ACTION_DENY_MODULES" not in body["env"]


def test_a_plain_python_launcher_waits_without_the_ml_stack():
    body = _init_and_run({"ACTION_PRELOAD_MODULES": ""})
    assert body["preloaded"] is False


def test_python_settings_in_the_init_env_get_a_launcher_started_with_them(tmp_path):
    extra = tmp_path / "extra-path"
    extra.mkdir()
    body = _init_and_run({"ACTION_PRELOAD_MODULES": "mlcore.preload"}, {"PYTHONPATH": str(extra)})
    assert str(extra) in body["path"]  # read by the interpreter at start: the prestarted one was replaced
    assert body["preloaded"] is False


def test_a_broken_preload_costs_the_stem_cell_not_the_action():
    with Container(
        "pre", memory_mb=256, log_limit_bytes=1 << 20, env={"ACTION_PRELOAD_MODULES": "no_such_module_here"}
    ) as c:
        c.start()
        status, body, _ = c.init({"name": "s", "main": "main", "code": SEES}, 60)
        assert status == 200, body
        assert c.run({"value": {}}, 30)[0] == 200


def test_a_kept_connection_closed_by_the_server_is_replaced_before_the_next_request():
    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]

    server = WSGIServer("127.0.0.1", 0, app, idle_timeout_s=0.2)

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = ProxyConnection("127.0.0.1", server.port)
        assert conn.post("/run", b"{}", 5) == (200, b"{}")
        first = conn._sock
        select.select([first], [], [], 10)  # the server closes the idle connection: EOF arrives
        assert conn.post("/run", b"{}", 5) == (200, b"{}")
        assert conn._sock is not first
        conn.close()
    finally:
        server.shutdown()
        thread.join(10)


def test_closed_activation_records_reach_the_database_by_the_time_it_is_closed(tmp_path):
    store = Store(tmp_path / "p.db")
    docs = [{"activationId": f"a{i}", "namespace": "guest", "name": "x", "start": i} for i in range(50)]
    for doc in docs:
        store.begin_activation(doc)
    for doc in docs:
        store.end_activation({**doc, "end": 1})
    store.close()
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute("SELECT COUNT(*) FROM activations WHERE done=1").fetchone()[0] == 50


def test_a_read_after_a_close_sees_the_record(tmp_path):
    store = Store(tmp_path / "p.db")
    try:
        doc = {"activationId": "a1", "namespace": "guest", "name": "x", "start": 1, "end": 0}
        store.begin_activation(doc)
        store.end_activation({**doc, "end": 2})
        assert store.get_activation("guest", "a1")["end"] == 2
        assert store.list_activations("guest", None, 10, 0)[0]["end"] == 2
    finally:
        store.close()


def test_a_store_stopping_on_a_full_disk_gives_up_and_the_next_start_closes_the_record(small_fs, fill_fs):
    disk = small_fs("state", "4m")
    store = Store(disk / "p.db")
    doc = {"activationId": "a1", "namespace": "guest", "name": "x", "start": 1, "end": 0, "big": "x" * 200_000}
    store.begin_activation({k: v for k, v in doc.items() if k != "big"})
    fill_fs(disk)
    store.end_activation({**doc, "end": 2})  # does not fit
    store.close()  # returns: the writer gives up once the store is closing
    assert not store._writer.is_alive()
    (disk / "filler").unlink()
    again = Store(disk / "p.db")
    try:
        assert again.close_interrupted(lambda d: {**d, "end": 3}) == 1
        assert again.get_activation("guest", "a1")["end"] == 3
    finally:
        again.close()


def test_an_action_that_bundles_its_own_copy_of_a_preloaded_package_runs_its_copy():
    import base64
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(
            "__main__.py",
            "import mlcore\n"
            "def main(a):\n"
            "    return {'mark': getattr(mlcore, 'MARK', None), 'file': mlcore.__file__}\n",
        )
        z.writestr("mlcore/__init__.py", "MARK = 'bundled'\n")
    with Container(
        "pre", memory_mb=1024, log_limit_bytes=1 << 20, env={"ACTION_PRELOAD_MODULES": "mlcore.preload"}
    ) as c:
        c.start()
        code = base64.b64encode(buf.getvalue()).decode()
        status, body, logs = c.init({"name": "s", "main": "main", "code": code, "binary": True}, 60)
        assert status == 200, (body, logs)
        status, body = c.run({"value": {}}, 30)
    assert status == 200 and body["mark"] == "bundled", body


def _in_a_thread_that_ends(fn):
    """Runs fn in a thread and returns once that thread is gone: the kernel's parent-death signal fires then."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()))
    thread.start()
    thread.join()
    return out["value"]


def test_a_container_started_by_a_thread_that_ends_lives_on():
    # PR_SET_PDEATHSIG fires when the forking *thread* ends: an inline cold start on a connection's thread
    # used to lose its container (SIGKILL) once that client hung up
    def started():
        c = Container("t/ends", memory_mb=256, log_limit_bytes=1 << 20)
        c.start()
        return c

    c = _in_a_thread_that_ends(started)
    try:
        assert c.alive()
        status, body, _ = c.init({"name": "s", "main": "main", "code": "def main(a):\n    return {'ok': 1}\n"}, 30)
        assert status == 200, body
        assert c.run({"value": {}}, 30) == (200, {"ok": 1})
    finally:
        c.kill()


def test_a_launcher_started_by_a_thread_that_ends_lives_on(tmp_path):
    from runtimes.runner import ActionRunner

    runner = ActionRunner(workdir=tmp_path)
    _in_a_thread_that_ends(
        lambda: runner.init({"name": "s", "main": "main", "code": "def main(a):\n    return {'ok': 2}\n"})
    )
    assert json.loads(runner.run({"value": {}})) == {"ok": 2}
