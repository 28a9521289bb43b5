"""Face detection with MediaPipe's BlazeFace models (legacy ``solutions.face_detection`` API).

mediapipe 0.10.21 ships both models inside the wheel: "short" range (faces within about 2 m,
webcam distance, fastest) and "full" range (faces up to about 5 m, small faces in photos and
videos). Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import cv2
import numpy as np

from realtime.types import FaceDetection

MODEL_RANGES = {"short": 0, "full": 1}  # name -> MediaPipe model_selection
# MediaPipe's own default is 0.5, but on the project's test media it then "finds" faces in skin-coloured
# blurry shapes (scores 0.51-0.69) while real faces score 0.73 and up (most above 0.85).
DEFAULT_MIN_CONFIDENCE = 0.7

_native_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _without_tensorflow():
    """Keep ``import mediapipe`` from importing TensorFlow.

    mediapipe imports ``tensorflow.tools.docs`` if TensorFlow is installed (only for its API
    docs), which costs seconds and hundreds of MB; it falls back to a no-op when the import
    fails. The runtime never needs TensorFlow, so the import is made to fail while mediapipe
    loads, and TensorFlow stays importable afterwards for whoever needs it.
    """
    if "tensorflow" in sys.modules:  # already loaded by someone else: nothing to save
        yield
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` fail
    try:
        yield
    finally:
        if sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the C++ log lines (XNNPACK, absl) MediaPipe writes to file descriptor 2 at start-up."""
    with _native_stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): leave it alone
            yield
            return
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with _without_tensorflow():
    from mediapipe.python.solutions import face_detection as _mp_face_detection


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous RGB uint8 copy of a BGR, BGRA or gray image."""
    if image.dtype != np.uint8:
        raise ValueError(f"face detection needs a uint8 image, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    raise ValueError(f"face detection needs a BGR, BGRA or gray image, got shape {image.shape}")


def relative_to_pixel_box(xmin: float, ymin: float, width: float, height: float,
                          frame_width: int, frame_height: int) -> tuple[int, int, int, int] | None:
    """Pixel box (x1, y1, x2, y2) clamped to the frame from a relative box; None when nothing is left."""
    x1 = min(max(int(round(xmin * frame_width)), 0), frame_width)
    y1 = min(max(int(round(ymin * frame_height)), 0), frame_height)
    x2 = min(max(int(round((xmin + width) * frame_width)), 0), frame_width)
    y2 = min(max(int(round((ymin + height) * frame_height)), 0), frame_height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return x1, y1, x2, y2


class FaceDetector:
    """Finds faces in BGR images; boxes are pixel coordinates clamped to the image.

    ``model_range``: "short" (close faces, webcams) or "full" (faces at any distance, files).
    ``min_confidence``: detections scoring below it are dropped.
    """

    def __init__(self, model_range: str = "short", min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        if model_range not in MODEL_RANGES:
            raise ValueError(f"model_range must be one of {sorted(MODEL_RANGES)}, got {model_range!r}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        self.model_range = model_range
        self.min_confidence = min_confidence
        with _quiet_native_stderr():
            self._detector = _mp_face_detection.FaceDetection(
                model_selection=MODEL_RANGES[model_range], min_detection_confidence=min_confidence)
            # The graph starts (and logs) on its first image: do that now, quietly.
            self._detector.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def detect(self, image_bgr: np.ndarray) -> list[FaceDetection]:
        """Faces in a BGR (or gray/BGRA) uint8 image, best score first; [] when there are none."""
        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        if image_bgr.size == 0:
            return []
        height, width = image_bgr.shape[:2]
        output = self._detector.process(_as_rgb(image_bgr))
        faces = []
        for detection in output.detections or []:
            score = float(detection.score[0])
            if score < self.min_confidence:  # MediaPipe's full-range graph lets some lower scores through
                continue
            relative = detection.location_data.relative_bounding_box
            box = relative_to_pixel_box(relative.xmin, relative.ymin, relative.width, relative.height,
                                        width, height)
            if box is not None:
                faces.append(FaceDetection(box=box, score=score))
        faces.sort(key=lambda face: face.score, reverse=True)
        return faces

    def close(self) -> None:
        """Release the MediaPipe graph; safe to call twice."""
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
