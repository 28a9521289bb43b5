"""Stable face ids across frames and per-face smoothing of the probabilities and of the label.

A face earns its id: a detection starts a tentative track, which gets an id and reaches the output
only once it has been found in ``min_hits`` frames in a row, so a false detection in one frame
never shows (faces in a source's first frame, such as a photo's, are shown at once). A face with
an id survives 1.5 s without a detection (a hand in front of it, a turn of the head) and takes its id
back when it reappears where it was, near it, or where its motion was taking it (so two faces that cross
keep their ids). Time is measured on the frames' timestamps: smoothing, survival, velocities and the
label's hysteresis last as long at 10 frames/s as at 60 (a time-lapse's faces survive a few of its frames),
a gap in a video's timestamps longer than the survival time forgets every face, and so does a scene cut
(``update(..., new_scene=True)``); the faces after either are shown at once. After a flash or another
interruption of the shot (a new scene followed by ``update(..., scene_resumed=True)``) the faces of the shot before
it come back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from statistics import median

import numpy as np

from realtime.scene_cuts import INTERRUPTION_SECONDS
from realtime.types import Box, FaceDetection, FaceResult

# The frame rate at which ``smoothing``, ``max_missed`` and LABEL_LEAD_FRAMES are stated: at other rates
# they are applied per 1/30 s of the frames' timestamps.
REFERENCE_FPS = 30.0
# A face with an id that no detection overlaps (lost, or moved far in one frame: dropped frames) is taken
# back by a detection whose centre lies within this many of its box sides from its last centre, and whose
# size is within REACQUIRE_SIZE_RATIO of it.
REACQUIRE_DISTANCE = 1.0
REACQUIRE_SIZE_RATIO = 1.5
# Default hysteresis of the displayed label (see FaceTracker): on FER2013 faces with jittered boxes it cut
# label changes on steady faces from 17 to 4 and showed a real change 2.3 frames after it on average
# (3.5 without); `python -m benchmarks.faces reaction flicker`.
LABEL_MARGIN = 0.15
# ... and a lead of at least half the margin held for this many frames in a row switches the label too, so
# that a label never stays behind a clear (if smaller) lead for good.
LABEL_LEAD_FRAMES = 10
# A face also survives this many of its source's usual frame steps without a detection: in a time-lapse or a
# slideshow (frames seconds apart) a face is not forgotten at every frame.
MIN_SURVIVAL_FRAMES = 3
# The source's usual time between frames is the median of this many recent ones (a gap does not move it).
STEP_HISTORY = 9
# Counts of reference frames that differ by less than this are equal (timestamps such as i / 30 do not add up exactly).
FRAME_COUNT_TOLERANCE = 1e-3
# Each face's velocity is a moving average (this weight of the past) of its box centre's moves; a face is
# looked for where its velocity takes it, for at most PREDICTION_HORIZON reference frames after it was last
# seen (and, when lost, also where it was). On two real faces pasted crossing over a real background, 32
# crossings (speeds, heights, which face in front), each face kept its id in all 32 (before the motion model:
# 11 swaps and 14 new ids; before the box's size and edges were followed: 7 new ids), and in 66 more crossings
# 65 (`python -m benchmarks.faces crossing`).
VELOCITY_SMOOTHING = 0.7
PREDICTION_HORIZON = 15
# A face's box side is a moving average (this weight of the past per reference frame) of the boxes that moved as
# a whole (a box that one of its edges moved with, a face partly hidden, leaves it be): a face looked for where its
# motion takes it is looked for at that usual size, from the edge that moved with it, not at the size of a last
# box that was partly hidden.
SIZE_SMOOTHING = 0.7
# When a box's width (height) changed by more than this fraction of its side in 1/30 s (or since the last
# detection, when that is longer ago), its two edges moved differently (a part of the face hidden by another
# face or the frame's edge, or uncovered): the face moved as its centre or as one of its edges, whichever
# agrees best with its velocity.
EDGE_AGREEMENT = 0.1
# Where a face unseen for a while should be is less sure than where one seen a frame ago should be: when both
# overlap a detection, each reference frame unseen beyond the first weighs the overlap by this much.
UNSEEN_OVERLAP_WEIGHT = 0.9
# A face last seen partly hidden (one edge of its box moving with it) comes out partly hidden on another side:
# a detection with at least this much of its area inside where the face's motion takes it (at its usual size)
# takes it back.
REAPPEAR_INSIDE = 0.8


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when they do not overlap."""
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    intersection = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def near_enough(lost: Box, box: Box) -> float:
    """How well ``box`` fits as the reappearance of a face lost at ``lost``: in (0, 1], or 0 when not."""
    side_lost, side = box_side(lost), box_side(box)
    if not 1 / REACQUIRE_SIZE_RATIO <= side / side_lost <= REACQUIRE_SIZE_RATIO:
        return 0.0
    distance = np.hypot((box[0] + box[2] - lost[0] - lost[2]) / 2, (box[1] + box[3] - lost[1] - lost[3]) / 2)
    return max(0.0, 1.0 - distance / (REACQUIRE_DISTANCE * side_lost))


