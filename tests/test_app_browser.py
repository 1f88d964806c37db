"""The app in headless Chromium (Playwright driving Debian's /usr/bin/chromium).

Draw two boxes with the mouse, name them, Generate, see the cycle images and the IoU table;
send the best image to the Grounding tab, click a phrase and see its box; upload an image and
ground all. Runs on the scripted model (tests/app_fakes.py): a random tiny Janus never
answers with a box, so there would be nothing to see. Screenshots go to tests/artifacts/.
Skipped (with the reason) when Playwright or Chromium is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
from pathlib import Path

import pytest
from app_fakes import ScriptedEchoGen
from PIL import Image, ImageDraw

from app.palette import color_of
from app.ui import build_demo

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    model = ScriptedEchoGen()
    demo = build_demo(model)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url, model
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(served):
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(served[0])
        yield page
        browser.close()


def colors_in(page, selector: str) -> set[tuple[int, int, int]]:
    shot = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")
    return set(shot.getdata())


def draw_box(page, canvas_box, start, end, phrase):
    x0, y0 = canvas_box["x"] + start[0], canvas_box["y"] + start[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(canvas_box["x"] + end[0], canvas_box["y"] + end[1], steps=8)
    page.mouse.up()
    label = page.locator("#model-box-edit input[aria-label='Label']")
    label.fill(phrase)
    label.press("Enter")
    sync_api.expect(page.locator("#model-box-edit")).to_have_count(0)


def test_draw_generate_and_see_the_cycle(page, served):
    _, model = served
    canvas = page.locator("#canvas canvas")
    canvas.wait_for()
    page.screenshot(path=ARTIFACTS / "01-empty-canvas.png", full_page=True)
    box = canvas.bounding_box()
    left = (box["width"] - 512) / 2  # the 512 px canvas image is centered, unscaled, in a wider element
    assert left >= 0, "the canvas element is narrower than its image: boxes would be scaled"
    draw_box(page, box, (left + 100, 80), (left + 240, 200), "red circle")
    draw_box(page, box, (left + 280, 260), (left + 460, 420), "blue square")
    page.locator("#caption textarea").fill("a red circle and a blue square")
    page.locator("#randomize input").uncheck()
    page.locator("#seed input").fill("42")
    page.locator("#generate").click()

    sync_api.expect(page.locator("#summary")).to_contain_text("Mean IoU")
    sync_api.expect(page.locator("#cycle img")).to_have_count(2)
    table = page.locator("#cycle-table")
    for text in ("red circle", "blue square", "#1 (seed 42)", "#2 (seed 43)", "pass"):
        sync_api.expect(table).to_contain_text(text)
    sync_api.expect(page.locator("#seed input")).to_have_value("42")
    page.screenshot(path=ARTIFACTS / "02-cycle.png", full_page=True)

    _, layout, n, seed, _ = model.calls[-1]
    assert (n, seed, layout.phrases, layout.caption) == (2, 42, ["red circle", "blue square"],
                                                         "a red circle and a blue square")
    assert layout.boxes[0] == pytest.approx((100, 80, 240, 200), abs=3)
    assert layout.boxes[1] == pytest.approx((280, 260, 460, 420), abs=3)
    # Drawn and re-grounded boxes in the canvas palette, on the cycle images.
    assert {color_of(0), color_of(1)} <= colors_in(page, "#cycle")


def test_ground_a_generated_image_by_clicking_a_phrase(page):
    page.get_by_role("button", name="Ground this image").click()
    phrases = page.locator("#phrases")
    sync_api.expect(phrases).to_contain_text("blue square")
    phrases.get_by_text("blue square", exact=True).click()
    sync_api.expect(page.locator("#ground-out img")).to_have_count(1)
    sync_api.expect(page.get_by_text('"blue square"')).to_have_count(1)
    page.screenshot(path=ARTIFACTS / "03-grounding-click.png", full_page=True)
    seen = colors_in(page, "#ground-out")
    assert color_of(1) in seen and color_of(0) not in seen


def test_upload_an_image_and_ground_all(page, tmp_path):
    path = tmp_path / "shapes.png"
    image = Image.new("RGB", (300, 200), (250, 250, 250))
    ImageDraw.Draw(image).ellipse((30, 40, 130, 140), fill=(220, 30, 30))
    image.save(path)
    page.locator("#ground-image button[aria-label='Remove Image']").click()
    page.locator("#ground-image input[type=file]").set_input_files(str(path))
    page.locator("#ground-text textarea").fill("a red circle and a green star")
    sync_api.expect(page.locator("#phrases")).to_contain_text("green star")
    page.locator("#ground-all").click()
    sync_api.expect(page.get_by_text('"green star"')).to_have_count(1)
    page.screenshot(path=ARTIFACTS / "04-grounding-all.png", full_page=True)
    assert {color_of(0), color_of(1)} <= colors_in(page, "#ground-out")
