"""What the platform keeps whatever an action returns: its record closes as an activation error or a result, the
client never sees a 500, and the container slot comes back (`busy` on GET /api/v1 returns to 0).

One platform for the module; each test names its own actions.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from deployer.local.container import MAX_JSON_DEPTH
from deployer.local.invoker import MAX_RESULT_BYTES
from deployer.local.supervisor import LocalPlatform

NODE = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the README's set-up has it)")
INVALID = "The action did not produce a valid JSON or JSON Array response"
NESTED = {
    "python:3.11": "def main(a):\n    d = {}\n    for _ in range(a['n']):\n        d = {'a': d}\n    return d\n",
    "nodejs:20": "function main(a) { let d = {}; for (let i = 0; i < a.n; i++) d = {a: d}; return d }",
}
# The Node.js proxy answers with whatever JSON.stringify gives: so the platform can be sent any bytes as a result.
RAW = "function main(a) { const text = a.text; JSON.stringify = () => text; return {} }"


@pytest.fixture(scope="module")
def api(tmp_path_factory, running_platform):
    with running_platform(LocalPlatform(tmp_path_factory.mktemp("invariants"), max_containers=3, prewarm="none")) as h:
        yield Api(h)


class Api:
    """The module's platform over plain HTTP, so that what a client would see is what the test sees."""

    def __init__(self, handle) -> None:
        self.base = handle.apihost + "/api/v1"
        self.auth = tuple(handle.auth.split(":", 1))
        self.made: set[str] = set()

    def action(self, name: str, kind: str, code: str, **extra) -> None:
        if name not in self.made:
            resp = requests.put(
                f"{self.base}/namespaces/_/actions/{name}?overwrite=true",
                auth=self.auth,
                json={"exec": {"kind": kind, "code": code}, **extra},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            self.made.add(name)

    def invoke(self, name: str, params=None, *, body: bytes | None = None) -> requests.Response:
        data = json.dumps(params or {}).encode() if body is None else body
        return requests.post(
            f"{self.base}/namespaces/_/actions/{name}?blocking=true",
            auth=self.auth,
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )

    def busy(self) -> int:
        return requests.get(self.base, timeout=10).json()["invoker"]["busy"]


def _record(resp: requests.Response) -> dict:
    assert resp.status_code in (200, 502), resp.text[:500]
    return resp.json()


def _developer_error(resp: requests.Response) -> str:
    record = _record(resp)
    assert resp.status_code == 502 and record["response"]["status"] == "action developer error", record
    return record["response"]["result"]["error"]


@pytest.mark.parametrize(
    "kind, depth",
    [
        ("python:3.11", MAX_JSON_DEPTH + 1),
        ("python:3.11", 985),  # serialised by the launcher; the platform's parse ran out of stack here
        ("python:3.11", 3000),  # past the launcher's own recursion limit
        pytest.param("nodejs:20", 985, marks=NODE),
        pytest.param("nodejs:20", 5000, marks=NODE),
        pytest.param("nodejs:20", 200_000, marks=NODE),  # past V8's stack in JSON.stringify
    ],
)
def test_a_result_nested_too_deep_is_a_developer_error_and_frees_its_slot(api, kind, depth):
    name = f"nested-{kind.split(':')[0]}"
    api.action(name, kind, NESTED[kind])
    for _ in range(3):  # a slot leaked per activation would show as busy 3
        error = _developer_error(api.invoke(name, {"n": depth}))
        assert "nests deeper than" in error or "not return a JSON-serialisable" in error
    assert api.busy() == 0
    assert _record(api.invoke(name, {"n": MAX_JSON_DEPTH - 1}))["response"]["status"] == "success"


@NODE
@pytest.mark.parametrize(
    "text, why",
    [
        ('{"a": NaN}', "NaN or Infinity"),
        ('{"a": -Infinity}', "NaN or Infinity"),
        ('{"a": 1e400}', "beyond the range of a double"),
        ('{"a": ' + "7" * 5000 + "}", "more than 4300 digits"),
        ('{"a": ', "not JSON"),
        ('{"a": 1} trailing', "not JSON"),
        ("5", f"{INVALID}: 5"),
        ("null", f"{INVALID}: null"),
        ('"text"', f'{INVALID}: "text"'),
        ("[" * 600 + "]" * 600, "nests deeper than"),
    ],
)
def test_an_answer_the_platform_cannot_hold_is_a_developer_error_and_frees_its_slot(api, text, why):
    api.action("raw", "nodejs:20", RAW)
    for _ in range(2):
        error = _developer_error(api.invoke("raw", {"text": text}))
        assert error.startswith(INVALID) and why in error
    assert api.busy() == 0
    assert _record(api.invoke("raw", {"text": '{"fine": true}'}))["response"]["result"] == {"fine": True}


@pytest.mark.parametrize(
    "expr, why",
    [
        ("object()", "TypeError"),
        ("10 ** 5000", "ValueError"),
        ("{(1, 2): 3}", "TypeError"),
    ],
)
def test_a_python_result_that_is_not_json_is_a_developer_error_saying_why(api, expr, why):
    api.action("unjson", "python:3.11", "def main(a):\n    return {'x': eval(a['expr'])}\n")
    error = _developer_error(api.invoke("unjson", {"expr": expr}))
    assert error.startswith("The action did not return a JSON-serialisable result") and why in error
    assert api.busy() == 0


def test_a_result_over_the_limit_is_an_application_error_quoting_its_start(api):
    api.action("huge", "python:3.11", "def main(a):\n    return {'blob': 'y' * a['n']}\n")
    resp = api.invoke("huge", {"n": 2 * MAX_RESULT_BYTES})
    record = _record(resp)
    # OpenWhisk's truncation (ActivationResponse.processRunResponseContent): an application error
    assert resp.status_code == 502 and record["response"]["status"] == "application error"
    error = record["response"]["result"]["error"]
    assert error.startswith("The action produced a response that exceeded the allowed length: ")
    assert 'The truncated response was: {"blob": "yyy' in error and len(error) < 2000
    assert api.busy() == 0


def test_a_lone_surrogate_in_a_result_or_parameter_comes_back_escaped(api):
    api.action("echo", "python:3.11", "def main(a):\n    return {'s': '\\ud800', 'p': a}\n")
    resp = api.invoke("echo", body=b'{"x": "\\udc00"}')
    assert _record(resp)["response"]["result"] == {"s": "\ud800", "p": {"x": "\udc00"}}


def test_parameters_nested_past_the_limit_are_refused_before_anything_runs(api):
    api.action("echo", "python:3.11", "def main(a):\n    return {'s': '\\ud800', 'p': a}\n")
    body = ('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)).encode()
    resp = api.invoke("echo", body=body)
    assert resp.status_code == 400 and "nest deeper than" in resp.json()["error"]
    assert api.busy() == 0


PARTIAL = {
    "python:3.11": "import sys\ndef main(a):\n    print(f\"o{a['n']}\", end='')\n    sys.stderr.write(f\"e{a['n']}\")\n"
    "    return {'n': a['n']}\n",
    "nodejs:20": "function main(a) { process.stdout.write('o' + a.n); process.stderr.write('e' + a.n); "
    "return {n: a.n} }",
}


@pytest.mark.parametrize("kind", ["python:3.11", pytest.param("nodejs:20", marks=NODE)])
def test_each_activation_of_a_warm_container_gets_exactly_its_own_unterminated_lines(api, kind):
    name = f"partial-{kind.split(':')[0]}"
    api.action(name, kind, PARTIAL[kind])
    for n in range(1, 5):
        record = _record(api.invoke(name, {"n": n}))
        assert record["response"]["result"] == {"n": n} and record["end"] >= record["start"]
        # "<timestamp> stdout: o1": the line the action left open, closed by the proxy, and nothing else
        logs = sorted(line.split(" ", 1)[1] for line in record["logs"])
        assert logs == [f"stderr: e{n}", f"stdout: o{n}"], record["logs"]
