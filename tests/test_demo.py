"""The built-in demo clip: fixed-size frames that MediaPipe finds a face in."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.demo import demo_frames, demo_source


def test_demo_source_yields_fixed_size_frames():
    with demo_source() as source:
        frames = list(source)
    info = source.info
    assert (info.width, info.height, info.fps) == (640, 360, 30.0)
    assert len(frames) == info.total_frames >= 90
    assert [frame.index for frame in frames] == list(range(len(frames)))
    assert frames[-1].timestamp == pytest.approx((len(frames) - 1) / 30)
    for frame in frames:
        assert frame.image.shape == (360, 640, 3) and frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
    assert np.abs(frames[0].image.astype(int) - frames[len(frames) // 2].image.astype(int)).mean() > 10  # it moves


def test_demo_frames_take_a_size():
    frame = next(demo_frames(size=(320, 180)))
    assert frame.image.shape == (180, 320, 3)


@pytest.mark.parametrize("model_selection", [0, 1])
def test_mediapipe_finds_the_face_in_the_demo(model_selection):
    mp = pytest.importorskip("mediapipe")
    frames = list(demo_source())
    face_detection = mp.solutions.face_detection
    with face_detection.FaceDetection(model_selection=model_selection, min_detection_confidence=0.5) as detector:
        for frame in frames[:: len(frames) // 8]:
            detections = detector.process(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)).detections or []
            assert len(detections) == 1, f"frame {frame.index}"
            box = detections[0].location_data.relative_bounding_box
            assert 0 <= box.xmin and box.xmin + box.width <= 1 and box.height > 0.25
