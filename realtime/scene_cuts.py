"""Scene cuts in edited video: a frame whose picture has little to do with the one before it.

Measured as PySceneDetect's content detector does: the mean absolute difference of two frames in HSV,
here on 64x36 thumbnails (hue on its circle). On the shared clips, frames of one shot differ by at most 8
(a zoom, a face turning, a camera moving) and the cut inside noface_face.mov by 68; the last frame of one
clip and the first of another by 50 or more (`python -m benchmarks.faces cuts`).
"""

from __future__ import annotations

import cv2
import numpy as np

CUT_THRESHOLD = 30.0  # mean absolute HSV difference, 0-255 scale, above which a frame starts a new shot
THUMBNAIL_SIZE = (64, 36)


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two HSV thumbnails (hue as OpenCV's 0-179 circle)."""
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
    difference[..., 0] = np.minimum(difference[..., 0], 180 - difference[..., 0])
    return float(difference.mean())


def hsv_thumbnail(image: np.ndarray) -> np.ndarray:
    """A BGR frame as a small HSV picture: sampled down to four times the thumbnail's size (cheap at any
    frame size), then averaged down to it."""
    sampled = cv2.resize(image, (4 * THUMBNAIL_SIZE[0], 4 * THUMBNAIL_SIZE[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(cv2.resize(sampled, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)


class SceneCutDetector:
    """Tells, frame by frame, whether a frame starts a new shot."""

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous frame (a new source starts)."""
        self._previous = None

    def is_cut(self, image: np.ndarray) -> bool:
        """Whether the BGR ``image`` differs from the previous frame as a new shot does; never the first frame."""
        thumbnail = hsv_thumbnail(image)
        previous, self._previous = self._previous, thumbnail
        return previous is not None and frame_difference(previous, thumbnail) > self.threshold
