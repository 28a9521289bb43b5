"""The web app: its logic (webapp/analysis.py) directly, and the page (streamlit_app.py) through AppTest."""

from __future__ import annotations

import io
import re
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from realtime.demo import sample_photo_bgr
from realtime.errors import ModelError
from realtime.model_metadata import ModelMetadata
from tests.conftest import EMOTIONS, PROJECT_ROOT
from webapp import analysis as webapp

APP = str(PROJECT_ROOT / "streamlit_app.py")
APP_TIMEOUT_S = 300  # a guard against a hung run on a slow machine, not a speed requirement


@pytest.fixture(scope="module")
def pool(tiny_model):
    """Analyzers with the tiny test model."""
    analyzers = webapp.AnalyzerPool(tiny_model, webapp.AnalysisOptions())
    yield analyzers
    analyzers.close()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Where the app's private temporary folders go during the test (to check they are removed)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def png_bytes(image_bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image_bgr)
    assert ok
    return data.tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels but has no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IEND", b"")


def clip_bytes(folder: Path, frames: int, header_only: bool = False) -> bytes:
    """A small H.264 MP4 of grey frames (header first); with ``header_only`` cut after the header."""
    path = folder / f"clip{frames}.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            image = np.full((48, 64, 3), 20 * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    if header_only:
        data = data[: data.index(b"mdat") + 4]
    return data


def webm_bytes(folder: Path, frames: int) -> bytes:
    """A small VP8 WebM of grey frames at 25 fps: its header gives a duration but no frame count."""
    path = folder / f"clip{frames}.webm"
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            image = np.full((48, 64, 3), 8 * index % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    return path.read_bytes()


def plain_text(markdown: str) -> str | None:
    """The text ``markdown`` shows when all its punctuation is backslash-escaped (shown as it is), else None."""
    text, escaped = [], False
    for char in markdown:
        if escaped:
            text.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif re.fullmatch(r"[!-/:-@\[-`{-~]", char):
            return None  # unescaped: may be markup (emphasis, a link, LaTeX, a color)
        else:
            text.append(char)
    return "".join(text)


def decoded_frames(video: bytes) -> tuple[str, int]:
    """(codec name, number of frames) of an MP4 held in memory."""
    with av.open(io.BytesIO(video)) as container:
        codec = container.streams.video[0].codec_context.name
        return codec, sum(1 for _ in container.decode(video=0))


# --- logic -------------------------------------------------------------------------------------------


def test_check_upload_accepts_known_types_and_refuses_others_and_oversize():
    assert webapp.check_upload("Holiday.JPG", 10, webapp.PHOTO_TYPES, 1) == ".jpg"
    assert webapp.check_upload("talk.webm", 10, webapp.CLIP_TYPES, 1) == ".webm"
    with pytest.raises(webapp.UploadError, match=r"notes\.txt: not a supported file type"):
        webapp.check_upload("notes.txt", 10, webapp.PHOTO_TYPES, 1)
    with pytest.raises(webapp.UploadError, match=r"^clip\.mp4: a video: upload it in the Video clip tab$"):
        webapp.check_upload("clip.mp4", 10, webapp.PHOTO_TYPES, 1)
    with pytest.raises(webapp.UploadError, match=r"^loop\.gif: a GIF \(analysed as a clip, frame by frame\): upload it "
                                                 r"in the Video clip tab$"):
        webapp.check_upload("loop.gif", 10, webapp.PHOTO_TYPES, 1)
    with pytest.raises(webapp.UploadError, match=r"^photo\.JPG: a photo, not a video: upload it in the Photo tab$"):
        webapp.check_upload("photo.JPG", 10, webapp.CLIP_TYPES, 1)
    with pytest.raises(webapp.UploadError, match=r"^IMG_0001\.HEIC: HEIC/HEIF photos \(an iPhone's usual format\) "):
        webapp.check_upload("IMG_0001.HEIC", 10, webapp.PHOTO_TYPES, 1)
    with pytest.raises(webapp.UploadError, match=r"big\.png: 2\.0 MB is more than the 1 MB allowed"):
        webapp.check_upload("big.png", 2 * webapp.MEGABYTE, webapp.PHOTO_TYPES, 1)


def test_uploads_named_without_a_suffix_or_a_wrong_one_are_typed_by_their_content(pool, private_tmp, tmp_path):
    _, png = webapp.example_photo()
    jpeg = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    assert webapp.check_upload("IMG_0001", len(png), webapp.PHOTO_TYPES, 1, png) == ".png"
    assert webapp.check_upload("IMG_0001.HEIC", len(jpeg), webapp.PHOTO_TYPES, 1, jpeg) == ".jpg"  # a JPEG
    assert len(webapp.analyze_photo(jpeg, "IMG_0001", pool).faces) == 1
    mpo = io.BytesIO()  # a phone's JPEG holding a second picture: Pillow reads it as MPO
    Image.open(io.BytesIO(jpeg)).save(mpo, "MPO", save_all=True, append_images=[Image.open(io.BytesIO(jpeg))])
    assert Image.open(io.BytesIO(mpo.getvalue())).format == "MPO"
    assert webapp.check_upload("IMG_0003", len(mpo.getvalue()), webapp.PHOTO_TYPES, 1, mpo.getvalue()) == ".jpg"
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)  # a HEIC's header (PyAV would read an MP4)
    with pytest.raises(webapp.UploadError, match=r"^IMG_0002: HEIC/HEIF photos"):
        webapp.check_upload("IMG_0002", len(heic), webapp.PHOTO_TYPES, 1, heic)
    video = clip_bytes(tmp_path, 4)
    with pytest.raises(webapp.UploadError, match=r"^VID_0001: a video: upload it in the Video clip tab$"):
        webapp.check_upload("VID_0001", len(video), webapp.PHOTO_TYPES, 1, video)
    assert webapp.analyze_clip(video, "VID_0001", pool).frames == 4
    with pytest.raises(webapp.UploadError, match=r"^IMG_0001: a photo, not a video: upload it in the Photo tab$"):
        webapp.check_upload("IMG_0001", len(png), webapp.CLIP_TYPES, 1, png)
    with pytest.raises(webapp.UploadError, match=r"^notes: not a supported file type"):
        webapp.check_upload("notes", 5, webapp.PHOTO_TYPES, 1, b"hello")


def test_download_stem_is_safe():
    assert webapp.download_stem("my clip (1).mp4", "clip") == "my_clip_1"
    assert webapp.download_stem("../../etc/passwd.mp4", "clip") == "passwd"
    assert webapp.download_stem("...mp4", "clip") == "clip"
    assert webapp.download_stem("café ☕ 写真.jpg", "photo") == "café_写真"  # letters of any script are kept
    assert webapp.download_stem("写真.jpg", "photo") != webapp.download_stem("画像.jpg", "photo")
    assert webapp.download_stem("नमस्ते.jpg", "photo") == "नमस्ते"  # marks too
    assert webapp.download_stem("re\u0301sume\u0301 photo.jpg", "photo") == "r\u00e9sum\u00e9_photo"  # as a Mac sends it


