"""Web actions over plain HTTP, without the API key, as apache/openwhisk's WebActions.scala serves them."""

from __future__ import annotations

import base64
import json
import re
import socket
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

ECHO = "def main(a):\n    return a\n"


def _web(
    platform,
    name: str,
    code: str,
    annotations: dict | None = None,
    parameters: dict | None = None,
    kind: str = "python:3.11",
) -> str:
    platform.client.create_action(
        name,
        {"kind": kind, "code": code},
        annotations={"web-export": True, **(annotations or {})},
        parameters=parameters,
    )
    return f"{platform.apihost}/api/v1/web/guest/default/{name}"


def test_json_extension_passes_query_body_and_request_context(platform):
    url = _web(platform, "w-echo", ECHO)
    resp = requests.post(url + ".json/some/path?q=1", json={"b": 2}, headers={"X-Custom": "yes"}, timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    args = resp.json()
    assert (args["q"], args["b"], args["__ow_method"], args["__ow_path"]) == ("1", 2, "post", "/some/path")
    assert args["__ow_headers"]["x-custom"] == "yes"
    assert resp.headers["x-openwhisk-activation-id"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_an_action_without_web_export_is_not_found(platform):
    platform.client.create_action("w-private", {"kind": "python:3.11", "code": ECHO})
    resp = requests.get(f"{platform.apihost}/api/v1/web/guest/default/w-private.json", timeout=30)
    assert resp.status_code == 404 and resp.json()["error"] == "The requested resource does not exist."


@pytest.mark.parametrize(
    "ext,code,content_type,body",
    [
        (".html", "def main(a):\n    return {'html': '<p>hi</p>'}\n", "text/html", b"<p>hi</p>"),
        (".svg", "def main(a):\n    return {'svg': '<svg/>'}\n", "image/svg+xml", b"<svg/>"),
        (".text", "def main(a):\n    return {'text': 'plain words'}\n", "text/plain", b"plain words"),
    ],
)
def test_content_extensions_project_their_field(platform, ext, code, content_type, body):
    url = _web(platform, f"w-ext{ext.replace('.', '-')}", code)
    resp = requests.get(url + ext, timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith(content_type)
    assert resp.content == body


def test_an_extension_whose_field_is_missing_is_an_error(platform):
    url = _web(platform, "w-nohtml", "def main(a):\n    return {'nothing': 1}\n")
    resp = requests.get(url + ".html", timeout=30)
    assert resp.status_code == 400 and resp.json()["error"] == "Response is not valid 'text/html'."
    resp = requests.get(url + ".text", timeout=30)
    assert resp.status_code == 404 and resp.json()["error"] == "Response does not include requested property."


def test_http_extension_sets_status_headers_and_decodes_binary_bodies(platform):
    png = base64.b64encode(b"\x89PNG fake").decode()
    code = (
        "def main(a):\n"
        f"    if a.get('kind') == 'image':\n"
        f"        return {{'statusCode': 201, 'headers': {{'Content-Type': 'image/png', 'X-A': ['1', '2']}},"
        f" 'body': '{png}'}}\n"
        "    if a.get('kind') == 'empty':\n"
        "        return {}\n"
        "    return {'headers': {'Location': '/elsewhere'}, 'statusCode': 302}\n"
    )
    url = _web(platform, "w-http", code)
    image = requests.get(url + ".http?kind=image", timeout=30)
    assert image.status_code == 201 and image.content == b"\x89PNG fake"
    assert image.headers["Content-Type"] == "image/png" and image.headers["X-A"] == "1, 2"
    assert requests.get(url + "?kind=empty", timeout=30).status_code == 204  # no extension means .http
    redirect = requests.get(url, allow_redirects=False, timeout=30)
    assert redirect.status_code == 302 and redirect.headers["Location"] == "/elsewhere"


def test_application_errors_answer_their_error_field(platform):
    url = _web(platform, "w-fails", "def main(a):\n    return {'error': {'statusCode': 418, 'body': 'teapot'}}\n")
    resp = requests.get(url + ".http", timeout=30)
    assert resp.status_code == 418 and resp.text == "teapot"


def test_require_whisk_auth_with_a_secret_header(platform):
    url = _web(platform, "w-secret", ECHO, annotations={"require-whisk-auth": "s3cret"})
    assert requests.get(url + ".json", timeout=30).status_code == 401
    assert requests.get(url + ".json", headers={"X-Require-Whisk-Auth": "wrong"}, timeout=30).status_code == 401
    assert requests.get(url + ".json", headers={"X-Require-Whisk-Auth": "s3cret"}, timeout=30).status_code == 200


def test_require_whisk_auth_true_asks_for_valid_credentials(platform):
    url = _web(platform, "w-authed", ECHO, annotations={"require-whisk-auth": True})
    assert requests.get(url + ".json", timeout=30).status_code == 401
    assert requests.get(url + ".json", auth=("nobody", "nothing"), timeout=30).status_code == 401
    assert requests.get(url + ".json", auth=tuple(platform.auth.split(":", 1)), timeout=30).status_code == 200


def test_final_parameters_and_reserved_names_cannot_be_overridden(platform):
    url = _web(platform, "w-final", ECHO, annotations={"final": True}, parameters={"model": "fixed"})
    assert requests.get(url + ".json", timeout=30).json()["model"] == "fixed"
    for query in ("?model=mine", "?__ow_method=put"):
        resp = requests.get(url + ".json" + query, timeout=30)
        assert resp.status_code == 400
        assert resp.json()["error"] == "Request defines parameters that are not allowed (e.g., reserved properties)."


def test_raw_http_actions_get_the_query_and_body_as_strings(platform):
    url = _web(platform, "w-raw", ECHO, annotations={"raw-http": True})
    args = requests.post(
        url + ".json?a=1&b=2", data="plain body", headers={"Content-Type": "text/plain"}, timeout=30
    ).json()
    assert args["__ow_query"] == "a=1&b=2" and args["__ow_body"] == "plain body" and "a" not in args
    binary = requests.post(
        url + ".json", data=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}, timeout=30
    ).json()
    assert base64.b64decode(binary["__ow_body"]) == b"\x00\x01"


def test_options_answers_cors_without_invoking(platform):
    url = _web(platform, "w-cors", ECHO)
    before = len(platform.client.list_activations("w-cors", limit=200))
    resp = requests.options(url + ".json", headers={"Access-Control-Request-Headers": "X-Thing"}, timeout=30)
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Headers"] == "X-Thing"
    assert len(platform.client.list_activations("w-cors", limit=200)) == before


def test_nodejs_web_action_in_a_package(platform):
    platform.client.create_package("webpkg")
    platform.client.create_action(
        "webpkg/hello",
        {"kind": "nodejs:20", "code": "function main(p) { return {html: '<b>' + p.name + '</b>'} }"},
        annotations={"web-export": True},
    )
    resp = requests.get(f"{platform.apihost}/api/v1/web/guest/webpkg/hello.html?name=Ada", timeout=30)
    assert resp.status_code == 200 and resp.text == "<b>Ada</b>"


# .http answers: every header checked before it reaches the wire
ANSWER = (
    "def main(a):\n"
    "    return {'headers': a.get('h', {}), 'body': a.get('body', 'ok'), 'statusCode': a.get('code', 200)}\n"
)
INVALID_HTTP = "Response is not valid 'message/http'."


def _raw_post(platform, path: str, payload: dict) -> bytes:
    """The response exactly as the server wrote it (status line, header lines, body)."""
    url = urlsplit(platform.apihost)
    body = json.dumps(payload).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def answer_url(platform):
    _web(platform, "w-answer", ANSWER)
    return "/api/v1/web/guest/default/w-answer.http"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A\r\nInjected": "yes"},
        {"X-A\nInjected": "yes"},
        {"X A": "1"},
        {"": "1"},
        {"X:A": "1"},
        {"X-\u00e9": "1"},
        {"X-A": "1\r\nInjected: yes"},
        {"X-A": "a\nInjected: yes"},
        {"X-A": "nul\x00"},
        {"X-A": "snow \u2603"},
        {"X-A": ["1", {"nested": "object"}]},
        {"X-A": None},
    ],
)
def test_a_header_that_cannot_be_sent_makes_the_answer_invalid(platform, answer_url, headers):
    raw = _raw_post(platform, answer_url, {"h": headers})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw[:200]
    assert json.loads(body)["error"] == INVALID_HTTP
    assert b"Injected" not in raw


