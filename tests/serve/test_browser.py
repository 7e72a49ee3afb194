"""The page of `vlvae serve` in headless Chromium (Playwright driving Debian's `chromium` binary):
pick words, generate, see decoded images with captions; share the view's URL; the other tabs.

Skipped, with the reason, where Playwright's Python package or a `chromium` binary is missing
(`.ci/run` installs Debian's chromium when it can). The screenshot goes to the test's temporary
folder and, when the environment variable VLVAE_SCREENSHOT names a file, there too.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest
import uvicorn

from vlvae.inference import Inference
from vlvae.serve import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is not installed (pip install -e '.[test]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian: apt-get install "
    "chromium); the browser test drives it through Playwright",
)

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def decoded_images(page, selector):
    """(count, how many finished decoding with a natural width > 0) of the images under ``selector``."""
    return page.eval_on_selector_all(
        selector, "imgs => [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length]"
    )


def test_pick_words_generate_and_share(page, served, tmp_path):
    page.goto(served + "/")
    page.wait_for_selector("body[data-ready=true]")
    words = ["large", "green", "rubber", "cylinder", "behind", "small", "yellow", "metal", "cube"]
    for slot, word in enumerate(words):
        page.select_option(f'select[data-slot="{slot}"]', word)
    assert page.input_value("#text") == " ".join(words)
    page.fill("#n", "4")
    page.fill("#seed", "7")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#text-results figure img').length === 8")
    page.wait_for_function("[...document.querySelectorAll('#text-results img')].every(i => i.complete)")
    assert decoded_images(page, "#text-results figure img") == [8, 8]
    headings = page.eval_on_selector_all("#text-results .column h2", "hs => hs.map(h => h.textContent)")
    assert headings == ["q_Agg(z|y)", "q_True(z|y)"]
    captions = page.eval_on_selector_all(
        "#text-results figcaption", "cs => cs.map(c => c.textContent.trim())"
    )
    assert len(captions) == 8 and all(len(c.split()) == 9 for c in captions)
    scores = page.eval_on_selector_all("#text-results .correctness", "cs => cs.map(c => c.textContent)")
    assert len(scores) == 8 and all(s.startswith("correctness ") and s.endswith(" %") for s in scores)
    assert "error" not in page.get_attribute("#status", "class")

    screenshot = tmp_path / "serve_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("VLVAE_SCREENSHOT"):
        target = Path(os.environ["VLVAE_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target)

    # The URL holds the query: opening it again reproduces the same view.
    url = page.url
    assert "text=large+green+rubber" in url and "seed=7" in url and "n=4" in url
    assert page.get_attribute("#permalink", "href") == url
    first = page.eval_on_selector_all("#text-results figure img", "imgs => imgs.map(i => i.src)")
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#text-results figure img').length === 8")
    assert page.eval_on_selector_all("#text-results figure img", "imgs => imgs.map(i => i.src)") == first
    assert page.input_value("#seed") == "7" and page.input_value('select[data-slot="1"]') == "green"


def test_a_bad_word_is_marked_and_reported(page, served):
    page.goto(served + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#text", "small pink metal cube left large blue rubber sphere")
    assert "mismatch" in page.get_attribute('select[data-slot="1"]', "class")
    page.click("#generate")
    page.wait_for_selector("#status.error")
    assert "unknown word" in page.text_content("#status") and "'pink'" in page.text_content("#status")
    # A caption that reads the same scene from the other object differs from the text in no word.
    mirrored = page.evaluate(
        "closest('large blue rubber sphere right small red metal cube'.split(' '), "
        "'small red metal cube left large blue rubber sphere').join(' ')"
    )
    assert mirrored == "large blue rubber sphere right small red metal cube"


def test_prior_image_and_report_tabs(page, served):
    page.goto(served + "/?tab=prior&n=3&seed=2")
    page.wait_for_function("document.querySelectorAll('#prior-results figure img').length === 6")
    page.wait_for_function("[...document.querySelectorAll('#prior-results img')].every(i => i.complete)")
    assert decoded_images(page, "#prior-results figure img") == [6, 6]
    page.click("#tab-button-image")
    page.click("#random-image")
    page.wait_for_function("document.querySelectorAll('#image-results img').length === 2")
    page.wait_for_function("[...document.querySelectorAll('#image-results img')].every(i => i.complete)")
    assert decoded_images(page, "#image-results img") == [2, 2]
    assert len(page.text_content("#image-results .facts dd.caption").split()) == 9
    assert "image=" in page.url
    page.click("#tab-button-report")
    frame = page.wait_for_selector("#report-frame:not([hidden])")
    report = frame.content_frame()
    report.wait_for_selector("table")
    assert "vlvae report" in report.text_content("h1")


def test_celeba_attributes_are_a_multi_select(page, celeba_run):

    server = uvicorn.Server(
        uvicorn.Config(create_app(Inference.open(celeba_run)), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the CelebA test server did not start"
            page.wait_for_timeout(50)
        port = server.servers[0].sockets[0].getsockname()[1]
        page.goto(f"http://127.0.0.1:{port}/?text=Smiling+-+-+-+-+-+-+-+-&n=2")
        page.wait_for_function("document.querySelectorAll('#text-results figure img').length === 2")
        assert page.is_checked('#slots input[value="Smiling"]') and not page.is_checked(
            '#slots input[value="Male"]'
        )
        page.check('#slots input[value="Male"]')
        assert page.input_value("#text").split() == ["Male", "Smiling"] + ["-"] * 7
        missing = page.eval_on_selector_all(".column.missing h2", "hs => hs.map(h => h.textContent)")
        assert missing == ["q_True(z|y)", "q_φ(z)"]  # greyed out: this run has no q_True and no prior
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_free_captions_take_any_words_and_flag_unknown_ones(page, imported_run):

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Inference.open(imported_run)), host="127.0.0.1", port=0, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the test server of imported captions did not start"
            page.wait_for_timeout(50)
        port = server.servers[0].sockets[0].getsockname()[1]
        page.goto(f"http://127.0.0.1:{port}/?n=2")
        page.wait_for_selector("#slots .hint")
        assert page.query_selector_all("#slots select") == []  # no word slots: free text
        page.fill("#text", "A BLUE square, zebra!")
        page.click("#generate")
        page.wait_for_function("document.querySelectorAll('#text-results figure img').length === 2")
        status = page.text_content("#status")
        assert "not in the vocabulary" in status and "zebra" in status and "blue" not in status.split(":")[-1]
        captions = page.eval_on_selector_all("#text-results figcaption", "cs => cs.map(c => c.textContent)")
        assert captions and all("<end>" not in c for c in captions)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_bad_link_values_are_named_when_the_page_opens(page, served):
    page.goto(served + "/?n=abc&seed=-3&text=small+pink+metal+cube+left+large+blue+rubber+sphere")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#status.error")
    status = page.text_content("#status")
    assert status.startswith("ignored from the link:")
    assert 'n="abc"' in status and "1 to 64" in status and 'seed="-3"' in status and "pink" in status
    # The defaults stand in the boxes for the bad numbers; the bad text stays there to be corrected.
    assert page.input_value("#n") == "8" and page.input_value("#seed") == "0"
    assert page.input_value("#text").startswith("small pink")
    assert page.query_selector_all("#text-results figure img") == []  # nothing was asked
    page.goto(served + "/?tab=ocean")
    page.wait_for_selector("#status.error")
    assert 'tab="ocean"' in page.text_content("#status")
    assert page.get_attribute("#tab-button-text", "aria-selected") == "true"


def test_a_failure_clears_the_previous_image_and_numbers_are_consistent(page, served):
    count = page.request.get(served + "/api/vocab").json()["validation_count"]
    page.goto(served + f"/?tab=image&image={count}")
    page.wait_for_selector("#status.error")
    assert f"numbered 0 to {count - 1}" in page.text_content("#status")
    assert "(0 to" in page.text_content("#image-range")
    page.fill("#image-index", "3")
    page.click("#show-image")
    page.wait_for_function("document.querySelectorAll('#image-results img').length === 2")
    title = page.text_content("#image-results figcaption")
    assert title == f"validation image 3 (of {count}, numbered 0 to {count - 1}, from the validation split)"
    assert "image=3" in page.url
    # A bad number: the error replaces the image shown before.
    page.fill("#image-index", str(count + 5))
    page.click("#show-image")
    page.wait_for_selector("#status.error")
    assert f"numbered 0 to {count - 1}" in page.text_content("#status")
    assert page.query_selector_all("#image-results img") == [] and "image=" not in page.url
    # A failed upload: the same.
    page.click("#random-image")
    page.wait_for_function("document.querySelectorAll('#image-results img').length === 2")
    page.set_input_files("#upload", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
    page.wait_for_selector("#status.error")
    assert "not a readable PNG or JPEG" in page.text_content("#status")
    assert page.query_selector_all("#image-results img") == []


def test_a_failed_generate_clears_the_previous_samples(page, served):
    page.goto(served + "/?n=2")
    page.wait_for_selector("body[data-ready=true]")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#text-results figure img').length === 4")
    page.fill("#n", "500")
    page.click("#generate")
    page.wait_for_selector("#status.error")
    assert "samples must be a whole number from 1 to 64" in page.text_content("#status")
    assert page.query_selector_all("#text-results figure img") == []
    assert len(page.query_selector_all("#text-results .column")) == 2  # the empty columns stay
