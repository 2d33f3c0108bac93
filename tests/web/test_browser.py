"""A person's path through the page in a real headless Chromium (Debian's; never a downloaded one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mlcore.mnist import load_mnist

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, web_server):
    page = browser.new_page()
    page.goto(web_server.url + "/")
    try:
        yield page
    finally:
        page.close()


def stroke(page, points: list[tuple[float, float]]) -> None:
    """Drags the mouse through `points`, given in pad coordinates (0..280)."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()


def shown_digit(page) -> str:
    """The digit the page shows once the answer came back (an error shown instead fails the test)."""
    page.wait_for_function("document.getElementById('status').textContent !== 'classifying...'", timeout=120_000)
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


def test_drawing_a_seven(page):
    stroke(page, [(60, 50), (220, 50), (120, 250)])
    page.click("#classify")
    assert shown_digit(page) == "7"


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
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
    assert "not an image in a supported format" in page.locator("#error").inner_text()
