"""What the page trusts, over real HTTP: its own bound or public origin only, and its upload caps across restarts.

No platform is needed: everything here is decided before the page invokes anything, so the
OpenWhisk client points at a closed port.
"""

from __future__ import annotations

import base64
import io
import socket

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deployer.web import UPLOAD_PREFIX, Uploads, create_app
from deployer.web.serving import BackgroundServer
from mlcore.openwhisk import OpenWhiskClient

OWN_NAMES = ("127.0.0.1", "localhost", "[::1]")


def png() -> str:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenWhiskClient(f"http://127.0.0.1:{port}", "user:key", timeout_s=5)
    yield client
    client.close()


@pytest.fixture
def page(unreachable, storage):
    with BackgroundServer(create_app(unreachable, storage, public_url="http://page.example:8443")) as server:
        yield server


# names an attacker's DNS can point at 127.0.0.1; the page's own are left out
attacker_names = st.one_of(
    st.sampled_from(["evil.test", "127.0.0.1.evil.test", "localhost.evil.test", "LOCALHOST.", "0.0.0.0", "127.0.0.2"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
).filter(lambda name: name.lower() not in OWN_NAMES + ("page.example",))


def test_a_dns_rebinding_request_is_refused_whatever_name_it_carries(page, storage):
    port = page.port
    before = set(storage.list_keys(UPLOAD_PREFIX + "/"))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=attacker_names, same_port=st.booleans())
    def rebinding(name, same_port):
        # the shape of a rebinding request: the attacker's name as Host, and its page's origin
        host = f"{name}:{port if same_port else 8443}"
        headers = {"Host": host, "Origin": f"http://{host}"}
        posted = requests.post(page.url + "/api/predict", json={"image": png()}, headers=headers, timeout=30)
        read = requests.get(page.url + "/api/health", headers={"Host": host}, timeout=30)
        assert (posted.status_code, read.status_code) == (403, 403), (host, posted.text, read.text)
        assert "was refused" in posted.json()["error"]

    rebinding()
    assert set(storage.list_keys(UPLOAD_PREFIX + "/")) == before


@pytest.mark.parametrize("name", OWN_NAMES)
def test_the_page_answers_under_its_loopback_names_and_its_public_url(page, name):
    own = f"{name}:{page.port}"
    for host, origin in ((own, f"http://{own}"), ("page.example:8443", "http://page.example:8443")):
        # past the guard, an empty post is the page's own 400, not a 403
        answer = requests.post(page.url + "/api/predict", json={}, headers={"Host": host, "Origin": origin}, timeout=30)
        assert answer.status_code == 400 and "send a multipart field" in answer.json()["error"], answer.text
    crossed = requests.post(
        page.url + "/api/predict", json={}, headers={"Host": own, "Origin": "http://page.example:8080"}, timeout=30
    )
    assert crossed.status_code == 403


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_byte_and_count_caps_hold_across_a_restart(storage):
    # Prepare: a page process keeps two uploads of 400 kB under a 1 MB cap, then stops
    clock = Clock()
    first = Uploads(storage, max_bytes=1_000_000, max_count=3, clock=clock)
    kept = []
    for _ in range(2):
        kept.append(first.put(b"\x89PNG" + b"\0" * 400_000, "png", "image/png"))
        first.release(kept[-1], keep=True)
        clock.now += 1
    # Execute: the next process keeps a third, and then a fourth small one
    later = Uploads(storage, max_bytes=1_000_000, max_count=3, clock=clock)
    third = later.put(b"\x89PNG" + b"\0" * 400_000, "png", "image/png")
    later.release(third, keep=True)
    clock.now += 1
    # Assert: 1.2 MB would be over the cap, so one upload of the previous process went
    assert len(later.names()) == 2 and third in later.names() and set(later.names()) < {*kept, third}
    assert sum(len(storage.get_bytes(key)) for key in storage.list_keys(UPLOAD_PREFIX + "/")) <= 1_000_000
    fourth = later.put(b"\x89PNG", "png", "image/png")
    later.release(fourth, keep=True)
    newest = Uploads(storage, max_bytes=10_000_000, max_count=2, clock=clock)
    newest.sweep()  # and the count cap holds for the process after that
    assert len(newest.names()) == 2 and len(list(storage.list_keys(UPLOAD_PREFIX + "/"))) == 2