def test_resolve_model_path_honours_the_environment(monkeypatch, tiny_model, tmp_path):
    monkeypatch.setenv(webapp.MODEL_ENV, str(tiny_model))
    assert webapp.resolve_model_path() == tiny_model
    monkeypatch.setenv(webapp.MODEL_ENV, str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelError, match=f"{webapp.MODEL_ENV}=.*missing.onnx: no such model file"):
        webapp.resolve_model_path()


def test_model_facts_reads_the_metadata():
    metadata = ModelMetadata(classes=EMOTIONS, facts={"publictest_accuracy": 0.6166, "publictest_samples": 3589,
                                                      "publictest_macro_f1": 0.5698, "parameters": 1767207,
                                                      "precision": "int8", "validation_accuracy": 0.6988,
                                                      "validation_accuracy_int8": 0.7009})
    facts = dict(webapp.model_facts(metadata, Path("models/emotion_cnn_int8.onnx")))
    assert facts["file"] == "emotion_cnn_int8.onnx"
    assert facts["emotions"] == ", ".join(EMOTIONS)
    assert facts["FER2013 PublicTest accuracy"] == "61.7% of 3,589 faces"
    assert facts["PublicTest macro-F1"] == "0.570"
    assert facts["parameters"] == "1,767,207"
    assert facts["precision"] == "int8"
    assert facts["validation accuracy"] == "70.1%"  # the INT8 file's own, not the float32 model's 69.9%
    assert "confidence" not in facts  # temperature 1: the net's own probabilities
    calibrated = ModelMetadata(classes=EMOTIONS, temperature=0.68)
    assert dict(webapp.model_facts(calibrated, Path("m.onnx")))["confidence"] == \
        "calibrated on validation faces (temperature 0.68)"


def test_emotion_hex_matches_the_annotator_colors():
    assert webapp.emotion_hex("angry") == "#e62828"  # BGR (40, 40, 230)
    assert webapp.emotion_hex("some new class").startswith("#")


def test_example_photo_has_one_face_with_all_probabilities(pool, private_tmp):
    name, data = webapp.example_photo()
    photo = webapp.analyze_photo(data, name, pool)
    assert len(photo.faces) == 1
    assert photo.image_rgb.shape == (512, 512, 3)
    table = photo.table()
    assert list(table["face"]) == [1]
    assert table["emotion"][0] in EMOTIONS
    probabilities = photo.probabilities(photo.faces[0])
    assert list(probabilities["emotion"]) == EMOTIONS
    assert probabilities["probability"].sum() == pytest.approx(1.0, abs=1e-3)
    assert list(private_tmp.iterdir()) == []  # the private folder is gone


def test_real_photos_faces_and_no_faces(pool, media):
    couple = webapp.analyze_photo((media / "couple.jpg").read_bytes(), "couple.jpg", pool)
    assert len(couple.faces) == 2
    assert max(couple.image_rgb.shape[:2]) == webapp.DISPLAY_MAX_SIDE  # shown smaller than the 2400 px original
    rgba = webapp.analyze_photo((media / "Image_with_alpha.png").read_bytes(), "alpha.png", pool)
    assert len(rgba.faces) == 1
    assert webapp.analyze_photo((media / "no-faces.jpg").read_bytes(), "no-faces.jpg", pool).faces == []


def test_plain_image_has_no_faces(pool):
    photo = webapp.analyze_photo(png_bytes(np.full((240, 320, 3), 128, np.uint8)), "grey.png", pool)
    assert photo.faces == []
    assert photo.table().empty


@pytest.mark.parametrize(("name", "data", "message"), [
    ("garbage.jpg", b"this is not a picture at all", r"image garbage\.jpg: not an image file"),
    ("empty.png", b"", r"image empty\.png: file is empty"),
    ("cut.png", None, r"image cut\.png: cannot decode it \(image file is truncated; too little of the picture"),
    ("bomb.png", png_header(30_000, 30_000), r"bomb\.png: over 500 megapixels; photos up to 50 megapixels are"),
    ("pano.png", png_header(20_000, 10_000), r"pano\.png: 20000x10000 is 200\.0 megapixels; photos up to 50"),
    ("huge.png", png_header(9_000, 7_000), r"huge\.png: 9000x7000 is 63\.0 megapixels; photos up to 50"),
    ("phone.png", png_header(8_160, 6_144), r"phone\.png: 8160x6144 is 50\.1 megapixels; photos up to 50"),
    ("photo.gif", b"GIF89a", r"photo\.gif: a GIF \(analysed as a clip, frame by frame\): upload it in the Video clip tab"),
])
def test_bad_photos_give_one_line_errors_naming_the_upload(pool, private_tmp, name, data, message):
    if data is None:  # a PNG cut short in its first rows
        whole = png_bytes(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
        data = whole[:400]
    with pytest.raises(webapp.UploadError, match=message) as raised:
        webapp.analyze_photo(data, name, pool)
    assert "\n" not in str(raised.value)
    assert str(private_tmp) not in str(raised.value)
    assert list(private_tmp.iterdir()) == []



def test_a_photo_cut_short_is_analysed_as_far_as_it_decodes_with_a_warning(pool, private_tmp):
    whole = cv2.imencode(".jpg", sample_photo_bgr())[1].tobytes()
    photo = webapp.analyze_photo(whole[: len(whole) * 8 // 10], "cut.jpg", pool)  # it was refused
    [issue] = photo.issues
    assert issue.startswith("image cut.jpg: damaged or cut short (image file is truncated") and "bottom" in issue
    assert len(photo.faces) == 1 and list(private_tmp.iterdir()) == []
    assert webapp.analyze_photo(whole, "whole.jpg", pool).issues == []


def test_an_animated_webp_or_a_multi_page_tiff_says_only_its_first_frame_is_analysed(pool, private_tmp):
    """As the command line says it: the page showed the first frame's faces without a word."""
    frames = [Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB)).rotate(angle) for angle in (0, 5, 10)]
    for name, kind in (("moving.webp", "WEBP"), ("pages.tiff", "TIFF")):
        buffer = io.BytesIO()
        frames[0].save(buffer, kind, save_all=True, append_images=frames[1:])
        photo = webapp.analyze_photo(buffer.getvalue(), name, pool)
        assert photo.issues == [f"{name} holds 3 frames; only the first is analysed"] and len(photo.faces) == 1


def test_a_video_uploaded_as_a_photo_is_sent_to_the_video_tab(pool, private_tmp, tmp_path):
    with pytest.raises(webapp.UploadError, match=r"^clip\.jpg: a video, not a photo: upload it in the Video clip tab$"):
        webapp.analyze_photo(clip_bytes(tmp_path, 3), "clip.jpg", pool)  # it said: use --video
    assert list(private_tmp.iterdir()) == []

def test_a_gif_that_holds_its_last_frame_has_a_timeline_as_long_as_its_video(pool, private_tmp):
    """Each GIF frame lasts its own delay, the last one (a pause before the loop) too: the chart ended 1.85 s early."""
    photo = cv2.resize(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB), (256, 256))
    frames = []
    for level in (0, 120, 240):  # a corner that changes, so that the frames are not merged into one
        photo[-16:, -16:] = level
        frames.append(Image.fromarray(photo))
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=[100, 300, 2000], loop=0)
    clip = webapp.analyze_clip(buffer.getvalue(), "pause.gif", pool)
    with av.open(io.BytesIO(clip.video)) as container:
        video_seconds = container.duration / av.time_base
    timeline = clip.timeline()
    assert list(timeline["time"]) == pytest.approx([0, 0.1, 0.4], abs=0.001) and set(timeline["face"]) == {"face 1"}
    assert list(timeline["until"]) == pytest.approx([0.1, 0.4, 2.4], abs=0.001)
    assert clip.seconds == pytest.approx(video_seconds, abs=0.01) == pytest.approx(2.4, abs=0.01)