def box_side(box: Box) -> int:
    """The longer side of ``box``, at least 1."""
    return max(box[2] - box[0], box[3] - box[1], 1)


def moved_and_resized(box: Box, dx: float, dy: float, side: float, anchor: tuple[int, int] = (0, 0)) -> Box:
    """``box`` moved by (dx, dy) pixels and scaled to have ``side`` as its longer side: about its centre, or, on
    an axis whose ``anchor`` is -1 (+1), about its low (high) edge."""
    scale = side / box_side(box)
    corners = []
    for axis, move in ((0, dx), (1, dy)):
        low, high = box[axis] + move, box[axis + 2] + move
        half = (high - low) * scale / 2
        middle = {-1: low + half, 0: (low + high) / 2, 1: high - half}[anchor[axis]]
        corners.append((middle - half, middle + half))
    (x1, x2), (y1, y2) = corners
    return Box(round(x1), round(y1), round(x2), round(y2))


def share_inside(box: Box, region: Box) -> float:
    """The share of ``box``'s area that lies inside ``region``."""
    inter_w = min(box[2], region[2]) - max(box[0], region[0])
    inter_h = min(box[3], region[3]) - max(box[1], region[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter_w * inter_h / area if inter_w > 0 and inter_h > 0 and area > 0 else 0.0


@dataclass
class _Track:
    box: Box
    probabilities: np.ndarray  # smoothed
    label: int  # index of the displayed class
    face_id: int | None = None  # None while tentative
    hits: int = 1  # frames in a row with a detection, counted up to confirmation
    missed: float = 0.0  # reference frames (1/30 s) since the last detection
    leading: float = 0.0  # reference frames in a row in which another class led the displayed one by half the margin
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box's centre, pixels per reference frame
    side: float = 0.0  # the face's usual box side (a moving average); 0: the first box's
    # per axis, what of the last box moved with the face: 0 its centre, -1 its low edge, +1 its high edge (the
    # face, partly hidden, reaches past the other)
    anchor: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.side = self.side or box_side(self.box)

    def predicted_boxes(self, elapsed: float) -> tuple[Box, Box]:
        """Where the face's motion takes it ``elapsed`` reference frames after its last detection: at its usual
        size (from the edge that moved with it, when it was partly hidden), and at the size of its last box (a
        face going on behind another, or coming out of it)."""
        horizon = min(elapsed, PREDICTION_HORIZON)
        dx, dy = self.velocity[0] * horizon, self.velocity[1] * horizon
        return (moved_and_resized(self.box, dx, dy, self.side, self.anchor),
                moved_and_resized(self.box, dx, dy, box_side(self.box)))

    def _measured_velocity(self, box: Box, axis: int, step: float) -> tuple[float, int]:
        """The face's move along ``axis`` (0: x, 1: y) from its last box to ``box``, per reference frame, and
        what moved so (the anchor: 0 the centre, -1 the low edge, +1 the high edge): the centre; or, when the box
        changed size, its centre or one of its edges, whichever agrees best with the face's velocity (a face partly
        hidden keeps the edge on its free side moving; one coming nearer grows about its centre)."""
        edges = [(box[axis] - self.box[axis]) / step, (box[axis + 2] - self.box[axis + 2]) / step]
        centre = (edges[0] + edges[1]) / 2
        if abs(edges[0] - edges[1]) * max(step, 1.0) <= EDGE_AGREEMENT * box_side(box):  # per 1/30 s at most
            return centre, 0
        return min([(centre, 0), (edges[0], -1), (edges[1], 1)], key=lambda move: abs(move[0] - self.velocity[axis]))

    def move_to(self, box: Box, elapsed: float) -> None:
        """Take the detection ``box``, found ``elapsed`` reference frames after the last one."""
        step = max(elapsed, 0.1)  # frames closer than 1/300 s: their jitter says nothing of a velocity
        (move_x, anchor_x), (move_y, anchor_y) = (self._measured_velocity(box, axis, step) for axis in (0, 1))
        past = VELOCITY_SMOOTHING ** min(step, 1.0)  # per reference frame, up to one measurement's worth
        self.velocity = (past * self.velocity[0] + (1 - past) * move_x, past * self.velocity[1] + (1 - past) * move_y)
        self.anchor = (anchor_x, anchor_y)
        if self.anchor == (0, 0):  # the box moved as a whole: its size is the face's
            past = SIZE_SMOOTHING ** min(step, 1.0)
            self.side = past * self.side + (1 - past) * box_side(box)
        self.box = box


def check_smoothing(smoothing: float) -> None:
    """ValueError unless ``smoothing`` is one the tracker takes."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")


class FaceTracker:
    """Gives each face an id that stays the same while it moves, and smooths its probabilities and label.

    ``classes``: names of the probability columns.
    ``smoothing``: weight of the past in the exponential moving average of each face's
    probabilities per 1/30 s, in [0, 1); 0 turns smoothing off (every frame's own probabilities).
    ``iou_threshold``: a detection continues a track when it overlaps at least this much where the face's
    motion takes it (a lost track is also continued by a detection near it, see
    REACQUIRE_DISTANCE).
    ``max_missed``: a face is forgotten after this many 1/30 s without it (45: 1.5 s), or after
    MIN_SURVIVAL_FRAMES of the source's frames where that is longer (frames seconds apart). A gap in the
    timestamps longer than that (a pause in a recording) forgets every face, and the faces after it are
    reported at once, as after a scene cut.
    ``min_hits``: frames in a row a new face must be found in before it gets an id and is reported
    (1: at once); faces in the first frame after ``reset()`` or a scene cut are reported at once.
    ``label_margin``: the displayed label changes only when another emotion's smoothed probability
    exceeds the displayed one's by this much, or by half as much for LABEL_LEAD_FRAMES / 30 s in a row
    (hysteresis; 0: the label is always the most likely).
    """

    def __init__(self, classes: list[str], smoothing: float = 0.6, iou_threshold: float = 0.3,
                 max_missed: int = 45, min_hits: int = 3, label_margin: float = LABEL_MARGIN):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be at least 0, got {max_missed}")
        if min_hits < 1:
            raise ValueError(f"min_hits must be at least 1, got {min_hits}")
        self.classes = list(classes)
        self.set_smoothing(smoothing, label_margin)
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.min_hits = min_hits
        self.reset()

    def set_smoothing(self, smoothing: float, label_margin: float = LABEL_MARGIN) -> None:
        """Smooth with ``smoothing`` and ``label_margin`` (as in the constructor) from the next update on; the
        faces keep their ids and their smoothed probabilities so far."""
        check_smoothing(smoothing)
        if not 0.0 <= label_margin < 1.0:
            raise ValueError(f"label_margin must be in [0, 1), got {label_margin}")
        self.smoothing = smoothing
        self.label_margin = label_margin

    def reset(self) -> None:
        """Forget all faces (a new source starts); ids start again at 1."""
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._first_frame = True
        self._last_timestamp: float | None = None
        self._steps: deque[float] = deque(maxlen=STEP_HISTORY)  # recent reference frames between updates
        # while the last new scene may be an interruption: the faces with ids before it (None: nothing waits), the
        # reference frames since the last update before it (their time unseen), and since it
        self._before_cut: list[_Track] | None = None
        self._since_cut, self._time_since_cut = 0.0, 0.0

    def rescale(self, x_scale: float, y_scale: float) -> None:
        """The frames changed size (a camera or a WebRTC stream switching resolution): every face's box, motion and
        usual size follow, so that the faces keep their ids."""
        def scaled(box: Box) -> Box:
            x1, y1 = round(box[0] * x_scale), round(box[1] * y_scale)
            return Box(x1, y1, max(round(box[2] * x_scale), x1 + 1), max(round(box[3] * y_scale), y1 + 1))

        for track in {id(track): track for track in self._tracks + (self._before_cut or [])}.values():
            track.box = scaled(track.box)
            track.velocity = (track.velocity[0] * x_scale, track.velocity[1] * y_scale)
            track.side *= max(x_scale, y_scale)

    def _elapsed(self, timestamp: float | None) -> float | None:
        """Reference frames since the previous update; None when either has no usable timestamp, or when
        time does not go forward (a source that restarts its clock)."""
        previous, self._last_timestamp = self._last_timestamp, timestamp
        if timestamp is None or previous is None or not np.isfinite(timestamp) or not timestamp > previous:
            return None
        return (timestamp - previous) * REFERENCE_FPS

    def _match(self, detections: list[FaceDetection], elapsed: float) -> dict[int, _Track]:
        """Detection index -> existing track: overlapping pairs first (highest IoU with where its motion takes
        the face), then faces with ids that no detection overlaps with detections near them;
        faces with ids before tentative ones."""
        pairs = []
        for t_index, track in enumerate(self._tracks):
            since_seen = track.missed + elapsed
            predicted, predicted_as_last = track.predicted_boxes(since_seen)
            for d_index, detection in enumerate(detections):
                iou = max(box_iou(predicted, detection.box), box_iou(predicted_as_last, detection.box))
                if iou >= self.iou_threshold:
                    fit = 1.0 + iou * UNSEEN_OVERLAP_WEIGHT ** max(since_seen - 1.0, 0.0)
                elif track.face_id is not None:  # lost, or moved far in one frame (frames dropped)
                    fit = max(near_enough(box, detection.box) for box in (track.box, predicted, predicted_as_last))
                    if track.anchor != (0, 0) and (inside := share_inside(detection.box, predicted)) >= REAPPEAR_INSIDE:
                        fit = max(fit, inside)  # out from behind another face, partly hidden on its other side
                else:
                    continue
                if fit > 0:
                    pairs.append((fit, track.face_id is not None, d_index, t_index))
        matches: dict[int, _Track] = {}
        used_tracks: set[int] = set()
        for _, _, d_index, t_index in sorted(pairs, reverse=True):
            if d_index not in matches and t_index not in used_tracks:
                matches[d_index] = self._tracks[t_index]
                used_tracks.add(t_index)
        return matches

    def _displayed_label(self, track: _Track, elapsed: float) -> int:
        """The track's label after hysteresis: the most likely class once it leads the shown one by the
        margin, or by half the margin for LABEL_LEAD_FRAMES reference frames in a row."""
        best = int(np.argmax(track.probabilities))
        lead = track.probabilities[best] - track.probabilities[track.label]
        track.leading = track.leading + elapsed if best != track.label and lead >= self.label_margin / 2 else 0.0
        if lead > self.label_margin or track.leading >= LABEL_LEAD_FRAMES - FRAME_COUNT_TOLERANCE:
            track.leading = 0.0
            return best
        return track.label

    def update(self, detections: list[FaceDetection], probabilities: np.ndarray, timestamp: float | None = None,
               new_scene: bool = False, scene_resumed: bool = False) -> list[FaceResult]:
        """Results for one frame's reported faces (in the order of ``detections``, tentative ones left
        out), with ids and smoothed labels.

        ``timestamp``: the frame's time in seconds (None: 1/30 s after the previous frame).
        ``new_scene``: the frame starts a new shot (a cut in an edited video): every face is forgotten and
        the frame's faces are reported at once with new ids.
        ``scene_resumed``: the frame goes back to the shot before the last new scene, which was a flash: the
        faces of that shot come back (those not gone for longer than a face survives), the flash's go. A new
        scene within INTERRUPTION_SECONDS of the last one is part of the same interruption (its faces keep waiting).
        """
        if new_scene and scene_resumed:
            raise ValueError("a frame cannot both start a new scene and go back to the one before")
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.shape != (len(detections), len(self.classes)):
            raise ValueError(f"expected probabilities of shape {(len(detections), len(self.classes))}, "
                             f"got {probabilities.shape}")
        measured = self._elapsed(timestamp)
        elapsed = 1.0 if measured is None else measured  # no usable timestamps: one reference frame
        usual_step = median(self._steps) if self._steps else elapsed
        slow_source_survival = min(MIN_SURVIVAL_FRAMES, self.max_missed) * usual_step
        survival = max(self.max_missed, slow_source_survival) + FRAME_COUNT_TOLERANCE
        gap = bool(self._steps) and elapsed - usual_step > survival  # a pause in a recording, not a slow source
        if measured is not None:
            self._steps.append(measured)
        self._since_cut += elapsed
        self._time_since_cut += elapsed
        within_flash = self._before_cut is not None and \
            self._time_since_cut <= INTERRUPTION_SECONDS * REFERENCE_FPS + FRAME_COUNT_TOLERANCE
        if scene_resumed and within_flash and not gap:
            for track in self._before_cut:
                track.missed += self._since_cut - elapsed
            self._tracks = [track for track in self._before_cut if track.missed + elapsed <= survival]
            self._before_cut = None
        elif new_scene or gap:
            if gap or not within_flash:  # (a second new scene within a flash: the faces before it keep waiting)
                self._before_cut = None if gap else [track for track in self._tracks if track.face_id is not None]
                for track in self._before_cut or []:
                    track.hits = 0
                self._since_cut, self._time_since_cut = elapsed, 0.0
            self._tracks, self._first_frame = [], True
        matches = self._match(detections, elapsed)
        matched: set[int] = set()
        results = []
        for index, detection in enumerate(detections):
            track = matches.get(index)
            if track is None:
                track = _Track(detection.box, probabilities[index].copy(), int(np.argmax(probabilities[index])))
                self._tracks.append(track)
            else:
                since_seen = track.missed + elapsed
                track.move_to(detection.box, since_seen)
                weight = self.smoothing ** since_seen
                track.probabilities = (weight * track.probabilities
                                       + (1.0 - weight) * probabilities[index]).astype(np.float32)
                track.label = self._displayed_label(track, elapsed)
                track.hits += 1
                track.missed = 0.0
            matched.add(id(track))
            if track.face_id is None and (self._first_frame or track.hits >= self.min_hits):
                track.face_id = self._next_id
                self._next_id += 1
            if track.face_id is not None:
                results.append(FaceResult(face_id=track.face_id, box=detection.box, detection_score=detection.score,
                                          probabilities=track.probabilities.copy(),
                                          label=self.classes[track.label],
                                          confidence=float(track.probabilities[track.label]),
                                          classes=self.classes))
        kept = []
        for track in self._tracks:
            if id(track) not in matched:
                track.missed += elapsed
                track.hits = 0
            # A tentative face missed once is dropped: it never had an id.
            if id(track) in matched or (track.face_id is not None and track.missed <= survival):
                kept.append(track)
        self._tracks = kept
        self._first_frame = False
        return results
