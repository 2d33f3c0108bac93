"""Black-box tests of the action proxy: a real process, real HTTP, the OpenWhisk contract; no platform involved."""

import base64
import io
import zipfile

import pytest

from runtimes import contract


@pytest.fixture
def proxy(runtime_proxy):
    return runtime_proxy()


def _init(c, code, main="main", binary=False):
    return c.init({"name": "t", "main": main, "code": code, "binary": binary, "env": {"GREETING": "hi"}}, 30)


def test_init_once_then_403(proxy):
    status, body, _ = _init(proxy, "def main(a):\n    return a\n")
    assert status == 200 and body == {"ok": True}
    status, body, _ = _init(proxy, "def main(a):\n    return a\n")
    assert status == contract.FORBIDDEN
    assert body["error"] == contract.ERR_REINIT


def test_run_before_init_is_refused(proxy):
    status, body = proxy.run({"value": {}}, 10)
    assert status == contract.INTERNAL_ERROR and body["error"] == contract.ERR_NOT_INITIALIZED


def test_empty_code_is_403_and_bad_base64_is_400(proxy):
    status, body, _ = _init(proxy, "")
    assert status == contract.FORBIDDEN and body["error"] == contract.ERR_NO_CODE
    status, body, _ = _init(proxy, "UEsDB%%%", binary=True)
    assert status == contract.BAD_REQUEST and body["error"].startswith("cannot decode the request")
    assert _init(proxy, "def main(a):\n    return a\n")[0] == 200  # neither counted as the one init


def test_run_exports_ow_env_and_sentinels_end_logs(proxy):
    code = (
        "import os, sys\n"
        "def main(a):\n"
        "    print('out line')\n"
        "    print('err line', file=sys.stderr)\n"
        "    return {'aid': os.environ['__OW_ACTIVATION_ID'], 'deadline': os.environ['__OW_DEADLINE'],\n"
        "            'greeting': os.environ['GREETING'], 'x': a['x']}\n"
    )
    assert _init(proxy, code)[0] == 200
    status, body = proxy.run({"value": {"x": 5}, "activation_id": "abc", "deadline": "123"}, 10)
    assert status == 200
    assert body == {"aid": "abc", "deadline": "123", "greeting": "hi", "x": 5}
    logs = proxy.take_logs()
    assert any(line.endswith("stdout: out line") for line in logs)
    assert any(line.endswith("stderr: err line") for line in logs)
    assert not any(contract.SENTINEL in line for line in logs)


def test_array_result_is_allowed_but_a_number_is_502(proxy):
    assert _init(proxy, "def main(a):\n    return [1, 2] if a.get('list') else 5\n")[0] == 200
    assert proxy.run({"value": {"list": True}}, 10) == (200, [1, 2])
    status, body = proxy.run({"value": {}}, 10)
    assert status == contract.BAD_GATEWAY and body["error"] == contract.ERR_NOT_DICT_RESULT


def test_exception_in_main_becomes_error_with_traceback(proxy):
    assert _init(proxy, "def main(a):\n    raise ValueError('bad input x')\n")[0] == 200
    status, body = proxy.run({"value": {}}, 10)
    assert status == 200 and body == {"error": "bad input x"}
    logs = proxy.take_logs()
    assert any("Traceback" in line for line in logs)
    status, body = proxy.run({"value": {}}, 10)  # the container keeps serving
    assert body == {"error": "bad input x"}


def test_bad_json_run_body(proxy):
    import requests

    assert _init(proxy, "def main(a):\n    return a\n")[0] == 200
    resp = requests.post(f"http://127.0.0.1:{proxy.port}/run", data="{not json", timeout=10)
    assert resp.status_code == contract.BAD_REQUEST
    assert resp.json()["error"] == contract.ERR_NOT_DICT_ARG
    resp = requests.post(f"http://127.0.0.1:{proxy.port}/run", json={"value": [1]}, timeout=10)
    assert resp.status_code == contract.BAD_REQUEST


def test_zip_action_with_custom_main_and_helper_module(proxy):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "from helper import double\ndef handler(a):\n    return {'y': double(a['x'])}\n")
        zf.writestr("helper.py", "def double(x):\n    return 2 * x\n")
    code = base64.b64encode(buf.getvalue()).decode()
    assert _init(proxy, code, main="handler", binary=True)[0] == 200
    assert proxy.run({"value": {"x": 21}}, 10) == (200, {"y": 42})


def test_zip_without_main_py_fails_init(proxy):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("other.py", "x = 1\n")
    status, body, _ = _init(proxy, base64.b64encode(buf.getvalue()).decode(), binary=True)
    assert status == contract.BAD_GATEWAY and "__main__.py" in body["error"]


def test_missing_entry_point_and_syntax_error_fail_init(proxy):
    status, body, logs = _init(proxy, "def main(a):\n    return a\n", main="nope")
    assert status == contract.BAD_GATEWAY and "nope" in body["error"]


def test_syntax_error_fails_init_with_logs(proxy):
    status, body, logs = _init(proxy, "def main(a)\n    return a\n")
    assert status == contract.BAD_GATEWAY and "SyntaxError" in body["error"]
    assert any("SyntaxError" in line for line in logs)
