"""End to end in a real browser: the Streamlit server, headless Chromium (Playwright), a photo upload, a clip.

Runs in a loopback-only network namespace (tests/netns.py).

Skipped without /usr/bin/chromium (Debian: apt-get install chromium chromium-driver) or Playwright's
Python client. The server uses $EMOTION_TRACER_MODEL when set, else the tiny test model. With
EMOTION_TRACER_SCREENSHOT=PATH the screenshot is also saved there, e.g. for the README:

    EMOTION_TRACER_MODEL=realtime/model/emotion_cnn_int8.onnx EMOTION_TRACER_SCREENSHOT=docs/webapp.png \\
        python -m pytest tests/test_browser.py
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime.demo import sample_photo_bgr
from tests.conftest import EMOTIONS, PROJECT_ROOT, SHARED_MEDIA
from tests.netns import loopback_only
from webapp import analysis as webapp

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_ENV = "EMOTION_TRACER_SCREENSHOT"
START_TIMEOUT_S = 180  # guards against a server that never comes up, not a speed requirement
RESULT_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def playwright_api():
    """Playwright's sync API, or skip."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium chromium-driver)")
    return pytest.importorskip("playwright.sync_api", reason="playwright's Python client is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(server: subprocess.Popen, url: str, log: Path) -> None:
    """Poll the server's health endpoint until it answers; fail with its log if it exits or never answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with code {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit did not start within {START_TIMEOUT_S} s:\n{log.read_text()}")


@contextmanager
def streamlit_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free loopback port with ``env``; yields its URL, then stops it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(server, url, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def keep_screenshot(screenshot: Path, env_name: str) -> None:
    """Copy the screenshot to the path in $``env_name``, when set (for the README)."""
    target = os.environ.get(env_name)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)


@loopback_only
def test_photo_upload_in_a_real_browser(playwright_api, tiny_model, tmp_path):
    photo = SHARED_MEDIA / "couple.jpg"
    # without ../shared, and for the README's screenshot (../shared is never published): the photo
    # scikit-image ships
    if not photo.is_file() or os.environ.get(SCREENSHOT_ENV):
        name, data = webapp.example_photo()
        photo = tmp_path / name
        photo.write_bytes(data)
    env = {**os.environ, webapp.MODEL_ENV: os.environ.get(webapp.MODEL_ENV) or str(tiny_model)}
    log = tmp_path / "streamlit.log"
    with streamlit_server(env, log) as url:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(url)
                uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
                uploader.wait_for(state="attached", timeout=RESULT_TIMEOUT_MS)
                uploader.set_input_files(str(photo))
                headline = page.get_by_text(re.compile(rf"Face 1: ({'|'.join(EMOTIONS)})")).first
                headline.wait_for(timeout=RESULT_TIMEOUT_MS)
                page.locator('[data-testid="stImage"] img').first.wait_for(timeout=RESULT_TIMEOUT_MS)
                page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=RESULT_TIMEOUT_MS)
                page.wait_for_function("() => [...document.images].every(image => image.complete)",
                                       timeout=RESULT_TIMEOUT_MS)
                # served by the server's media route and decoded by the browser (a broken image is "complete" too)
                widths = page.evaluate("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                                       ".map(image => image.naturalWidth)")
                assert len(widths) == 1 and widths[0] > 0
                assert page.get_by_text(photo.name, exact=True).count() >= 1
                assert page.locator('[data-testid="stException"]').count() == 0
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0
                screenshot = tmp_path / "webapp.png"
                page.screenshot(path=str(screenshot))
            finally:
                browser.close()
        assert screenshot.stat().st_size > 0
        keep_screenshot(screenshot, SCREENSHOT_ENV)


def progress_frames(page) -> list[int]:
    """The frame numbers the page's progress bars show now (none once the clip is done)."""
    texts = page.get_by_text(re.compile(r"Analysing demo clip: frame \d+")).all_inner_texts()
    return [int(re.search(r"frame (\d+)", text).group(1)) for text in texts]


@contextmanager
def video_clip_tab(playwright_api, tiny_model, tmp_path: Path) -> Iterator:
    """The page's Video clip tab in headless Chromium, served with ``tiny_model``."""
    env = {**os.environ, webapp.MODEL_ENV: str(tiny_model)}
    with streamlit_server(env, tmp_path / "streamlit.log") as url:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(url)
                page.get_by_role("tab", name="Video clip").click()
                yield page
            finally:
                browser.close()


@loopback_only
def test_a_clip_goes_on_while_another_tab_is_open(playwright_api, tiny_model, tmp_path):
    with video_clip_tab(playwright_api, tiny_model, tmp_path) as page:
        page.get_by_text("Try the demo clip").click()
        video = page.locator('[data-testid="stVideo"]')
        video.or_(page.get_by_text("Analysing demo clip")).first.wait_for(timeout=RESULT_TIMEOUT_MS)
        seen = []
        for step in range(200):  # bounded; each tab chosen reruns the page while the clip is analysed
            seen += progress_frames(page)
            if step % 4 == 0:
                page.get_by_role("tab", name="Photo" if step % 8 == 0 else "Video clip").click()
            if step % 8 == 4 and video.count():
                break
            page.wait_for_timeout(100)
        page.get_by_role("tab", name="Video clip").click()
        video.first.wait_for(timeout=RESULT_TIMEOUT_MS)
        assert seen == sorted(seen)  # the analysis went on; it never started again
        for label in ("Download the annotated video", "Download the per-face CSV"):
            page.get_by_role("button", name=label).wait_for(timeout=RESULT_TIMEOUT_MS)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def long_clip(path: Path, seconds: int = 40) -> Path:
    """A 640x360 H.264 clip of the sample photo's face panning, ``seconds`` long at 30 frames/s: long enough to
    be removed while it is analysed."""
    face = cv2.resize(sample_photo_bgr(), (300, 300))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for index in range(30 * seconds):
            frame = np.full((360, 640, 3), 90, np.uint8)
            left = 20 + index % 300
            frame[30:330, left:left + 300] = face
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode(None))
    return path


@loopback_only
def test_a_clip_removed_while_it_is_analysed_stops(playwright_api, tiny_model, tmp_path):
    """The uploader's Remove button while a clip is analysed: the analysis stops at once (its progress goes, the
    page asks for a video again) and frees its analyzer."""
    clip = long_clip(tmp_path / "long.mp4")
    with video_clip_tab(playwright_api, tiny_model, tmp_path) as page:
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="A short video")
        uploader.locator('input[type="file"]').set_input_files(str(clip))
        progress = page.get_by_text(re.compile(r"Analysing long\.mp4: frame \d+ of 1200"))
        progress.first.wait_for(timeout=RESULT_TIMEOUT_MS)
        uploader.get_by_role("button", name="Remove long.mp4").click()
        page.get_by_text("Upload a video to follow each face's emotion over time.").wait_for(
            timeout=RESULT_TIMEOUT_MS)
        page.wait_for_timeout(1500)  # two rounds of the progress polling, had it gone on
        assert progress.count() == 0
        assert page.locator('[data-testid="stVideo"]').count() == 0
        assert page.locator('[data-testid="stException"]').count() == 0