def test_demo_clip_gives_a_playable_h264_video_csv_and_timeline(pool, private_tmp):
    progress = []
    clip = webapp.analyze_demo_clip(pool, on_progress=lambda done, expected: progress.append((done, expected)))
    assert clip.frames == 120 and not clip.truncated
    assert progress == [(done, 120) for done in range(1, 121)]
    assert decoded_frames(clip.video) == ("h264", 120)
    assert clip.video_file_name == "demo_clip_emotions.mp4" and clip.csv_file_name == "demo_clip_faces.csv"
    table = pd.read_csv(io.BytesIO(clip.csv))
    assert list(table.columns[-len(EMOTIONS):]) == EMOTIONS
    assert clip.faces_found and set(table["face_id"]) == {1}
    timeline = clip.timeline()
    assert list(timeline.columns) == ["time", "until", "frame", "face", "emotion", "confidence"]
    assert list(timeline["until"][:-1]) == list(timeline["time"][1:]) and timeline["until"].iloc[-1] == 4.0
    assert len(timeline) == len(table) and set(timeline["face"]) == {"face 1"}
    assert timeline["time"].is_monotonic_increasing and set(timeline["emotion"]) <= set(EMOTIONS)
    faces = clip.faces_table()
    assert list(faces["face"]) == [1] and faces["frames seen"][0] == len(table)
    assert list(private_tmp.iterdir()) == []


def test_real_clip(pool, media):
    clip = webapp.analyze_clip((media / "single_face.mp4").read_bytes(), "single_face.mp4", pool)
    assert clip.frames == 72 and not clip.truncated
    assert clip.seconds == pytest.approx(2.4, abs=0.05)  # 72 frames at 30 fps
    assert decoded_frames(clip.video) == ("h264", 72)
    assert clip.faces_found and len(clip.faces_table()) == 1
    assert clip.video_file_name == "single_face_emotions.mp4"


def test_clip_without_faces(pool, tmp_path):
    clip = webapp.analyze_clip(clip_bytes(tmp_path, 8), "grey.mp4", pool)
    assert clip.frames == 8 and not clip.faces_found
    assert clip.timeline().empty and clip.faces_table().empty
    assert decoded_frames(clip.video) == ("h264", 8)


