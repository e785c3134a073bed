"""The web page in headless Chromium (Debian's, driven by Playwright): upload a picture, and the
3D viewer shows the avatar's mesh. The screenshot is kept in test-artifacts/ for a person to see."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# the flags a closed network needs (no background calls), and software WebGL for the viewer
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium() -> str:
    path = os.environ.get("AVATAR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).is_file(), (
        f"no Chromium at {path}: `make test` installs Debian's (apt-get install chromium), "
        "or set AVATAR_CHROMIUM to a Chromium binary"
    )
    return path


def test_uploading_a_picture_shows_its_mesh_in_the_viewer(served, tmp_path):
    from playwright.sync_api import sync_playwright

    picture = tmp_path / "face.png"
    image = np.zeros((96, 96, 3), np.uint8)
    image[..., 0], image[24:72, 24:72] = 180, (240, 200, 160)
    Image.fromarray(image).save(picture)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(f"{served.url}/")
            page.wait_for_function("() => !!customElements.get('model-viewer')")
            page.locator("#model").filter(has_text="v1").wait_for()  # the live version shows
            assert f"v{served.version}" in page.locator("#model").inner_text()
            page.set_input_files("#image", str(picture))
            page.fill("#mesh_resolution", "32")
            page.fill("#views", "3")
            page.click("#go")
            page.locator("#status").filter(has_text="done").wait_for(timeout=120_000)
            viewer = page.locator("model-viewer").first
            page.wait_for_function(
                "() => { const v = document.querySelector('model-viewer'); return v && v.loaded; }",
                timeout=60_000,
            )
            page.wait_for_timeout(500)  # one more frame after the load event
            shot = viewer.screenshot(path=str(ARTIFACTS / "serve-viewer-mesh.png"))
            page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
            views_loaded = page.eval_on_selector(".views img", "img => img.naturalWidth")
        finally:
            browser.close()
    assert not errors, errors
    resolution = requests.get(f"{served.url}/v1/model", timeout=10).json()["resolution"]
    assert views_loaded == 3 * resolution  # the grid of three views shows
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)
    background = np.array([0xE8, 0xE8, 0xED])
    drawn = np.abs(pixels - background).sum(-1) > 30
    # the mesh covers part of the viewer, not nothing and not everything
    assert 0.01 < drawn.mean() < 0.95, drawn.mean()
