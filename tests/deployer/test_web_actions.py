"""Web actions over plain HTTP, without the API key, as apache/openwhisk's WebActions.scala serves them."""

from __future__ import annotations

import base64

import pytest
import requests

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