def test_a_raw_mpeg_video_stream_is_a_clip_not_a_photo(pool, tmp_path):
    """A .mpg holding a raw MPEG-1 video stream, which Pillow opens as one "MPEG" frame: still a clip (the
    command line reads its frames), not refused as a photo uploaded as a clip."""
    path = tmp_path / "raw.mpg"
    with av.open(str(path), "w", format="mpeg1video") as container:
        stream = container.add_stream("mpeg1video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = np.full((48, 64, 3), 20 * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    assert path.read_bytes()[:4] == b"\x00\x00\x01\xb3"  # a sequence header: what Pillow's MPEG plugin takes
    clip = webapp.analyze_clip(path.read_bytes(), "holiday.mpg", pool)
    assert clip.frames == 10


def test_a_webm_clip_exactly_at_the_limit_is_whole_and_a_longer_one_is_cut(pool, monkeypatch, tmp_path):
    data = webm_bytes(tmp_path, 12)
    monkeypatch.setattr(webapp, "MAX_CLIP_FRAMES", 12)
    clip = webapp.analyze_clip(data, "whole.webm", pool)
    assert clip.frames == 12 and not clip.truncated
    monkeypatch.setattr(webapp, "MAX_CLIP_FRAMES", 11)
    clip = webapp.analyze_clip(data, "long.webm", pool)
    assert clip.frames == 11 and clip.truncated


def test_a_webm_clip_reports_progress_against_its_length(pool, tmp_path):
    progress = []
    clip = webapp.analyze_clip(webm_bytes(tmp_path, 30), "talk.webm", pool,
                               on_progress=lambda done, expected: progress.append((done, expected)))
    assert clip.frames == 30  # its header counts no frames: 1.2 s at 25 fps are expected
    assert progress == [(done, 30) for done in range(1, 31)]


def test_a_cut_short_clip_says_what_was_lost(pool, tmp_path):
    whole = clip_bytes(tmp_path, 50)
    clip = webapp.analyze_clip(whole[: int(len(whole) * 0.6)], "cut.mp4", pool)
    assert 0 < clip.frames < 50 and not clip.truncated
    [issue] = clip.issues
    assert issue.startswith("video cut.mp4: frames end at ") and "frames lost)" in issue
    assert webapp.analyze_clip(whole, "whole.mp4", pool).issues == []


def test_long_clip_is_cut_at_the_limit(pool, monkeypatch, tmp_path):
    monkeypatch.setattr(webapp, "MAX_CLIP_FRAMES", 10)
    clip = webapp.analyze_clip(clip_bytes(tmp_path, 25), "long.mp4", pool)
    assert clip.truncated and clip.frames == 10
    assert decoded_frames(clip.video) == ("h264", 10)
    assert webapp.clip_frame_limit(1000.0) == 10
    monkeypatch.setattr(webapp, "MAX_CLIP_FRAMES", 1800)
    assert webapp.clip_frame_limit(30.0) == 30 * webapp.MAX_CLIP_SECONDS


def test_a_sampled_clip_analyses_fewer_frames_over_its_whole_length(pool, tmp_path):
    progress = []
    clip = webapp.analyze_clip(clip_bytes(tmp_path, 50), "talk.mp4", pool, sample_fps=5,
                               on_progress=lambda done, expected: progress.append((done, expected)))
    # 2 s at 25 fps: frames 0, 5, ... 45 (every 0.2 s) and the last, 49; all 50 read
    assert (clip.frames, clip.frames_read, clip.sample_fps) == (11, 50, 5) and not clip.truncated
    assert clip.seconds == pytest.approx(2.0)
    assert progress[0] == (1, 50) and progress[-1] == (50, 50) and len(progress) == 11
    assert decoded_frames(clip.video) == ("h264", 11)
    assert webapp.clip_seconds_limit(5) == webapp.MAX_CLIP_FRAMES / 5 and webapp.clip_frame_limit(25.0, 5) == 9000
    assert webapp.clip_seconds_limit(1) == webapp.MAX_SAMPLED_CLIP_SECONDS


def test_a_sampled_demo_clip_has_a_row_per_face_per_frame_analysed_and_a_timeline_of_its_steps(pool):
    clip = webapp.analyze_demo_clip(pool, sample_fps=5)
    assert (clip.frames, clip.frames_read) == (21, 120)  # 4 s at 30 fps: every 0.2 s, and the last
    table = pd.read_csv(io.BytesIO(clip.csv))
    assert list(table["frame"]) == list(range(0, 120, 6)) + [119] and set(table["face_id"]) == {1}
    timeline = clip.timeline()
    steps = (timeline["until"] - timeline["time"]).round(3)  # each until the next frame analysed, as the video
    assert steps[:-2].eq(0.2).all() and list(steps[-2:]) == pytest.approx([5 / 30, 1 / 30], abs=0.001)  # shows it


def test_a_sampled_clip_is_cut_after_the_most_frames_analysed(pool, monkeypatch, tmp_path):
    monkeypatch.setattr(webapp, "MAX_CLIP_FRAMES", 4)  # at 5 a second: 0.8 s of the clip
    clip = webapp.analyze_clip(clip_bytes(tmp_path, 50), "long.mp4", pool, sample_fps=5)
    # frames 0, 5, 10, 15 and the last read, 19 (0.76 s)
    assert clip.truncated and (clip.frames, clip.frames_read) == (5, 20) and clip.seconds == pytest.approx(0.8)
    assert decoded_frames(clip.video) == ("h264", 5)
    # a clip exactly as long as the limit (0.8 s) is whole: it was taken for cut, the most frames analysed
    for frames in (16, 20):
        clip = webapp.analyze_clip(clip_bytes(tmp_path, frames), "whole.mp4", pool, sample_fps=5)
        assert clip.frames == (4 if frames == 16 else 5) and clip.frames_read == frames and not clip.truncated


def test_oversized_clip_frames_are_refused(pool, monkeypatch, tmp_path, private_tmp):
    monkeypatch.setattr(webapp, "MAX_CLIP_SIZE", (32, 24))
    with pytest.raises(webapp.UploadError, match=r"video small\.mp4: 64x48 frames are larger than the 32x24"):
        webapp.analyze_clip(clip_bytes(tmp_path, 3), "small.mp4", pool)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(("name", "data", "message"), [
    ("garbage.mp4", b"\x00\x01 definitely not a video" * 50, r"video garbage\.mp4: not a video file"),
    ("empty.mov", b"", r"video empty\.mov: file is empty"),
    ("header_only.mp4", None, r"video header_only\.mp4: has no frames"),
    ("notes.txt", b"whatever", r"notes\.txt: not a supported file type"),
    ("photo.mp4", None, r"video photo\.mp4: looks like a photo: use the Photo tab"),
])
def test_bad_clips_give_one_line_errors_naming_the_upload(pool, tmp_path, private_tmp, name, data, message):
    if data is None:  # a clip cut after its header, or a photo renamed .mp4
        data = png_bytes(np.full((48, 64, 3), 90, np.uint8)) if name == "photo.mp4" else \
            clip_bytes(tmp_path, 5, header_only=True)
    with pytest.raises(webapp.UploadError, match=message) as raised:
        webapp.analyze_clip(data, name, pool)
    assert "\n" not in str(raised.value) and str(private_tmp) not in str(raised.value)
    assert list(private_tmp.iterdir()) == []


def test_analyzer_pool_lends_each_analyzer_to_one_user_at_a_time(tiny_model):
    pool = webapp.AnalyzerPool(tiny_model, webapp.AnalysisOptions(), photos=1)
    second_got = []

    def borrow_second() -> None:
        with pool.borrow() as second:
            second_got.append(second)

    try:
        with pool.borrow() as first:
            waiter = threading.Thread(target=borrow_second)
            waiter.start()
            waiter.join(timeout=0.5)
            assert waiter.is_alive() and second_got == []  # waits while the only analyzer is lent
        waiter.join(timeout=APP_TIMEOUT_S)
        assert second_got == [first]  # and gets the same one back, not a new one
    finally:
        pool.close()


def test_analyzer_pool_grows_to_its_size_and_closes(tiny_model):
    pool = webapp.AnalyzerPool(tiny_model, webapp.AnalysisOptions(detector_range="short", smoothing=0.0), clips=2)
    with pool.borrow(for_clip=True) as first, pool.borrow(for_clip=True) as second:
        assert first is not second
        assert second.detector.model_range == "short" and second.tracker.smoothing == 0.0
    pool.close()
    assert first.detector.closed and second.detector.closed


def test_a_photo_never_waits_behind_clips(tiny_model):
    pool = webapp.AnalyzerPool(tiny_model, webapp.AnalysisOptions(), clips=1, photos=1)
    photo_got, clip_got = [], []

    def borrow(for_clip: bool, got: list) -> threading.Thread:
        def run() -> None:
            with pool.borrow(for_clip=for_clip) as analyzer:
                got.append(analyzer)
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    try:
        with pool.borrow(for_clip=True) as clip_analyzer:
            photo = borrow(False, photo_got)
            photo.join(timeout=APP_TIMEOUT_S)  # bounded; it does not wait for the clip
            assert not photo.is_alive() and photo_got and photo_got[0] is not clip_analyzer
            second_clip = borrow(True, clip_got)
            second_clip.join(timeout=0.5)
            assert second_clip.is_alive() and clip_got == []  # another clip waits for the clip's analyzer
        second_clip.join(timeout=APP_TIMEOUT_S)
        assert len(clip_got) == 1
    finally:
        pool.close()


# --- the page (AppTest) ------------------------------------------------------------------------------


@pytest.fixture
def app(monkeypatch, tiny_model) -> AppTest:
    """The page with the tiny model, run once."""
    monkeypatch.setenv(webapp.MODEL_ENV, str(tiny_model))
    page = AppTest.from_file(APP, default_timeout=APP_TIMEOUT_S)
    page.run()
    assert not page.exception
    return page


def clip_analysed(page: AppTest) -> AppTest:
    """Wait (bounded) for the clip's analysis, which runs in a thread of its own, then rerun the page as its
    progress poll does when the analysis ends."""
    assert page.session_state["clip_job"].wait(APP_TIMEOUT_S)
    return page.run()


def face_headlines(page: AppTest) -> list[str]:
    return [markdown.value for markdown in page.markdown if markdown.value.startswith("**Face ")]


def test_page_shows_options_model_and_prompts(app):
    assert app.title[0].value == "Emotion Tracer"
    assert [radio.label for radio in app.sidebar.radio] == ["Face detector range"]
    assert [slider.label for slider in app.sidebar.slider] == ["Face detection confidence", "Smoothing (videos)"]
    model = app.sidebar.markdown[0].value
    assert "tiny.onnx" in model and "angry, disgust, fear, happy, neutral, sad, surprise" in model
    assert "none: random test weights" in model
    assert len(app.info) == 2 and not app.error


def test_page_camera_snapshot_is_offered_on_request(app):
    assert not app.get("camera_input")  # the browser asks for the camera only when the user wants it
    [camera] = [toggle for toggle in app.toggle if toggle.label == "Take a snapshot with the camera"]
    camera.set_value(True).run()
    assert not app.exception and len(app.get("camera_input")) == 1


def test_page_example_photo(app):
    [example] = [toggle for toggle in app.toggle if toggle.label == "Try the example photo"]
    example.set_value(True).run()
    assert not app.exception and not app.error
    assert plain_text(app.subheader[0].value) == "astronaut.png"
    [headline] = face_headlines(app)
    assert headline.split(":")[1].split("**")[0].strip() in EMOTIONS
    table = app.dataframe[0].value
    assert list(table.columns)[:3] == ["face", "emotion", "confidence"]
    confidence = table["confidence"][0]  # one figure for one face: the table's is the headline's
    assert confidence == round(confidence, 2) and f"({confidence:.0%} confident)" in headline
    assert len(app.get("image")) == 1 and len(app.get("vega_lite_chart")) == 1


def test_page_real_photo_upload(app, media):
    app.file_uploader(key="photos").set_value(("couple.jpg", (media / "couple.jpg").read_bytes(), "image/jpeg"))
    app.run()
    assert not app.exception and not app.error
    assert len(face_headlines(app)) == 2
    assert len(app.dataframe[0].value) == 2


def test_page_no_face_and_bad_uploads_then_keeps_working(app):
    uploader = app.file_uploader(key="photos")
    uploader.set_value([
        ("grey.png", png_bytes(np.full((120, 160, 3), 90, np.uint8)), "image/png"),
        ("garbage.jpg", b"not a jpeg", "image/jpeg"),
        ("empty.jpg", b"", "image/jpeg"),
    ]).run()
    assert not app.exception
    assert [plain_text(warning.value).split(". ")[0] for warning in app.warning] == ["No face found in grey.png"]
    assert [plain_text(error.value) for error in app.error] == ["image garbage.jpg: not an image file this program can read",
                                                    "image empty.jpg: file is empty"]
    name, data = webapp.example_photo()
    app.file_uploader(key="photos").set_value((name, data, "image/png")).run()
    assert not app.exception and not app.error and len(face_headlines(app)) == 1


def test_page_shows_a_photo_added_twice_once_and_points_a_gif_to_the_clip_tab(app):
    name, data = webapp.example_photo()
    other = png_bytes(cv2.resize(sample_photo_bgr(), (256, 256)))
    app.file_uploader(key="photos").set_value([(name, data, "image/png"), ("other.png", other, "image/png"),
                                               (name, data, "image/png"), ("loop.gif", b"GIF89a", "image/gif")]).run()
    assert not app.exception
    assert len(face_headlines(app)) == 2  # the example photo once, the other photo
    assert "A photo added more than once is shown once." in [caption.value for caption in app.caption]
    assert [plain_text(error.value) for error in app.error] == [
        "loop.gif: a GIF (analysed as a clip, frame by frame): upload it in the Video clip tab"]


def test_page_says_what_a_cut_short_photo_lost(app):
    whole = cv2.imencode(".jpg", sample_photo_bgr())[1].tobytes()
    app.file_uploader(key="photos").set_value(("cut.jpg", whole[: len(whole) * 8 // 10], "image/jpeg")).run()
    assert not app.exception and not app.error and len(face_headlines(app)) == 1
    [warning] = [plain_text(warning.value) for warning in app.warning]
    assert warning.startswith("image cut.jpg: damaged or cut short (image file is truncated") and "bottom" in warning


def test_page_demo_clip_shows_video_chart_and_downloads(app):
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    assert not app.exception and not app.error
    clip_analysed(app)
    assert not app.exception and not app.error
    assert len(app.get("video")) == 1
    assert [button.label for button in app.get("download_button")] == [
        "Download the annotated video", "Download the per-face CSV"]
    assert len(app.get("vega_lite_chart")) == 1  # each face's emotion over time
    assert list(app.dataframe[0].value["face"]) == [1]


def test_page_real_clip_upload(app, media):
    app.file_uploader(key="clip").set_value(
        ("single_face.mp4", (media / "single_face.mp4").read_bytes(), "video/mp4")).run()
    clip_analysed(app)
    assert not app.exception and not app.error
    assert any(markdown.value.startswith("**72 frames** (2.4 s)") for markdown in app.markdown)
    assert len(app.get("video")) == 1 and len(app.get("download_button")) == 2


def test_page_gives_a_one_frame_gif_no_length(app):
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB)).save(buffer, format="GIF")
    app.file_uploader(key="clip").set_value(("still.gif", buffer.getvalue(), "image/gif")).run()
    clip_analysed(app)
    assert not app.exception and not app.error
    [headline] = [markdown.value for markdown in app.markdown if markdown.value.startswith("**1 frame**")]
    assert headline == "**1 frame**, a face in it, 1 face tracked."  # not "(0.01 s)": a GIF's default delay


def test_page_analyses_a_clip_at_fewer_frames_a_second_on_request(app):
    [rate] = [radio for radio in app.radio if radio.label == "Frames analysed"]
    def limit() -> str:
        [caption] = [caption.value for caption in app.caption if caption.value.startswith("Clips are analysed")]
        return caption

    assert rate.value is None and limit() == "Clips are analysed up to their first 60 s (at most 1,800 frames)."
    rate.set_value(5).run()
    assert limit() == "Clips are analysed up to their first 6 min (at most 1,800 frames, one a step, and the last)."
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    clip_analysed(app)
    assert not app.exception and not app.error and len(app.get("video")) == 1
    # 4 s at 30 fps: every 0.2 s and the last frame
    assert any(markdown.value.startswith("**21 frames** analysed of 120 (4.0 s)") for markdown in app.markdown)


def test_page_says_when_fewer_frames_a_second_would_take_more_of_a_clip(app, monkeypatch):
    monkeypatch.setattr(webapp, "MAX_CLIP_SECONDS", 1)  # every frame: 1 s of the 4 s demo clip (3 frames)
    monkeypatch.setattr(webapp, "MAX_CLIP_FRAMES", 3)  # sampled: 3 s at 1 a second, 1.5 s at 2, 0.3 s at 10
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    for chosen, shown in ((None, "Fewer frames analysed a second take up to 3 s of a clip;"),
                          (2, "Fewer frames analysed a second take up to 3 s of a clip;"),
                          (1, None)):  # (it said fewer would take up to 10 min at the lowest rate too)
        [rate] = [radio for radio in app.radio if radio.label == "Frames analysed"]
        rate.set_value(chosen).run()
        clip_analysed(app)
        warnings = [plain_text(warning.value) for warning in app.warning]
        assert len(warnings) == 1 and "is longer than the web app takes" in warnings[0]
        assert (shown in warnings[0]) if shown else ("Fewer frames" not in warnings[0]), warnings


def test_page_bad_clip_shows_an_error(app):
    app.file_uploader(key="clip").set_value(("broken.mp4", b"\x00" * 1000, "video/mp4")).run()
    clip_analysed(app)
    assert not app.exception
    [error] = app.error
    assert plain_text(error.value).startswith("video broken.mp4: not a video file this program can read")
    assert "emotion-tracer-" not in error.value  # no temporary path
    assert not app.get("video")


def test_page_reruns_neither_restart_nor_wait_for_a_clip_and_other_options_do(app):
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    job = app.session_state["clip_job"]
    if not job.finished:  # the page came back while the clip is analysed (the tiny model may be that fast)
        assert len(app.get("video")) == 0 and len(app.get("progress")) == 1
    [example] = [toggle for toggle in app.toggle if toggle.label == "Try the example photo"]
    example.set_value(True).run()  # a photo meanwhile: shown at once, the clip goes on
    assert len(face_headlines(app)) == 1 and app.session_state["clip_job"] is job
    photo = app.session_state["photo_analyses"]
    app.run()  # a rerun shows the photo kept, not analysed again
    assert app.session_state["photo_analyses"] == photo and len(face_headlines(app)) == 1
    app.sidebar.slider[1].set_value(0.3).run()  # other smoothing: the clip is analysed anew
    assert job.wait(APP_TIMEOUT_S) and job.result[1] in (None, "demo clip: cancelled")
    assert app.session_state["clip_job"] is not job
    clip_analysed(app)
    assert not app.exception and not app.error and len(app.get("video")) == 1
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(False).run()  # no clip any more: nothing is analysed
    assert "clip_job" not in app.session_state


def test_page_options_set_back_show_the_clip_analysed_with_them_at_once(app):
    """Smoothing 0.6 -> 0.3 -> 0.6 analysed the clip a third time (minutes for a long clip)."""
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    clip_analysed(app)
    first = app.session_state["clip_job"]
    app.sidebar.slider[1].set_value(0.3).run()
    clip_analysed(app)
    assert app.session_state["clip_job"] is not first and len(app.get("video")) == 1
    app.sidebar.slider[1].set_value(0.6).run()  # back: its result shown again, no progress bar
    assert app.session_state["clip_job"] is first and len(app.get("video")) == 1 and len(app.get("progress")) == 0
    assert not app.exception and not app.error
    demo.set_value(False).run()  # no clip any more: none kept
    assert "clip_job" not in app.session_state and "clip_analysed" not in app.session_state


def test_a_background_clip_reports_progress_and_stops_when_cancelled(pool, private_tmp):
    job = webapp.BackgroundClip("demo", "demo clip",
                                lambda progress, waiting: webapp.analyze_demo_clip(pool, progress, waiting))
    seen = []
    for _ in range(20_000):  # bounded: the test's own guard, not a speed requirement
        seen.append(job.done)
        if job.wait(0.01):
            break
    clip, error = job.result
    assert error is None and clip.frames == 120 and job.done == job.expected == 120 and seen == sorted(seen)
    cancelled = webapp.BackgroundClip("demo", "demo clip",
                                      lambda progress, waiting: webapp.analyze_demo_clip(pool, progress, waiting))
    for _ in range(20_000):
        if cancelled.done or cancelled.wait(0.01):
            break
    cancelled.cancel()
    assert cancelled.wait(APP_TIMEOUT_S)
    if cancelled.done < 120:  # cancelled before its last frame
        assert cancelled.result == (None, "demo clip: cancelled")
    assert list(private_tmp.iterdir()) == []  # the cancelled analysis's temporary files are gone too
    failed = webapp.BackgroundClip("x", "broken.mp4", lambda progress, waiting: webapp.analyze_clip(
        b"\x00" * 100, "broken.mp4", pool, progress, waiting))
    assert failed.wait(APP_TIMEOUT_S) and failed.result[0] is None
    assert failed.result[1].startswith("video broken.mp4: not a video file")


def test_a_background_clip_no_longer_wanted_stops_and_frees_its_analyzer(tiny_model, private_tmp):
    pool = webapp.AnalyzerPool(tiny_model, webapp.AnalysisOptions(), clips=1)
    try:
        job = webapp.BackgroundClip("demo", "demo clip",
                                    lambda progress, waiting: webapp.analyze_demo_clip(pool, progress, waiting),
                                    wanted=lambda: False)  # its page's session has ended
        assert job.wait(APP_TIMEOUT_S)
        assert job.result == (None, "demo clip: cancelled") and job.cancelled and job.done == 0
        with pool.borrow(for_clip=True):  # the pool's only clip analyzer is back
            pass
        assert list(private_tmp.iterdir()) == []
    finally:
        pool.close()


def test_page_starts_again_a_clip_that_stopped_while_its_session_was_away(app):
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    stopped = app.session_state["clip_job"]
    stopped.cancel()  # as when the browser disconnected during the analysis
    assert stopped.wait(APP_TIMEOUT_S)
    app.run()  # the browser is back
    assert app.session_state["clip_job"] is not stopped
    clip_analysed(app)
    assert not app.exception and not app.error and len(app.get("video")) == 1


def test_page_keeps_every_uploaded_photo_analysed(app):
    count = webapp.PHOTOS_KEPT + 2
    photos = [(f"grey{index}.png", png_bytes(np.full((40, 40 + index, 3), 90, np.uint8)), "image/png")
              for index in range(count)]
    app.file_uploader(key="photos").set_value(photos).run()
    analyses = dict(app.session_state["photo_analyses"])
    assert len(analyses) == count and len(app.warning) == count
    app.run()  # a rerun analyses none of them again
    kept = app.session_state["photo_analyses"]
    assert kept.keys() == analyses.keys() and all(kept[key] is analyses[key] for key in analyses)
    app.file_uploader(key="photos").set_value(photos[:1]).run()  # the others are forgotten, down to PHOTOS_KEPT
    assert len(app.session_state["photo_analyses"]) == webapp.PHOTOS_KEPT + 1


def test_page_shows_file_names_as_they_are(app, tmp_path):
    grey = png_bytes(np.full((40, 40, 3), 90, np.uint8))
    names = ["*draft* v2.png", "price $5 and $10.png", ":red[alert].png", "[x](https:example.org).png",
             "# heading.png"]
    app.file_uploader(key="photos").set_value(
        [(name, grey, "image/png") for name in names] + [("_bad_ <b>.jpg", b"not a jpeg", "image/jpeg")]).run()
    assert not app.exception
    assert [plain_text(subheader.value) for subheader in app.subheader] == [*names, "_bad_ <b>.jpg"]
    assert [plain_text(warning.value).split(". ")[0] for warning in app.warning] == [
        f"No face found in {name}" for name in names]
    assert [plain_text(error.value) for error in app.error] == [
        "image _bad_ <b>.jpg: not an image file this program can read"]
    app.file_uploader(key="clip").set_value(("*grey* $1 and $2.mp4", clip_bytes(tmp_path, 4), "video/mp4")).run()
    clip_analysed(app)
    assert plain_text(app.warning[-1].value).startswith("No face found in *grey* $1 and $2.mp4. ")


def test_page_warns_that_a_damaged_clip_was_partly_analysed(app, tmp_path):
    whole = clip_bytes(tmp_path, 50)
    app.file_uploader(key="clip").set_value(("cut.mp4", whole[: int(len(whole) * 0.6)], "video/mp4")).run()
    clip_analysed(app)
    assert not app.exception and not app.error and len(app.get("video")) == 1
    [warning] = [plain_text(warning.value) for warning in app.warning if "frames lost" in warning.value]
    assert warning.startswith("video cut.mp4: frames end at ")
    assert warning.endswith("frames lost). The results cover only the frames that could be read.")


def test_page_without_a_model_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv(webapp.MODEL_ENV, str(tmp_path / "nothing.onnx"))
    page = AppTest.from_file(APP, default_timeout=APP_TIMEOUT_S)
    page.run()
    assert not page.exception
    assert page.error[0].value.startswith("No usable emotion model: EMOTION_TRACER_MODEL=")
    assert any("python -m export" in markdown.value for markdown in page.markdown)
    assert not page.tabs


# --- thin photos, photo downloads, file types, the model's help, the demo toggle, clips without faces,
# --- clips waiting for an analyzer ----------------------------------------------------------------------

STREAMLIT_IMAGE_WIDTH = 1460  # st.image shrinks wider images to this width (image_utils.MAXIMUM_CONTENT_WIDTH)


@pytest.mark.parametrize("shape", [(1, 2000), (7, 10000), (1, 1500), (2000, 1), (3, 3), (1600, 1600)])
def test_display_rgb_never_gives_a_side_that_shrinks_to_nothing(shape):
    shown = webapp.display_rgb(np.full((*shape, 3), 200, np.uint8))
    height, width = shown.shape[:2]
    assert max(height, width) <= webapp.DISPLAY_MAX_SIDE and shown.dtype == np.uint8
    assert min(height, width) >= max(height, width) / webapp.DISPLAY_MAX_ASPECT
    assert int(height * min(width, STREAMLIT_IMAGE_WIDTH) / width) >= 1  # as st.image scales it down


def test_page_a_very_thin_photo_is_shown_and_the_page_goes_on(app):
    banner = png_bytes(np.full((1, 2000, 3), 200, np.uint8))
    app.file_uploader(key="photos").set_value([("banner.png", banner, "image/png"),
                                               ("grey.png", png_bytes(np.full((60, 80, 3), 90, np.uint8)),
                                                "image/png")]).run()
    assert not app.exception and not app.error
    assert [plain_text(subheader.value) for subheader in app.subheader] == ["banner.png", "grey.png"]
    assert len(app.get("image")) == 2 and len(app.get("file_uploader")) == 2  # the clip tab too


def test_page_one_photo_that_cannot_be_shown_leaves_the_others_and_the_tabs(app, monkeypatch):
    def broken(photo, face):
        raise ValueError("no chart today")

    monkeypatch.setattr(webapp.PhotoAnalysis, "probabilities", broken)
    [example] = [toggle for toggle in app.toggle if toggle.label == "Try the example photo"]
    app.file_uploader(key="photos").set_value(
        ("grey.png", png_bytes(np.full((60, 80, 3), 90, np.uint8)), "image/png"))
    example.set_value(True).run()
    assert not app.exception
    assert [plain_text(error.value) for error in app.error] == [
        "astronaut.png: cannot show the result (ValueError: no chart today)"]
    assert [plain_text(warning.value).split(". ")[0] for warning in app.warning] == ["No face found in grey.png"]
    assert len(app.get("file_uploader")) == 2  # the clip tab too


def test_photo_downloads_are_the_full_size_annotated_photo_and_the_command_lines_csv(pool, private_tmp):
    _, data = webapp.example_photo()
    big = cv2.resize(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), (2000, 2000))
    jpeg = cv2.imencode(".jpg", big)[1].tobytes()
    photo = webapp.analyze_photo(jpeg, "Holiday (1).JPEG", pool)
    assert max(photo.image_rgb.shape[:2]) == webapp.DISPLAY_MAX_SIDE  # shown smaller...
    assert photo.image_file_name == "Holiday_1_emotions.jpeg" and photo.image_mime_type == "image/jpeg"
    annotated = cv2.imdecode(np.frombuffer(webapp.annotated_photo(jpeg, photo), np.uint8), cv2.IMREAD_COLOR)
    assert annotated.shape == (2000, 2000, 3)  # ... downloaded at full size
    assert not np.array_equal(annotated, big)  # with its boxes
    shown = cv2.resize(annotated, photo.image_rgb.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(shown.astype(int) - photo.image_rgb[..., ::-1]).mean() < 3  # the annotation the page shows
    assert photo.csv_file_name == "Holiday_1_faces.csv"
    table = pd.read_csv(io.BytesIO(photo.csv))
    from realtime.rows import RESULT_COLUMNS
    assert list(table.columns) == [*RESULT_COLUMNS, *EMOTIONS]  # the command line's results file
    assert len(table) == len(photo.faces) == 1 and table["source"][0] == "Holiday (1).JPEG"
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(("name", "size", "file_name"), [
    ("a.png", (10, 10), "a_emotions.png"), ("a.jpg", (10, 10), "a_emotions.jpg"),
    ("scan.TIF", (10, 10), "scan_emotions.png"), ("x.avif", (10, 10), "x_emotions.png"),
    ("wide.webp", (10, 10), "wide_emotions.webp"), ("wide.webp", (10, 20_000), "wide_emotions.png"),
])
def test_annotated_photo_names_follow_the_command_line(name, size, file_name):
    photo = webapp.PhotoAnalysis(name, np.zeros((1, 1, 3), np.uint8), None, EMOTIONS, b"", size)
    assert photo.image_file_name == file_name


def test_page_photo_downloads(app, media):
    name, data = webapp.example_photo()
    app.file_uploader(key="photos").set_value([
        (name, data, "image/png"), ("couple.jpg", (media / "couple.jpg").read_bytes(), "image/jpeg"),
        ("grey.png", png_bytes(np.full((60, 80, 3), 90, np.uint8)), "image/png")]).run()
    assert not app.exception and not app.error
    assert [button.label for button in app.get("download_button")] == [
        "Download the annotated photo", "Download the per-face CSV",  # astronaut.png
        "Download the annotated photo", "Download the per-face CSV",  # couple.jpg; none for grey.png: no face
        "Download the faces of all these photos (CSV)"]
    app.file_uploader(key="photos").set_value((name, data, "image/png")).run()
    assert [button.label for button in app.get("download_button")] == [
        "Download the annotated photo", "Download the per-face CSV"]


def test_upload_types_are_what_the_command_line_reads_and_what_the_uploader_lets_through():
    from streamlit.elements.lib.file_uploader_utils import normalize_upload_file_type

    from realtime.io.images import IMAGE_SUFFIXES
    from realtime.io.video import VIDEO_SUFFIXES
    assert {f".{kind}" for kind in webapp.PHOTO_TYPES} >= IMAGE_SUFFIXES  # Pillow here decodes AVIF
    assert {f".{kind}" for kind in webapp.CLIP_TYPES} >= VIDEO_SUFFIXES
    for types in (webapp.PHOTO_TYPES, webapp.CLIP_TYPES):  # the uploader's own aliases are checked too (.mpeg4)
        assert sorted(normalize_upload_file_type(list(types))) == sorted(f".{kind}" for kind in types)
    assert webapp.check_upload("talk.MPEG4", 10, webapp.CLIP_TYPES, 1) == ".mpeg4"
    assert webapp.check_upload("scan.tiff", 10, webapp.PHOTO_TYPES, 1) == ".tiff"


def test_clips_and_photos_the_command_line_reads_are_analysed(pool, tmp_path):
    path = tmp_path / "talk.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(6):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * index, np.uint8),
                                                                   format="bgr24")))
        container.mux(stream.encode(None))
    assert webapp.analyze_clip(path.read_bytes(), "talk.mkv", pool).frames == 6
    name, data = webapp.example_photo()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    for suffix in (".bmp", ".tif"):
        photo = webapp.analyze_photo(cv2.imencode(suffix, image)[1].tobytes(), f"astronaut{suffix}", pool)
        assert len(photo.faces) == 1


