"""What the platform keeps whatever an action returns: its record closes as an activation error or a result, the
client never sees a 500, and the container slot comes back (`busy` on GET /api/v1 returns to 0).

One platform for the module; each test names its own actions.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localwhisk.invoker.container import MAX_JSON_DEPTH, json_depth
from localwhisk.invoker.pool import MAX_RESULT_BYTES
from localwhisk.supervisor import LocalPlatform

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


# Generated results and parameters. A result is sent as a recipe the action expands (`TAG...` strings): NaN and
# the infinities, integers of hundreds to thousands of digits (a BigInt in Node.js), strings past the size limit;
# then it is wrapped `depth` times in an object or a list. The oracle: whatever JSON can carry, small enough and
# nested no deeper than the limit, comes back equal; anything else is a 502 whose record says why. Never a 500.
TAG = "\x00"
EXPAND = {
    "python:3.11": (
        "import sys\n"
        "sys.set_int_max_str_digits(0)\n"
        "def expand(v):\n"
        "    if isinstance(v, str) and v.startswith('\\x00'):\n"
        "        kind, _, arg = v[1:].partition(':')\n"
        "        return {'nan': float('nan'), 'inf': float('inf'), '-inf': -float('inf')}.get(kind) if not arg else (\n"
        "            int('7' * int(arg)) if kind == 'int' else 'y' * int(arg))\n"
        "    if isinstance(v, dict):\n"
        "        return {k: expand(x) for k, x in v.items()}\n"
        "    return [expand(x) for x in v] if isinstance(v, list) else v\n"
        "def main(a):\n"
        "    v = expand(a['value'])\n"
        "    for _ in range(a['depth']):\n"
        "        v = {'a': v} if a['wrap'] == 'dict' else [v]\n"
        "    return v\n"
    ),
    "nodejs:20": (
        "function expand(v) {\n"
        "  if (typeof v === 'string' && v.startsWith('\\u0000')) {\n"
        "    const [kind, arg] = v.slice(1).split(':')\n"
        "    if (arg === undefined) return {nan: NaN, inf: Infinity, '-inf': -Infinity}[kind]\n"
        "    return kind === 'int' ? BigInt('7'.repeat(Number(arg))) : 'y'.repeat(Number(arg))\n"
        "  }\n"
        "  if (Array.isArray(v)) return v.map(expand)\n"
        "  if (v !== null && typeof v === 'object') {\n"
        "    const out = {}\n"
        "    for (const [k, x] of Object.entries(v)) out[k] = expand(x)\n"
        "    return out\n"
        "  }\n"
        "  return v\n"
        "}\n"
        "function main(a) {\n"
        "  let v = expand(a.value)\n"
        "  for (let i = 0; i < a.depth; i++) v = a.wrap === 'dict' ? {a: v} : [v]\n"
        "  return v\n"
        "}\n"
    ),
}
TEXT = st.text(st.characters(exclude_categories=(), exclude_characters=TAG), max_size=12)  # lone surrogates too
PLAIN = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), TEXT
)
SPECIAL = st.one_of(
    st.sampled_from(["nan", "inf", "-inf"]).map(TAG.__add__),
    st.integers(300, 6000).map(lambda n: f"{TAG}int:{n}"),
    st.sampled_from([1000, 2 * MAX_RESULT_BYTES]).map(lambda n: f"{TAG}blob:{n}"),
)
DEPTHS = st.one_of(st.integers(0, 5), st.integers(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 3), st.sampled_from([990, 4000]))


def _json_values(leaves):
    return st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
    )


def _leaves(value) -> list:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _expand(value):
    if isinstance(value, str) and value.startswith(TAG):
        kind, _, arg = value[1:].partition(":")
        if kind in ("nan", "inf", "-inf"):
            return None  # JSON.stringify's; in Python they never come back
        return "y" * int(arg) if kind == "blob" else int("7" * int(arg))
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return [_expand(v) for v in value] if isinstance(value, list) else value


def _as_doubles(value):
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_doubles(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _refusal(kind: str, value, depth: int, wrap: str) -> str | None:
    """None where the result must come back as it is; else the status its record must have."""
    specials = [leaf[1:] for leaf in _leaves(value) if isinstance(leaf, str) and leaf.startswith(TAG)]
    nesting = depth + json_depth(value)
    top = wrap if depth else ("dict" if isinstance(value, dict) else "list" if isinstance(value, list) else None)
    huge_int = any(s.startswith("int:") and (kind == "nodejs:20" or int(s[4:]) > 4300) for s in specials)
    not_json = kind == "python:3.11" and {"nan", "inf", "-inf"} & set(specials)  # JavaScript's JSON makes them null
    if top is None or nesting > MAX_JSON_DEPTH or huge_int or not_json:
        return "action developer error"
    if any(s == f"blob:{2 * MAX_RESULT_BYTES}" for s in specials):
        return "application error"
    return None


def _check_result(api, kind: str, value, depth: int, wrap: str) -> None:
    name = f"gen-{kind.split(':')[0]}"
    api.action(name, kind, EXPAND[kind])
    resp = api.invoke(name, {"value": value, "depth": depth, "wrap": wrap})
    record = _record(resp)
    refusal = _refusal(kind, value, depth, wrap)
    if refusal is None:
        expected = _expand(value)
        for _ in range(depth):
            expected = {"a": expected} if wrap == "dict" else [expected]
        result = record["response"]["result"]
        if kind == "nodejs:20":  # numbers are doubles: JavaScript writes 3.7e16 as 37000000000000000
            result, expected = _as_doubles(result), _as_doubles(expected)
        assert resp.status_code == 200 and result == expected, record["response"]
    else:
        assert resp.status_code == 502 and record["response"]["status"] == refusal, record["response"]
        assert isinstance(record["response"]["result"]["error"], str) and record["response"]["result"]["error"]
    assert api.busy() == 0


GENERATED = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(value=_json_values(PLAIN | SPECIAL), depth=DEPTHS, wrap=st.sampled_from(["dict", "list"]))
def test_generated_python_results_come_back_or_are_a_502_saying_why(api, value, depth, wrap):
    _check_result(api, "python:3.11", value, depth, wrap)


@NODE
@GENERATED
@given(value=_json_values(PLAIN | SPECIAL), depth=DEPTHS, wrap=st.sampled_from(["dict", "list"]))
def test_generated_node_results_come_back_or_are_a_502_saying_why(api, value, depth, wrap):
    _check_result(api, "nodejs:20", value, depth, wrap)


ECHO = {
    "python:3.11": "def main(a):\n    return {'p': a}\n",
    "nodejs:20": "function main(a) { return {p: a} }",
}
# parameters as a client sends them: JSON text, with numbers no double holds and NaN spelled out as literals
OUT_OF_JSON = {f"{TAG}nan": "NaN", f"{TAG}inf": "Infinity", f"{TAG}1e400": "1e400", f"{TAG}-1e400": "-1e400"}


@pytest.mark.parametrize("kind", ["python:3.11", pytest.param("nodejs:20", marks=NODE)])
@GENERATED
@given(
    params=st.dictionaries(TEXT, _json_values(PLAIN | st.sampled_from(sorted(OUT_OF_JSON))), max_size=4),
    depth=st.one_of(st.integers(0, 3), st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 2), st.just(700)),
)
def test_generated_parameters_reach_the_action_unchanged_or_are_a_400(api, kind, params, depth):
    name = f"gen-echo-{kind.split(':')[0]}"
    api.action(name, kind, ECHO[kind])
    for _ in range(depth):
        params = {"a": params}
    text = json.dumps(params)
    for tag, literal in OUT_OF_JSON.items():
        text = text.replace(json.dumps(tag), literal)
    resp = api.invoke(name, body=text.encode())
    if json_depth(params) > MAX_JSON_DEPTH or any(leaf in OUT_OF_JSON for leaf in _leaves(params)):
        assert resp.status_code == 400 and "malformed" in resp.json()["error"], resp.text[:300]
    elif json_depth(params) == MAX_JSON_DEPTH:  # {"p": params} is one level too deep to come back
        assert "nests deeper than" in _developer_error(resp)
    else:
        result, expected = _record(resp)["response"]["result"], {"p": params}
        if kind == "nodejs:20":
            result, expected = _as_doubles(result), _as_doubles(expected)
        assert resp.status_code == 200 and result == expected, resp.text[:300]
    assert api.busy() == 0
