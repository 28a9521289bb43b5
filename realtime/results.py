"""Plain result types passed between the pipeline stages and to the sinks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FaceDetection:
    """One detected face: pixel box (x1, y1, x2, y2), clamped to the frame, and detector score
    (None for a whole image taken as a face without detection)."""

    box: tuple[int, int, int, int]
    score: float | None


@dataclass
class FaceResult:
    """One face in one frame after classification, tracking and smoothing."""

    face_id: int
    box: tuple[int, int, int, int]
    detection_score: float | None  # None: the whole image taken as a face, not detected
    probabilities: np.ndarray  # (n_classes,) float32, smoothed when smoothing is on
    label: str
    confidence: float


@dataclass
class FrameResult:
    """All faces found in one frame."""

    index: int
    timestamp: float  # seconds from the start of the source
    faces: list[FaceResult] = field(default_factory=list)
