"""A person's path through the page in a real headless Chromium (Debian's; never a downloaded one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mlcore.mnist import load_mnist

from .strokes import DIGIT_STROKES

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)"
    ),
]


def expect(locator):
    """Playwright's waits that run without eval: the page's CSP (rightly) forbids `wait_for_function`'s."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str):
    """A new tab on `url`; `page.console` collects what the browser logged (CSP violations among it)."""
    page = browser.new_page()
    page.console = []
    page.on("console", lambda message: page.console.append(message.text))
    page.goto(url)
    return page


@pytest.fixture
def page(browser, web_server):
    page = open_page(browser, web_server.url + "/")
    try:
        yield page
    finally:
        page.close()


@pytest.fixture
def down_page(browser):
    """The page of a server whose platform (OpenWhisk API and S3) is down."""
    import socket

    from deployer.web import create_app
    from deployer.web.serving import BackgroundServer
    from mlcore.openwhisk import OpenWhiskClient
    from mlcore.storage import Storage, StorageConfig

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = OpenWhiskClient(down, "user:key", timeout_s=5)
    storage = Storage(StorageConfig(endpoint_url=down, bucket="gone", access_key="a", secret_key="s"))
    with BackgroundServer(create_app(client, storage)) as server:
        page = open_page(browser, server.url + "/")
        try:
            yield page
        finally:
            page.close()
            client.close()


def stroke(page, points: list[tuple[float, float]], steps: int = 8) -> None:
    """Drags the mouse through `points`, given in pad coordinates (0..280)."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=steps)
    page.mouse.up()


def chart(page) -> list[dict]:
    """Per bar of the probability chart: digit, probability, drawn height, whether marked top, its % label."""
    bars = page.locator("#bars svg g.bar")
    return [
        {
            "digit": int(bar.get_attribute("data-digit")),
            "p": float(bar.get_attribute("data-probability")),
            "height": float(bar.locator("rect.fill").get_attribute("height")),
            "plot": float(bar.locator("rect.track").get_attribute("height")),
            "top": "top" in bar.get_attribute("class").split(),
            "label": bar.locator("text.p").text_content(),
        }
        for bar in bars.all()
    ]


def shown_digit(page) -> str:
    """The digit the page shows once the answer came back (an error shown instead fails the test)."""
    expect(page.locator("#status")).not_to_have_text("classifying...", timeout=120_000)
    error = page.locator("#error").inner_text()
    assert not error, f"the page showed an error: {error}"
    return page.locator("#digit").inner_text()


def test_drawing_a_one_shows_1_with_ten_bars(page):
    stroke(page, [(140, 40), (140, 240)])
    page.click("#classify")
    assert shown_digit(page) == "1"
    assert page.locator("#bars .bar").count() == 10
    assert page.locator("#bars .bar.top").get_attribute("data-digit") == "1"
    assert page.locator("#error").inner_text() == ""
    # the bar chart: heights proportional to the probabilities, the tallest marked, labels in percent
    bars = chart(page)
    assert [b["digit"] for b in bars] == list(range(10))
    assert sum(b["p"] for b in bars) == pytest.approx(1.0, abs=1e-3)
    assert all(b["height"] == pytest.approx(b["p"] * b["plot"], abs=0.01) for b in bars)
    assert max(bars, key=lambda b: b["height"])["digit"] == 1 and [b["digit"] for b in bars if b["top"]] == [1]
    assert bars[1]["label"] == f"{bars[1]['p'] * 100:.{0 if bars[1]['p'] >= 0.995 else 1}f}%"
    label = page.locator("#bars svg").get_attribute("aria-label")
    assert label.startswith("probability of each digit: 0 ") and "1 " in label
    assert page.locator("#image-link").is_hidden()
    assert not [m for m in page.console if "Content Security Policy" in m], page.console


def test_drawing_a_seven(page):
    stroke(page, [(60, 50), (220, 50), (120, 250)])
    page.click("#classify")
    assert shown_digit(page) == "7"


def test_ten_digits_drawn_with_the_mouse(page):
    """Each digit drawn stroke by stroke (web/strokes.py), classified through the page, platform and action."""
    shown = {}
    for digit, strokes in DIGIT_STROKES.items():
        page.click("#clear")
        for points in strokes:
            stroke(page, points, steps=4)
        page.click("#classify")
        shown[digit] = shown_digit(page)
        assert page.locator("#bars .bar.top").get_attribute("data-digit") == shown[digit]
    right = [d for d, s in shown.items() if s == str(d)]
    assert len(right) >= 9, f"drawn -> shown: {shown}"


def test_the_upload_limit_is_given_in_words(page):
    assert "at most 195 KB)" in page.locator("#upload-form").inner_text()


def test_classify_without_drawing_says_so(page):
    page.click("#classify")
    assert page.locator("#error").inner_text() == "draw a digit first"


def test_uploading_a_picture(page, tmp_path, mnist_root):
    images, labels = load_mnist(train=False, root=mnist_root)
    path = tmp_path / "digit.png"
    Image.fromarray(255 - images[3].numpy()).resize((140, 140)).save(path)
    page.set_input_files("#file", str(path))
    page.click("#upload")
    assert shown_digit(page) == str(int(labels[3]))


def test_uploading_a_non_image_shows_the_error(page, tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"these are notes, not a picture")
    page.set_input_files("#file", str(path))
    page.click("#upload")
    expect(page.locator("#error")).not_to_be_empty(timeout=30_000)
    assert "not an image in a supported format" in page.locator("#error").inner_text()


def test_a_kept_picture_is_linked(page):
    stroke(page, [(140, 40), (140, 240)])
    page.check("#keep")
    page.click("#classify")
    assert shown_digit(page) == "1"
    href = page.locator("#image-link").get_attribute("href")
    assert page.locator("#image-link").is_visible() and "/images/" in href
    assert page.request.get(href).status == 200


def test_with_the_platform_down_the_page_says_so_in_words(down_page):
    stroke(down_page, [(140, 40), (140, 240)])
    down_page.click("#classify")
    expect(down_page.locator("#error")).not_to_be_empty(timeout=60_000)
    error = down_page.locator("#error").inner_text()
    assert "storage cannot be reached" in error and "deployer status" in error
    assert "JSON" not in error and "token" not in error


def test_a_page_without_an_explanation_is_still_told_in_words(page):
    # something between the page and its server (a proxy) answers an HTML error
    page.route(
        "**/api/predict",
        lambda route: route.fulfill(status=502, content_type="text/html", body="<html><body>Bad Gateway</body></html>"),
    )
    stroke(page, [(140, 40), (140, 240)])
    page.click("#classify")
    expect(page.locator("#error")).not_to_be_empty(timeout=30_000)
    assert page.locator("#error").inner_text().startswith("the server answered HTTP 502 without an explanation")