def test_latin1_header_values_and_lists_pass_through(platform, answer_url):
    resp = requests.post(
        platform.apihost + answer_url, json={"h": {"X-Cafe": "caf\u00e9", "X-Many": ["1", ["2", 3]]}}, timeout=30
    )
    assert resp.status_code == 200 and resp.text == "ok"
    assert resp.raw.headers["X-Cafe"].encode("latin-1") == "caf\u00e9".encode("latin-1")
    assert resp.headers["X-Many"] == "1, 2, 3"


def test_hop_by_hop_headers_from_an_action_are_dropped(platform, answer_url):
    dropped = {
        "Transfer-Encoding": "chunked",
        "Connection": "close",
        "Keep-Alive": "timeout=1",
        "Upgrade": "websocket",
        "TE": "trailers",
        "Trailer": "X-Later",
        "Proxy-Authenticate": "Basic",
        "Content-Length": "999",
    }
    with requests.Session() as session:
        for _ in range(2):  # the connection stays usable: the action's Connection: close did not reach it
            resp = session.post(platform.apihost + answer_url, json={"h": {**dropped, "X-Kept": "1"}}, timeout=30)
            assert resp.status_code == 200 and resp.content == b"ok" and resp.headers["X-Kept"] == "1"
            assert resp.headers["Content-Length"] == "2"
            assert not {name.lower() for name in dropped} - {"content-length"} & {k.lower() for k in resp.headers}


