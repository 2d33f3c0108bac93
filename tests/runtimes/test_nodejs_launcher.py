"""Black-box tests of the Node.js action proxy: a real node process, real HTTP, the OpenWhisk contract; no platform."""

import base64
import io
import json
import shutil
import zipfile

import pytest

from runtimes import contract

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (the README's set-up installs Node.js)"
)


@pytest.fixture
def proxy(runtime_proxy):
    return runtime_proxy("nodejs")


def _init(c, code, main="main", binary=False, env=None):
    return c.init({"name": "t", "main": main, "code": code, "binary": binary, "env": env or {}}, 30)


def test_init_once_then_403_and_run_before_init_refused(proxy):
    status, body = proxy.run({"value": {}}, 10)
    assert status == contract.FORBIDDEN and body["error"] == "System not initialized."  # the Node.js runtime's words
    assert _init(proxy, "function main(a) { return a }")[:2] == (200, {"ok": True})
    status, body, _ = _init(proxy, "function main(a) { return a }")
    assert status == contract.FORBIDDEN and body["error"] == contract.ERR_REINIT


def test_init_env_and_ow_variables_are_visible_at_load_and_run(proxy):
    code = (
        "const atLoad = process.env.GREETING\n"
        "function main(a) { console.log('run'); console.error('err');"
        " return {atLoad, id: process.env.__OW_ACTIVATION_ID, echo: a} }"
    )
    assert _init(proxy, code, env={"GREETING": "hi"})[0] == 200
    status, body = proxy.run({"value": {"x": 1}, "activation_id": "abc"}, 10)
    assert status == 200 and body == {"atLoad": "hi", "id": "abc", "echo": {"x": 1}}
    logs = proxy.take_logs()  # two streams, each read by its own thread: their interleaving is not defined
    assert sorted(line.split(" ", 1)[1] for line in logs) == ["stderr: err", "stdout: run"]


def test_an_array_result_is_allowed_and_a_string_is_not(proxy):
    assert _init(proxy, "function main(a) { return a.kind === 'array' ? [1, 2] : 'text' }")[0] == 200
    assert proxy.run({"value": {"kind": "array"}}, 10) == (200, [1, 2])
    status, body = proxy.run({"value": {}}, 10)
    assert status == contract.BAD_GATEWAY and body["error"] == "The action did not return a dictionary."


def test_empty_code_and_a_bad_archive_fail_init(proxy):
    status, body, _ = _init(proxy, "")
    assert status == contract.FORBIDDEN and body["error"] == contract.ERR_NO_CODE
    status, body, logs = _init(proxy, base64.b64encode(b"not a zip at all").decode(), binary=True)
    assert status == contract.BAD_GATEWAY and "not a zip archive" in body["error"]


def test_a_zip_member_cannot_escape_the_action_folder(proxy):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("package.json", json.dumps({"main": "index.js"}))
        zf.writestr("../../escaped.js", "exports.main = () => ({})")
    status, body, _ = _init(proxy, base64.b64encode(buf.getvalue()).decode(), binary=True)
    assert status == contract.BAD_GATEWAY and "escapes the folder" in body["error"]


def test_a_missing_entry_point_is_an_init_error(proxy):
    status, body, _ = _init(proxy, "function other() {}", main="main")
    assert status == contract.BAD_GATEWAY and "is not a function" in body["error"]
