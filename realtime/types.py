"""The plain types every stage passes along: boxes, frames, detections and results.

A source yields ``Frame``s described by a ``VideoInfo``; the detector turns a frame into
``FaceDetection``s; the classifier and tracker turn those into ``FaceResult``s, gathered per frame
in a ``FrameResult``. Results know their class names, so no parallel list of classes travels with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

DEFAULT_FPS = 30.0  # used when a source reports no usable frame rate


class Box(NamedTuple):
    """A pixel box (x1, y1, x2, y2): x2 and y2 exclusive, so the width is x2 - x1."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


def usable_fps(fps: float | None) -> float:
    """``fps`` when it is a positive finite number, else DEFAULT_FPS (webcams often report 0 or nan)."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return DEFAULT_FPS
    return fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS


@dataclass
class VideoInfo:
    """Size, frame rate and length of a source. ``fps`` is always a usable positive number."""

    width: int
    height: int
    fps: float
    total_frames: int | None
    source: str

    def __post_init__(self) -> None:
        self.fps = usable_fps(self.fps)
        if self.width < 1 or self.height < 1:
            raise ValueError(f"frame size must be positive, got {self.width}x{self.height}")


@dataclass
class Frame:
    """One frame: position in the source, seconds since its start, a (H, W, 3) uint8 BGR image and, where the
    source says, how many seconds it is shown (an animated GIF's delay; None: until the next frame); ``held``: a
    stream's transport held it over a silence (an MPEG-TS camera's last frames before a pause), so that the time from
    its capture to its analysis is the pause's."""

    index: int
    timestamp: float
    image: np.ndarray
    duration: float | None = None
    held: bool = False


@dataclass(frozen=True)
class FaceDetection:
    """One detected face: pixel box, clamped to the frame, the detector's score and, where the detector
    gives them, the pixel centres (x, y) of the person's right and left eye (MediaPipe's first two keypoints)."""

    box: Box
    score: float | None
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", Box(*(int(v) for v in self.box)))
        if self.box.width <= 0 or self.box.height <= 0:
            raise ValueError(f"empty face box {tuple(self.box)}")

    @property
    def roll(self) -> float:
        """How far the head is tilted, in degrees: the angle of the line from the right to the left eye
        against the horizontal, positive when the left eye (on the image's right) is lower; 0 without eyes."""
        if self.eyes is None:
            return 0.0
        (right_x, right_y), (left_x, left_y) = self.eyes
        return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


@dataclass
class FaceResult:
    """One face in one frame after classification, tracking and smoothing.

    ``probabilities`` are in the order of ``classes`` (smoothed when smoothing is on);
    ``detection_score`` is None when the face was not found by the detector (a whole image
    classified as one face). ``label`` is the emotion shown and ``confidence`` its probability: in a
    tracked stream with smoothing the label changes only when another emotion leads it by
    ``realtime.tracker.LABEL_MARGIN``, so for a few frames another emotion may be a little more probable.
    Results compare equal when every field does (probabilities element by element).
    """

    face_id: int
    box: Box
    detection_score: float | None
    probabilities: np.ndarray
    label: str
    confidence: float
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        self.box = Box(*(int(v) for v in self.box))
        self.classes = tuple(self.classes)
        if len(self.probabilities) != len(self.classes):
            raise ValueError(f"{len(self.probabilities)} probabilities for {len(self.classes)} classes")

    @property
    def emotions(self) -> dict[str, float]:
        """Probability of each emotion, by name, in the model's class order."""
        return {name: float(p) for name, p in zip(self.classes, self.probabilities)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceResult):
            return NotImplemented
        fields = ("face_id", "box", "detection_score", "label", "confidence", "classes")
        return (all(getattr(self, name) == getattr(other, name) for name in fields)
                and np.array_equal(self.probabilities, other.probabilities))


@dataclass
class FrameResult:
    """All faces found in one frame of a source, what each stage cost (milliseconds), and the model's
    emotion names (so that a frame without faces still knows its result columns)."""

    index: int
    timestamp: float  # seconds from the start of the source
    faces: list[FaceResult] = field(default_factory=list)
    source: str = ""
    speed: dict[str, float] = field(default_factory=dict, compare=False)  # stage name -> milliseconds
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes) or (self.faces[0].classes if self.faces else ())

    def to_rows(self) -> list[dict]:
        """One flat row per face (the results-file columns); see ``realtime.rows``."""
        from realtime.rows import face_rows

        return face_rows(self)

    def to_dataframe(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        from realtime.rows import rows_dataframe

        return rows_dataframe(self.to_rows(), self.classes)


@dataclass
class AnalyzedFrame:
    """What the frame loop hands every sink: the source frame, its results, the annotated image (when
    the loop has an annotator), the smoothed processing rate, this frame's processing time, and
    whether the source is live (frames then keep their capture times)."""

    frame: Frame
    result: FrameResult
    annotated: np.ndarray | None
    fps: float
    seconds: float
    live: bool