@pytest.mark.parametrize("code, status", [(201, 201), ("202", 202), (203.0, 203), (101, 400), (100, 400), (600, 400)])
def test_status_codes_as_openwhisk_reads_them(platform, answer_url, code, status):
    resp = requests.post(platform.apihost + answer_url, json={"code": code}, timeout=30)
    assert resp.status_code == status
    if status == 400:
        assert resp.json()["error"] == INVALID_HTTP


def test_an_answer_json_cannot_carry_is_an_invalid_answer_not_a_500(platform):
    url = _web(platform, "w-nan", "def main(a):\n    return {'body': {'x': float('nan')}}\n")
    resp = requests.get(url + ".http", timeout=30)
    assert resp.status_code in (400, 502) and resp.headers["Content-Type"] == "application/json"


# request bodies, as WebActions.scala passes them on
MULTIPART = (
    b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\xfe data\r\n--XyZ--\r\n"
)


@pytest.mark.parametrize(
    "content_type, data, ow_body",
    [
        ("text/plain", b"plain words", "plain words"),
        ("text/plain; charset=utf-8", "caf\u00e9".encode(), "caf\u00e9"),
        ("application/xml", b"<a>1</a>", "<a>1</a>"),
        ("text/xml", b"<a>1</a>", "<a>1</a>"),
        ("application/octet-stream", b"\x00\xff\x10", base64.b64encode(b"\x00\xff\x10").decode()),
        ("image/png", b"\x89PNG", base64.b64encode(b"\x89PNG").decode()),
        (None, b"\x00\x01 no type", base64.b64encode(b"\x00\x01 no type").decode()),
        ("application/x-custom", b"abc", base64.b64encode(b"abc").decode()),
        ("application/x-custom; charset=utf-8", b"abc", "abc"),
        # Pekko counts multipart as character data: OpenWhisk hands it on as UTF-8 text, unparsed
        ("multipart/form-data; boundary=XyZ", MULTIPART, MULTIPART.decode("utf-8", "replace")),
        ("application/json", b"[1, 2]", [1, 2]),
        ("application/vnd.api+json", b'"text"', "text"),
    ],
)
def test_a_body_that_is_not_an_object_arrives_as_ow_body(platform, content_type, data, ow_body):
    url = _web(platform, "w-bodies", ECHO)
    headers = {"Content-Type": content_type} if content_type else {}
    resp = requests.post(url + ".json?q=1", data=data, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    args = resp.json()
    assert args["__ow_body"] == ow_body and args["q"] == "1"


@pytest.mark.parametrize(
    "content_type, data",
    [
        ("application/json", b'{"a": 1, "b": [2]}'),
        ("application/json; charset=utf-8", b'{"a": 1, "b": [2]}'),
        ("application/merge-patch+json", b'{"a": 1, "b": [2]}'),
        ("application/x-www-form-urlencoded", b"a=1&b=2"),
    ],
)
def test_json_and_form_bodies_merge_into_the_parameters(platform, content_type, data):
    url = _web(platform, "w-merge", ECHO)
    args = requests.post(url + ".json", data=data, headers={"Content-Type": content_type}, timeout=30).json()
    assert "__ow_body" not in args and args["a"] in (1, "1") and args["b"] in ([2], "2")


@pytest.mark.parametrize("data", [b"{not json", b'{"a": NaN}', b"[1, 2"])
def test_malformed_json_is_a_400_with_openwhisks_error_body(platform, data):
    url = _web(platform, "w-badjson", ECHO)
    resp = requests.post(url + ".json", data=data, headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 400 and resp.headers["Content-Type"] == "application/json"
    assert set(resp.json()) == {"error", "code"} and "malformed" in resp.json()["error"]


@pytest.mark.parametrize(
    "content_type, data, ow_body",
    [
        ("application/json", b'{"a": 1}', base64.b64encode(b'{"a": 1}').decode()),
        ("application/x-www-form-urlencoded", b"a=1", "a=1"),
        ("multipart/form-data; boundary=XyZ", MULTIPART, MULTIPART.decode("utf-8", "replace")),
        (None, b"\x00", "AA=="),
    ],
)
def test_raw_http_actions_get_every_body_unparsed(platform, content_type, data, ow_body):
    url = _web(platform, "w-raw-bodies", ECHO, annotations={"raw-http": True})
    headers = {"Content-Type": content_type} if content_type else {}
    args = requests.post(url + ".json?a=2", data=data, headers=headers, timeout=30).json()
    assert args["__ow_body"] == ow_body and args["__ow_query"] == "a=2" and "a" not in args


_HEADER_LINE = re.compile(rb"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+: [\t\x20-\x7e\x80-\xff]*\Z")
_PLATFORM_HEADERS = {
    b"content-type",
    b"content-length",
    b"date",
    b"connection",
    b"x-openwhisk-activation-id",
    b"access-control-allow-origin",
    b"access-control-allow-methods",
    b"access-control-allow-headers",
}
_HEADER_VALUES = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none()
)


@settings(max_examples=60, deadline=None)
@given(
    headers=st.dictionaries(
        st.one_of(st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z"), st.text(max_size=20)),
        st.one_of(_HEADER_VALUES, st.lists(_HEADER_VALUES, max_size=3)),
        max_size=4,
    )
)
def test_generated_header_maps_never_split_the_response_or_fail_it(platform, answer_url, headers):
    raw = _raw_post(platform, answer_url, {"h": headers})
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0][:13] in (b"HTTP/1.1 200 ", b"HTTP/1.1 400 "), raw[:300]
    for line in lines[1:]:
        assert _HEADER_LINE.match(line), line
        name = line.split(b":", 1)[0].lower()
        assert name in _PLATFORM_HEADERS or name.decode() in {k.lower() for k in headers}, line
    if lines[0].startswith(b"HTTP/1.1 400"):
        assert json.loads(body)["error"] == INVALID_HTTP
