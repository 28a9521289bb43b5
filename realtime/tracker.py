"""Stable face ids across frames (greedy IoU matching) and per-face smoothing of the probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime.types import Box, FaceDetection, FaceResult


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when they do not overlap."""
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    intersection = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


@dataclass
class _Track:
    face_id: int
    box: Box
    probabilities: np.ndarray
    missed: int = 0


class FaceTracker:
    """Gives each face an id that stays the same while it moves, and smooths its probabilities.

    ``classes``: names of the probability columns.
    ``smoothing``: weight of the past in the exponential moving average of each face's
    probabilities, in [0, 1); 0 turns smoothing off (every frame's own probabilities).
    ``iou_threshold``: a detection continues a track when their boxes overlap at least this much.
    ``max_missed``: a track is forgotten after this many consecutive frames without its face.
    """

    def __init__(self, classes: list[str], smoothing: float = 0.6, iou_threshold: float = 0.3,
                 max_missed: int = 15):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be at least 0, got {max_missed}")
        self.classes = list(classes)
        self.smoothing = smoothing
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget all faces (a new source starts); ids start again at 1."""
        self._tracks = []
        self._next_id = 1

    def _match(self, detections: list[FaceDetection]) -> dict[int, _Track]:
        """Detection index -> existing track, pairing the highest overlaps first."""
        pairs = sorted(((box_iou(track.box, detection.box), d_index, t_index)
                        for t_index, track in enumerate(self._tracks)
                        for d_index, detection in enumerate(detections)), reverse=True)
        matches: dict[int, _Track] = {}
        used_tracks: set[int] = set()
        for iou, d_index, t_index in pairs:
            if iou < self.iou_threshold:
                break
            if d_index not in matches and t_index not in used_tracks:
                matches[d_index] = self._tracks[t_index]
                used_tracks.add(t_index)
        return matches

    def update(self, detections: list[FaceDetection], probabilities: np.ndarray) -> list[FaceResult]:
        """Results for one frame's faces (same order as ``detections``), with ids and smoothed labels."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.shape != (len(detections), len(self.classes)):
            raise ValueError(f"expected probabilities of shape {(len(detections), len(self.classes))}, "
                             f"got {probabilities.shape}")
        matches = self._match(detections)
        seen: set[int] = set()
        results = []
        for index, detection in enumerate(detections):
            track = matches.get(index)
            if track is None:
                track = _Track(self._next_id, detection.box, probabilities[index].copy())
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.box = detection.box
                track.probabilities = (self.smoothing * track.probabilities
                                       + (1.0 - self.smoothing) * probabilities[index]).astype(np.float32)
                track.missed = 0
            seen.add(track.face_id)
            best = int(np.argmax(track.probabilities))
            results.append(FaceResult(face_id=track.face_id, box=detection.box, detection_score=detection.score,
                                      probabilities=track.probabilities.copy(), label=self.classes[best],
                                      confidence=float(track.probabilities[best]), classes=self.classes))
        for track in self._tracks:
            if track.face_id not in seen:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= self.max_missed]
        return results
