"""Scene cuts in edited video: a frame whose picture has little to do with the one before it.

Measured as PySceneDetect's content detector does: the mean absolute difference of two frames in HSV,
here on 64x36 thumbnails (hue on its circle). On the shared clips, frames of one shot differ by at most 8
(a zoom, a face turning, a camera moving) and the cut inside noface_face.mov by 68; the last frame of one
clip and the first of another by 50 or more (`python -m benchmarks.faces cuts`). A frame or two that differ
from the shot around them (a camera's flash, a flash frame in an edit) are not a new shot: the frame after
them goes back to the shot before, and so does a frame like it up to a second later (something passed in front of
the camera, an edit cut away and back). A frame whose fine detail still follows the frame before (the same
picture lit otherwise: a camera's flash, a light switched on) is no cut at all, nor is a frame that is the one
before moved (a handheld camera's jolt).
"""

from __future__ import annotations

from collections import deque
from enum import Enum

import cv2
import numpy as np

CUT_THRESHOLD = 30.0  # mean absolute HSV difference, 0-255 scale, above which a frame starts a new shot
THUMBNAIL_SIZE = (64, 36)
# A new shot that lasts at most this long, followed by a frame like the one before it, was an interruption of the
# shot: a flash, something passing close in front of the camera (a hand, a person walking by), a cutaway of an edit.
# Its faces go, and those of the shot come back. Frames without timestamps count 1/30 s each.
INTERRUPTION_SECONDS = 1.0
UNTIMED_FRAME_SECONDS = 1 / 30
# Two frames whose fine detail (``detail_correlation``) correlates at least this much are one picture lit
# otherwise, however much they differ. On frames of the shared clips against frames of the others (about 2,000
# pairs that differ as cuts do, plain, letterboxed, pillarboxed or vignetted alike): 0 to 1% of them (frames of
# one scene in two clips); the same frames lit by a flash: 98% (most of the way to white), 93% (1.5 times as
# bright, and 60 levels more), 53% (twice, and 100 more: burnt out). `python -m benchmarks.faces cuts`
RELIT_CORRELATION = 0.5
DETAIL_BLUR = 1.5  # pixels of the thumbnail: the blur whose difference is a picture's fine detail
DARK_BAR = 24  # brightness (0-255) up to which rows and columns dark in both frames are bars, not picture
# A frame that is the one before moved (a handheld camera's jolt, a fast pan) lines up with it once shifted back:
# shifts up to this share of the thumbnail's width and height are looked for (phase correlation of brightness)
MOVED_MAX_SHIFT = 0.25


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two HSV thumbnails (hue as OpenCV's 0-179 circle)."""
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
    difference[..., 0] = np.minimum(difference[..., 0], 180 - difference[..., 0])
    return float(difference.mean())


def detail_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """How closely the fine detail of two HSV thumbnails' brightness follows one another: Pearson's correlation of
    V less its blur (no overall light, shading or vignette), inside the black bars both frames share (which would
    otherwise be detail in common); 0 when either has no detail (a white or black frame)."""
    va, vb = a[..., 2].astype(np.float32), b[..., 2].astype(np.float32)
    both = np.maximum(va, vb)
    rows, columns = np.flatnonzero(both.max(axis=1) > DARK_BAR), np.flatnonzero(both.max(axis=0) > DARK_BAR)
    if len(rows) < 4 or len(columns) < 4:
        return 0.0
    inside = np.s_[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    x, y = ((v[inside] - cv2.GaussianBlur(v[inside], (0, 0), DETAIL_BLUR, borderType=cv2.BORDER_REFLECT))
            .astype(np.float64).ravel() for v in (va, vb))
    x, y = x - x.mean(), y - y.mean()
    spread = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / spread) if spread > 0 else 0.0


def moved_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``frame_difference`` of two HSV thumbnails where they overlap once ``b`` is shifted back onto ``a`` by the shift
    that lines up their brightness best: what is left of the difference when the camera moved between them
    (infinite for a shift over MOVED_MAX_SHIFT)."""
    (dx, dy), _ = cv2.phaseCorrelate(a[..., 2].astype(np.float32), b[..., 2].astype(np.float32))
    height, width = a.shape[:2]
    if not abs(dx) <= MOVED_MAX_SHIFT * width or not abs(dy) <= MOVED_MAX_SHIFT * height:  # (NaN for flat frames)
        return float("inf")
    shift_x, shift_y = round(dx), round(dy)  # b(x + shift_x, y + shift_y) is a(x, y)
    a_part = a[max(0, -shift_y):height - max(0, shift_y), max(0, -shift_x):width - max(0, shift_x)]
    b_part = b[max(0, shift_y):height - max(0, -shift_y), max(0, shift_x):width - max(0, -shift_x)]
    return frame_difference(a_part, b_part)


def hsv_thumbnail(image: np.ndarray) -> np.ndarray:
    """A BGR frame as a small HSV picture: sampled down to four times the thumbnail's size (cheap at any
    frame size), then averaged down to it."""
    sampled = cv2.resize(image, (4 * THUMBNAIL_SIZE[0], 4 * THUMBNAIL_SIZE[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(cv2.resize(sampled, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)


class ShotChange(Enum):
    """What a frame does to the shot: goes on with it, starts a new one, or goes back to the shot before a
    new one that lasted at most INTERRUPTION_SECONDS (it was a flash, or another interruption)."""

    SAME = "same shot"
    NEW = "new shot"
    BACK = "back to the shot before a flash"


class SceneCutDetector:
    """Tells, frame by frame, whether a frame starts a new shot (or ends a flash)."""

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames (a new source starts)."""
        self._recent: deque[np.ndarray] = deque(maxlen=2)  # the last two frames
        # while a new shot may still be an interruption (INTERRUPTION_SECONDS): the two frames before it (two, for a
        # flash half caught by a rolling shutter, whose first frame differs too little to be a cut)
        self._before_cut: list[np.ndarray] = []
        self._seconds_since_cut = 0.0
        self._last_timestamp: float | None = None

    def shot_change(self, image: np.ndarray, timestamp: float | None = None) -> ShotChange:
        """What the BGR ``image`` (shown at ``timestamp`` seconds, if known) does to the shot, against the frames
        before it; the first frame: SAME."""
        thumbnail = hsv_thumbnail(image)
        previous = self._recent[-1] if self._recent else None
        last, self._last_timestamp = self._last_timestamp, timestamp
        step = timestamp - last if None not in (timestamp, last) and timestamp > last else UNTIMED_FRAME_SECONDS
        self._seconds_since_cut += step
        if self._seconds_since_cut > INTERRUPTION_SECONDS + 1e-6:
            self._before_cut = []
        change = ShotChange.SAME
        if any(frame_difference(before, thumbnail) <= self.threshold for before in self._before_cut):
            # like the shot before a new one of at most INTERRUPTION_SECONDS (even when a flash's last frame
            # was lit too little to differ from this one as a cut does): that was an interruption
            self._before_cut, change = [], ShotChange.BACK
        elif (previous is not None and frame_difference(previous, thumbnail) > self.threshold
              and detail_correlation(previous, thumbnail) < RELIT_CORRELATION  # not the same picture relit
              and moved_difference(previous, thumbnail) > self.threshold):  # nor moved
            if not self._before_cut:  # not a second change within one: a new shot, which may be an interruption
                self._before_cut, self._seconds_since_cut = list(self._recent), 0.0
            change = ShotChange.NEW
        self._recent.append(thumbnail)
        return change
