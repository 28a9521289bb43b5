"""FaceDetector on real photos (the `media` fixture) and on synthetic edge cases."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from realtime.detector import DEFAULT_MIN_CONFIDENCE, FaceDetector, relative_to_pixel_box
from realtime.io.images import read_image


@pytest.fixture(scope="module")
def full_range():
    with FaceDetector("full") as detector:
        yield detector


@pytest.fixture(scope="module")
def short_range():
    with FaceDetector("short") as detector:
        yield detector


@pytest.mark.parametrize("name, expected", [
    ("single_face.jpg", 1), ("justin.jpg", 1), ("img5.jpg", 1), ("multi_face.jpg", 5),
    ("couple.jpg", 2), ("no-faces.jpg", 0), ("free-mountain-vector-01.jpg", 0),
])
def test_full_range_counts_faces_in_photos(media, full_range, name, expected):
    image = read_image(media / name)
    faces = full_range.detect(image)
    assert len(faces) == expected
    height, width = image.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert DEFAULT_MIN_CONFIDENCE <= face.score <= 1.0
    assert [face.score for face in faces] == sorted((face.score for face in faces), reverse=True)


def test_short_range_finds_a_close_face(media, short_range):
    assert len(short_range.detect(read_image(media / "single_face.jpg"))) == 1


def test_gray_and_bgra_images_give_the_same_faces_as_bgr(media, full_range):
    import cv2
    image = read_image(media / "couple.jpg")
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    assert len(full_range.detect(gray)) == 2
    assert [f.box for f in full_range.detect(bgra)] == [f.box for f in full_range.detect(image)]


def test_face_cut_by_the_frame_edge_gets_a_clamped_box(media, full_range):
    image = read_image(media / "single_face.jpg")
    (face,) = full_range.detect(image)
    x1, y1, x2, y2 = face.box
    cut = np.ascontiguousarray(image[:, (x1 + x2) // 2 - 40:])  # left part of the face is gone
    faces = full_range.detect(cut)
    assert len(faces) == 1
    assert faces[0].box[0] == 0  # reaches past the left edge, clamped to it


def test_default_confidence_ignores_face_like_shapes_in_a_video_without_faces(media, full_range):
    from realtime.io.video import VideoFileSource
    with VideoFileSource(media / "no_face.mp4") as source:
        frames = [frame.image for frame in source]
    assert sum(len(full_range.detect(image)) for image in frames[70:]) == 0
    with FaceDetector("full", min_confidence=0.5) as permissive:  # MediaPipe's default finds text "faces"
        assert sum(len(permissive.detect(image)) for image in frames[70:]) > 0


def test_blank_and_empty_images_have_no_faces(full_range):
    assert full_range.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert full_range.detect(np.zeros((0, 0, 3), np.uint8)) == []


def test_bad_arguments_and_images_are_refused(full_range):
    with pytest.raises(ValueError):
        FaceDetector("medium")
    with pytest.raises(ValueError):
        FaceDetector("short", min_confidence=1.5)
    with pytest.raises(ValueError):
        full_range.detect(np.zeros((10, 10, 3), np.float32))


def test_closed_detector_refuses_images():
    detector = FaceDetector("short")
    detector.close()
    detector.close()
    with pytest.raises(RuntimeError):
        detector.detect(np.zeros((10, 10, 3), np.uint8))


def test_relative_box_is_clamped_to_the_frame():
    assert relative_to_pixel_box(-0.1, -0.2, 0.5, 0.5, 100, 200) == (0, 0, 40, 60)
    assert relative_to_pixel_box(0.8, 0.9, 0.5, 0.5, 100, 200) == (80, 180, 100, 200)
    assert relative_to_pixel_box(1.2, 0.1, 0.3, 0.3, 100, 100) is None  # entirely outside


def test_runtime_does_not_import_tensorflow():
    """Loading the detector (mediapipe) must not pull TensorFlow in, even where it is installed."""
    import subprocess
    from pathlib import Path
    code = ("import sys; import realtime.pipeline; "
            "sys.exit(1 if any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True,
                          cwd=Path(__file__).resolve().parents[1]).returncode == 0