def test_page_takes_a_bmp_photo_and_an_mkv_clip(app, tmp_path):
    name, data = webapp.example_photo()
    bmp = cv2.imencode(".bmp", cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    app.file_uploader(key="photos").set_value(("astronaut.bmp", bmp, "image/bmp")).run()
    assert not app.exception and not app.error and len(face_headlines(app)) == 1
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(clip_bytes(tmp_path, 4))
    mkv = tmp_path / "clip.mkv"
    with av.open(str(mp4)) as source, av.open(str(mkv), "w", format="matroska") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    app.file_uploader(key="clip").set_value(("clip.mkv", mkv.read_bytes(), "video/x-matroska")).run()
    clip_analysed(app)
    assert not app.exception and not app.error and len(app.get("video")) == 1


def test_page_without_a_model_says_what_the_app_reads(monkeypatch, tmp_path):
    monkeypatch.setenv(webapp.MODEL_ENV, str(tmp_path / "nothing.onnx"))
    page = AppTest.from_file(APP, default_timeout=APP_TIMEOUT_S)
    page.run()
    assert not page.exception and not page.tabs
    help_text = "\n".join(markdown.value for markdown in page.markdown)
    assert "--model" not in help_text.replace("--model runs/", "")  # the command line's flag is not the app's
    assert f"{webapp.MODEL_ENV}=path/to/model.onnx streamlit run streamlit_app.py" in help_text
    assert "--int8-output realtime/model/emotion_cnn_int8.onnx" in help_text  # the path the app reads


def test_a_missing_shipped_model_is_said_without_the_command_lines_flag(monkeypatch):
    def missing():
        raise ModelError("the shipped model /x/realtime/model/emotion_cnn_int8.onnx is missing; reinstall "
                         "emotion-tracer or pass --model PATH", "/x/realtime/model/emotion_cnn_int8.onnx")

    monkeypatch.delenv(webapp.MODEL_ENV, raising=False)
    monkeypatch.setattr(webapp, "default_model_path", missing)
    with pytest.raises(ModelError) as raised:
        webapp.resolve_model_path()
    assert str(raised.value) == "the shipped model /x/realtime/model/emotion_cnn_int8.onnx is missing"


def test_page_says_to_remove_the_uploaded_clip_to_try_the_demo(app, tmp_path):
    app.file_uploader(key="clip").set_value(("grey.mp4", clip_bytes(tmp_path, 4), "video/mp4")).run()
    job = app.session_state["clip_job"]
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    demo.set_value(True).run()
    assert "Remove the uploaded clip to try the demo clip." in [info.value for info in app.info]
    assert app.session_state["clip_job"] is job  # the upload is still the one analysed
    clip_analysed(app)
    assert not app.exception and not app.error


def test_page_clip_without_faces_explains_and_offers_no_empty_csv(app, tmp_path):
    app.file_uploader(key="clip").set_value(("grey.mp4", clip_bytes(tmp_path, 4), "video/mp4")).run()
    clip_analysed(app)
    assert not app.exception and not app.error
    [warning] = [plain_text(warning.value) for warning in app.warning]
    assert warning.startswith("No face found in grey.mp4. ") and "lower the detection confidence" in warning
    assert [button.label for button in app.get("download_button")] == ["Download the annotated video"]


def test_page_no_face_in_the_part_of_a_long_clip_analysed_says_so(app, tmp_path, monkeypatch):
    """The hint said "No face found in X ... try another clip" of a clip whose faces come after the part taken."""
    monkeypatch.setattr(webapp, "MAX_CLIP_SECONDS", 0.1)  # 3 frames of 25 a second: 0.12 s
    app.file_uploader(key="clip").set_value(("long.mp4", clip_bytes(tmp_path, 8), "video/mp4")).run()
    clip_analysed(app)
    warnings = [plain_text(warning.value) for warning in app.warning]
    assert len(warnings) == 2 and "is longer than the web app takes" in warnings[0]
    assert warnings[1].startswith("No face found in the first 0.1 s of long.mp4, the part analysed. ")


def test_page_refuses_a_photo_uploaded_as_a_clip(app):
    app.file_uploader(key="clip").set_value(
        ("holiday.mp4", png_bytes(np.full((48, 64, 3), 90, np.uint8)), "video/mp4")).run()
    clip_analysed(app)
    assert not app.exception and not app.get("video")
    assert [plain_text(error.value) for error in app.error] == ["video holiday.mp4: looks like a photo: use the Photo tab"]


def test_a_clip_waiting_for_an_analyzer_says_so_and_can_be_cancelled(tiny_model, private_tmp):
    pool = webapp.AnalyzerPool(tiny_model, webapp.AnalysisOptions(), clips=1)
    try:
        with pool.borrow(for_clip=True):  # another session's clip has the only clip analyzer
            job = webapp.BackgroundClip("demo", "demo clip",
                                        lambda progress, waiting: webapp.analyze_demo_clip(pool, progress, waiting))
            for _ in range(20_000):  # bounded: the test's own guard
                if job.waiting or job.wait(0.01):
                    break
            assert job.waiting and job.done == 0 and not job.finished
        assert job.wait(APP_TIMEOUT_S) and job.result[1] is None and not job.waiting  # its turn came
        with pool.borrow(for_clip=True):
            waiting = webapp.BackgroundClip("demo", "demo clip",
                                            lambda progress, on_wait: webapp.analyze_demo_clip(pool, progress, on_wait))
            for _ in range(20_000):
                if waiting.waiting or waiting.wait(0.01):
                    break
            waiting.cancel()  # another clip chosen meanwhile: it stops waiting at once
            assert waiting.wait(APP_TIMEOUT_S) and waiting.result == (None, "demo clip: cancelled")
        assert list(private_tmp.iterdir()) == []
    finally:
        pool.close()


def progress_while_held(app: AppTest, monkeypatch, report: Callable) -> str:
    """The progress bar's text while the demo clip's analysis is held after ``report(on_progress, on_wait)``; then it
    is let go, and its result must show."""
    release, analyse = threading.Event(), webapp.analyze_demo_clip

    def held(pool, on_progress=None, on_wait=None, sample_fps=None):
        report(on_progress, on_wait)
        release.wait(APP_TIMEOUT_S)
        on_wait(False)
        return analyse(pool, on_progress, sample_fps=sample_fps)

    monkeypatch.setattr(webapp, "analyze_demo_clip", held)
    [demo] = [toggle for toggle in app.toggle if toggle.label == "Try the demo clip"]
    try:
        demo.set_value(True).run()
        job = app.session_state["clip_job"]
        for _ in range(20_000):
            if job.waiting or job.done or job.wait(0.01):
                break
        app.run()
        [progress] = app.get("progress")
        text = progress.proto.text
    finally:
        release.set()
    clip_analysed(app)
    assert not app.exception and not app.error and len(app.get("video")) == 1
    return text


def test_page_progress_of_a_sampled_clip_says_its_frames_are_read(app, monkeypatch):
    """At 5 a second the bar counted "frame 1039 of 5400" beside a limit of 1,800 frames analysed."""
    [rate] = [radio for radio in app.radio if radio.label == "Frames analysed"]
    rate.set_value(5).run()
    text = progress_while_held(app, monkeypatch, lambda on_progress, on_wait: on_progress(30, 120))
    assert text == webapp.plain_markdown("Analysing demo clip: frame 30 of 120 read, 5 a second analysed")


def test_page_says_a_clip_waits_for_a_free_analyzer(app, monkeypatch):
    text = progress_while_held(app, monkeypatch, lambda on_progress, on_wait: on_wait(True))
    assert text.startswith(webapp.plain_markdown("Waiting for a free analyzer"))
