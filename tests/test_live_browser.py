"""The web app's Live camera tab end to end: Streamlit, streamlit-webrtc and headless Chromium whose
fake camera plays a ../shared face clip; annotated frames must come back over WebRTC.

Runs in a loopback-only network namespace (tests/netns.py), with no STUN/TURN server. Skipped
without /usr/bin/chromium, Playwright or ../shared. With EMOTION_TRACER_SCREENSHOT_LIVE=PATH the
screenshot is also saved there, e.g. for the README:

    EMOTION_TRACER_MODEL=realtime/model/emotion_cnn_int8.onnx EMOTION_TRACER_SCREENSHOT_LIVE=docs/webapp_live.png \\
        python -m pytest tests/test_live_browser.py
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime.detector import FaceDetector
from tests.conftest import EMOTIONS
from tests.netns import loopback_only
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, keep_screenshot, streamlit_server
from webapp import analysis as webapp

SCREENSHOT_ENV = "EMOTION_TRACER_SCREENSHOT_LIVE"
FAKE_CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]
WAIT_MS = 120_000  # guards against a stream that never comes back, not a speed requirement
GRABS = 5  # frames taken from the received video
STRONG_CHANGE = 100  # a channel changed this much is drawing, not video compression
GRAB_FRAME = """video => {
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    return canvas.toDataURL('image/png');
}"""


def write_y4m(clip: Path, path: Path) -> list[np.ndarray]:
    """The clip as an uncompressed .y4m (Chromium's fake camera plays it in a loop); returns its BGR frames."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
    height, width = frames[0].shape[:2]
    with open(path, "wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n".encode())
        for image in frames:
            file.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes())
    return frames


def drawn_pixels(received: list[np.ndarray], sent: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A mask of the pixels the server drew on, from the received frame that best matches a sent one
    (strong changes from it), and that sent frame's index."""
    size = (sent[0].shape[1], sent[0].shape[0])
    best = None
    for image in received:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.int16)
        for index, frame in enumerate(sent):
            difference = np.abs(image - frame).max(axis=2)
            score = float(np.mean(difference))
            if best is None or score < best[0]:
                best = (score, difference, index)
    return best[1] >= STRONG_CHANGE, best[2]


@loopback_only
def test_live_camera_tab_sends_back_annotated_frames(media, tiny_model, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright's Python client is not installed")
    camera = tmp_path / "camera.y4m"
    sent = write_y4m(media / "single_face.mp4", camera)
    with FaceDetector("short", 0.5) as detector:
        faces = [detector.detect(image) for image in sent]
    assert all(len(found) == 1 for found in faces)
    env = {**os.environ, webapp.MODEL_ENV: os.environ.get(webapp.MODEL_ENV) or str(tiny_model)}
    env.pop("EMOTION_TRACER_ICE_SERVERS", None)  # no STUN/TURN: loopback only
    log = tmp_path / "streamlit.log"
    with streamlit_server(env, log) as url:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[*CHROMIUM_ARGS, *FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                page.set_default_timeout(WAIT_MS)
                page.goto(url)
                page.get_by_role("tab", name="Live camera").click()
                component = page.frame_locator('iframe[title*="webrtc"]').first
                component.get_by_role("button", name="START").click()
                # The server's results: a tracked face with its dominant emotion, and the live chart.
                page.get_by_text(re.compile(rf"Face 1: mostly ({'|'.join(EMOTIONS)})")).first.wait_for()
                page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
                video = component.locator("video").first
                video.wait_for()
                page.wait_for_function(f"video => video.readyState >= 2 && video.videoWidth == {sent[0].shape[1]}",
                                       arg=video.element_handle())
                received = []
                for _ in range(GRABS):
                    png = video.evaluate(GRAB_FRAME)
                    received.append(cv2.imdecode(np.frombuffer(base64.b64decode(png.split(",", 1)[1]), np.uint8),
                                                 cv2.IMREAD_COLOR))
                    page.wait_for_timeout(200)
                screenshot = tmp_path / "webapp_live.png"
                page.screenshot(path=str(screenshot))
                assert page.locator('[data-testid="stException"]').count() == 0
                component.get_by_role("button", name="STOP").click()
                page.get_by_role("button", name="Download this session's results (CSV)").wait_for()
            finally:
                browser.close()
        # The frame that came back has the face's box and label drawn on it, and nothing elsewhere.
        drawn, index = drawn_pixels(received, sent)
        box = faces[index][0].box
        margin = box.width  # the label sits above the box
        near = np.zeros_like(drawn)
        near[max(0, box.y1 - margin):box.y2 + margin // 2, max(0, box.x1 - margin // 2):box.x2 + margin // 2] = True
        assert drawn[near].sum() >= 300, f"{drawn[near].sum()} drawn pixels around the face"
        assert drawn[~near].mean() < 0.01, f"{drawn[~near].mean():.1%} of the pixels away from the face changed"
        assert "Error occurred in the WebRTC thread" not in log.read_text()
        keep_screenshot(screenshot, SCREENSHOT_ENV)


@loopback_only
def test_a_camera_whose_video_never_reaches_the_server_is_said_so(media, tiny_model, tmp_path):
    """A browser that cannot connect to the server's WebRTC (here: Chromium hiding its local addresses, as it does
    by default) never gets past connecting: the tab still says, after NO_FRAME_HINT_S, what may be wrong."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright's Python client is not installed")
    camera = tmp_path / "camera.y4m"
    write_y4m(media / "single_face.mp4", camera)
    env = {**os.environ, webapp.MODEL_ENV: str(tiny_model)}
    env.pop("EMOTION_TRACER_ICE_SERVERS", None)
    with streamlit_server(env, tmp_path / "streamlit.log") as url:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream",
                                                     "--use-fake-device-for-media-stream",
                                                     f"--use-file-for-fake-video-capture={camera}"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                page.set_default_timeout(WAIT_MS)
                page.goto(url)
                page.get_by_role("tab", name="Live camera").click()
                page.frame_locator('iframe[title*="webrtc"]').first.get_by_role("button", name="START").click()
                page.get_by_text(re.compile(r"No frame has come in \d+ s: the camera's video is not reaching this "
                                            r"server")).first.wait_for()
                assert page.get_by_text("EMOTION_TRACER_ICE_SERVERS").count() >= 1
                assert page.get_by_text(re.compile(r"Face 1: mostly")).count() == 0  # it never connected
            finally:
                browser.close()
