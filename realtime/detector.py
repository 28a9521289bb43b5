"""Face detection with MediaPipe's BlazeFace models (legacy ``solutions.face_detection`` API).

mediapipe 0.10.21 ships both models inside the wheel: "short" range (faces within about 2 m,
webcam distance, fastest) and "full" range (faces up to about 5 m, small faces in photos and
videos). Nothing is downloaded. "auto" combines them (and a mirrored-padding pass for faces at the
frame's edge and close-ups); `python -m benchmarks.faces` measures what each finds.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import threading
import types
import weakref

import cv2
import numpy as np

from realtime.types import Box, FaceDetection

MODEL_RANGES = {"short": 0, "full": 1}  # name -> MediaPipe model_selection
DETECTOR_CHOICES = ("short", "full", "auto")  # "auto": both models, fused (see FaceDetector)
# MediaPipe's own default is 0.5, but on the project's test media it then "finds" faces in skin-colored
# blurry shapes (scores 0.51-0.69) while real faces score 0.73 and up (most above 0.85).
DEFAULT_MIN_CONFIDENCE = 0.7
# MediaPipe's face detection graphs drop every detection scored under 0.5 whatever they are asked
# (google-ai-edge/mediapipe#3896; none under 0.5 in 282 shared photos, video frames and FER2013 faces at 0):
# a lower minimum would change nothing, so it is refused.
LOWEST_MIN_CONFIDENCE = 0.5
# "auto": a second short-range pass sees the image with this share of its longer side added on every
# side, mirrored: a face cut by the frame's edge is completed by its mirror image (faces are nearly
# symmetric), and one that fills a close-up gets the room around it that the model expects. (On every
# frame this pass would lose faces of middle size, which shrink in the model's 128x128 input.)
EDGE_PADDING = 0.25
# A face found there with less than this share of its box in the frame is the mirror image of a face cut by the
# edge (itself found too), not a face: an 8 px sliver at the edge scored higher than the face beside it.
MIN_SHARE_IN_FRAME = 0.25
# "auto" on a video: the full pass (full range and padded short range, ~8 ms at 640x360 against ~2 ms for
# the short range alone) runs on every FULL_RANGE_INTERVAL-th frame (a third of a second at 30 fps: how late
# a distant face that walks in may show), and on every frame where the plain short-range pass finds fewer
# faces than it last found.
FULL_RANGE_INTERVAL = 10
# A photo larger than this (longer side, pixels) is also searched in overlapping square tiles of this side, each
# seen by the model at its own input size: a face that is small against the whole photo (a group photo, a 12 MP
# phone photo, a panorama) is large enough in its tile. Tiles overlap by TILE_OVERLAP of their side; a face cut
# by a tile's inner edge is left to a tile that holds it whole, at this scale or with the photo halved.
TILE_SIDE = 640
TILE_OVERLAP = 0.25
# "auto" on a video: a face of the last frame that the whole-frame passes miss (too small for them: a video call's
# grid, a wide shot; or a detection that flickers) is looked for by the short-range model in a square around its
# last box, this many times its side (at least FOLLOW_CROP_MIN pixels), where it is as large as the model expects.
FOLLOW_CROP = 3.0
FOLLOW_CROP_MIN = 128
# What the square holds that is less than this share of the followed face's side is not that face (a badge on a
# shirt scored 0.73 in the square around a 62 px face): a face does not halve from one frame to the next.
FOLLOW_MIN_SIZE = 0.5
# "auto" on a video larger than TILE_SIDE: faces too small for the whole-frame passes are found in tiles of this
# side, and of the frame halved, quartered... (a 4x4 video call at 1280x720: faces of 40-75 px, too small in a
# TILE_SIDE tile), then followed. A source's first frame is searched in all of them; each later frame in its share
# (a TILE_SWEEP_FRAMES-th of them, rounded up), so that every tile is searched within TILE_SWEEP_FRAMES frames (a
# second at 30 frames/s: how late a small face that comes into view may show) at an even cost per frame (1280x720:
# 21 tiles, 1 a frame; 1920x1080: 50, 2).
VIDEO_TILE_SIDE = 320
TILE_SWEEP_FRAMES = 30
# A face found in those tiles of the frame at full scale (finer than any TILE_SIDE tile) must score at least this, or
# min_confidence if higher: in 1280x720 frames of the shared clips, text scored 0.72-0.78 in them, while 95-99% of
# the clips' faces in video-call grids score 0.8 and up.
FINEST_TILE_MIN_CONFIDENCE = 0.8
# The passes on the whole image see it at most this large (longer side, pixels; the models see 128 or 192 px
# anyway): MediaPipe's image code aborts the process on a side of 32768 px or more, which the mirrored padding
# (EDGE_PADDING on every side) would reach from 21846 px on; tiles still look at the photo's every pixel.
MAX_PASS_SIDE = 16384
SIZED_APART = 1.25  # two passes' boxes of one face whose sides differ more than this many times: the surer one is kept
SAME_CENTRE = 0.5  # two passes' boxes of one face centred this close (share of the smaller side): one box for the other
SAME_FACE_OVERLAP = 0.3  # two passes' boxes overlapping this much (IoU, or share of the smaller box) are one face
WHOLE_IMAGE_MAX_SIDE = 160  # an image this small (longer side, pixels) without a detected face is one whole face,
WHOLE_IMAGE_MIN_CONTRAST = 8.0  # unless it is flat: standard deviation of its gray levels below this

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
            if sys.stderr is not None:  # None: started with stderr closed (2>&-), or under pythonw
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (embedded interpreters, stderr closed): leave it alone
            yield
            return
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _LoadedOnUse(types.ModuleType):
    """Stands for a module while mediapipe loads; the real one is imported on the first use of an attribute."""

    def __getattr__(self, attribute):
        if attribute.startswith("__") or sys.modules.get(self.__name__) is self:  # (while mediapipe loads)
            raise AttributeError(attribute)
        return getattr(importlib.import_module(self.__name__), attribute)


@contextlib.contextmanager
def _unused_imports_deferred():
    """Keep ``import mediapipe`` from importing matplotlib (0.4 s, for its drawing utilities) and sounddevice (70 ms,
    for its audio tasks), which face detection never uses: while mediapipe loads they stand as modules imported on
    first use; afterwards ``import matplotlib`` gets the real one."""
    names = [name for name in ("matplotlib", "matplotlib.pyplot", "sounddevice") if name not in sys.modules]
    if "matplotlib" not in names:  # loaded already: its pyplot as it is
        names = [name for name in names if not name.startswith("matplotlib")]
    for name in names:
        sys.modules[name] = _LoadedOnUse(name)
    if "matplotlib.pyplot" in names:  # (`import matplotlib.pyplot as plt` takes it as the package's attribute)
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    try:
        yield
    finally:
        for name in names:
            if isinstance(sys.modules.get(name), _LoadedOnUse):
                del sys.modules[name]


with _without_tensorflow(), _unused_imports_deferred():
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


# A gray picture (a black-and-white photo or film) is tinted a skin tone for the detector, which finds fewer faces in
# gray: multi_face.jpg in gray 3 or 4 of its 5 faces, tinted 5 (python -m benchmarks.faces gray). Not a small one
# (WHOLE_IMAGE_MAX_SIDE, such as FER2013's 48x48 faces): tinted, 8 of those 3,589 got a second, false face.
GRAY_TOLERANCE = 12  # channel differences of a gray picture saved in colour (JPEG's colour noise)
SKIN_TONE_GAINS = (1.0, 0.88, 0.78, 0.0)  # R, G, B (cv2.multiply's scalar has four)


def skin_toned_if_gray(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` tinted a skin tone if it is a gray picture (all but 1% of a sample of its pixels within
    GRAY_TOLERANCE of gray) larger than WHOLE_IMAGE_MAX_SIDE, else as it is."""
    if max(rgb.shape[:2]) <= WHOLE_IMAGE_MAX_SIDE:
        return rgb
    sample = rgb[::8, ::8].astype(np.int16)
    for first, second in ((0, 1), (1, 2)):
        if (np.abs(sample[..., first] - sample[..., second]) > GRAY_TOLERANCE).mean() > 0.01:
            return rgb
    return cv2.multiply(rgb, SKIN_TONE_GAINS)


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


def share_in_frame(xmin: float, ymin: float, width: float, height: float) -> float:
    """The share of a relative box's area (of the frame's: 0 to 1 inside) that lies inside the frame."""
    inside = (max(min(xmin + width, 1.0) - max(xmin, 0.0), 0.0) * max(min(ymin + height, 1.0) - max(ymin, 0.0), 0.0))
    return inside / (width * height) if width > 0 and height > 0 else 0.0


def whole_image_face(image: np.ndarray) -> FaceDetection:
    """The whole image as one face (a picture that already is a face crop); it has no detection score."""
    height, width = image.shape[:2]
    return FaceDetection(box=(0, 0, width, height), score=None)


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The larger of IoU and the share of the smaller box covered by the other (0 when apart)."""
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    intersection = inter_w * inter_h
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return max(intersection / (area_a + area_b - intersection), intersection / min(area_a, area_b))


def scaled_down(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` shrunk by ``scale`` (< 1), each side at least 1 px."""
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def scaled_back(face: FaceDetection, scale: float, shape: tuple[int, ...]) -> FaceDetection:
    """``face``, found in an image scaled by ``scale``, in the coordinates of the image of ``shape``, clamped."""
    height, width = shape[:2]
    x1, y1, x2, y2 = (round(value / scale) for value in face.box)
    box = (min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(max(y2, 0), height))
    eyes = None if face.eyes is None else tuple((x / scale, y / scale) for x, y in face.eyes)
    return FaceDetection(box=box, score=face.score, eyes=eyes)


def shifted(face: FaceDetection, left: int, top: int) -> FaceDetection:
    """``face``, found in a part of an image whose top-left corner is at (``left``, ``top``), in the image's
    coordinates."""
    x1, y1, x2, y2 = face.box
    eyes = None if face.eyes is None else tuple((x + left, y + top) for x, y in face.eyes)
    return FaceDetection(box=(x1 + left, y1 + top, x2 + left, y2 + top), score=face.score, eyes=eyes)


def tile_starts(length: int, side: int) -> list[int]:
    """Where overlapping tiles of ``side`` (TILE_OVERLAP) start along a side of ``length`` pixels, the last one
    ending at its end."""
    found = list(range(0, max(length - side, 0) + 1, int(side * (1 - TILE_OVERLAP))))
    return found + [length - side] if found[-1] + side < length else found


def tile_windows(shape: tuple[int, ...], side: int) -> list[tuple[float, int, int]]:
    """(scale, top, left) of the overlapping ``side`` x ``side`` tiles of an image of ``shape``, and of the image
    halved, quartered... while it is larger than a tile (a face cut by the tiles' edges at one scale is whole in a
    tile of the next)."""
    windows = []
    scale = 1.0
    height, width = shape[:2]
    while max(height, width) > side:
        windows += [(scale, top, left) for top in tile_starts(height, side) for left in tile_starts(width, side)]
        scale /= 2
        height, width = max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))  # as scaled_down's
    return windows


def fuse(preferred: list[FaceDetection], others: list[FaceDetection]) -> list[FaceDetection]:
    """All faces of ``preferred`` plus those of ``others`` that are not one of them (best score first)."""
    fused = list(preferred)
    for face in sorted(others, key=lambda face: face.score, reverse=True):
        if all(overlap(face.box, kept.box) < SAME_FACE_OVERLAP for kept in fused):
            fused.append(face)
    fused.sort(key=lambda face: face.score, reverse=True)
    return fused


def fuse_passes(first: list[FaceDetection], others: list[FaceDetection]) -> list[FaceDetection]:
    """``fuse``, but a face of ``others`` centred on one of ``first`` (SAME_CENTRE), of a size more than SIZED_APART
    from its, that scores higher gives its box: passes of the models over the whole image disagree on some faces'
    size, and the surer one is nearer (the short-range model gives some faces at a distance a box 1.5 times too
    large, at a lower score); boxes of about one size keep the first's, so that a face's box does not flicker."""
    fused = list(first)
    for face in sorted(others, key=lambda face: face.score, reverse=True):
        same = [index for index, kept in enumerate(fused) if overlap(face.box, kept.box) >= SAME_FACE_OVERLAP]
        if not same:
            fused.append(face)
        elif len(same) == 1 and face.score > fused[same[0]].score and _one_face_sized_apart(face.box, fused[same[0]].box):
            fused[same[0]] = face
    fused.sort(key=lambda face: face.score, reverse=True)
    return fused


def _one_face_sized_apart(a: Box, b: Box) -> bool:
    """Whether boxes ``a`` and ``b`` are centred on one face (within SAME_CENTRE of the smaller side) but differ in
    size by more than SIZED_APART."""
    sides = sorted((max(a.x2 - a.x1, a.y2 - a.y1), max(b.x2 - b.x1, b.y2 - b.y1)))
    centres = math.dist(((a.x1 + a.x2) / 2, (a.y1 + a.y2) / 2), ((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2))
    return centres <= SAME_CENTRE * sides[0] and sides[1] > SIZED_APART * sides[0]


def check_min_confidence(min_confidence: float) -> None:
    """ValueError unless ``min_confidence`` is one the detector takes."""
    if not LOWEST_MIN_CONFIDENCE <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be between {LOWEST_MIN_CONFIDENCE:g} and 1 (MediaPipe's face "
                         f"detector reports no face scored under {LOWEST_MIN_CONFIDENCE:g}), got {min_confidence}")


def _close_graphs(models: dict) -> None:
    """Close the MediaPipe graphs of ``models`` (range: graph), emptying it."""
    for model in models.values():
        model.close()
    models.clear()


class FaceDetector:
    """Finds faces in BGR images; boxes are pixel coordinates clamped to the image.

    ``model_range``:

    - "short": MediaPipe's short-range model (faces within about 2 m; fastest, the camera's default);
    - "full": the full-range model (faces up to about 5 m);
    - "auto" (the default for files): passes of both models, fused: the short-range model on the
      image; the short-range model on the image padded by EDGE_PADDING on every side with its
      mirror image, which finds faces cut by the frame's edge, close-ups and pre-cropped faces
      (where the full-range model finds few); the full-range model for small and distant faces;
      for the first image of a new size (every photo) also the full-range model on the padded
      image (smaller faces cut by the edge). Where passes agree, the box of the earlier pass is kept,
      unless the other's is centred on it, differs in size by more than SIZED_APART and scores higher
      (``fuse_passes``). On a video (frames of one size in a row) the second and third passes run on every
      FULL_RANGE_INTERVAL-th frame, and on every frame where the first pass finds fewer faces than
      they last did; a face of the last frame that these passes miss is looked for around its last box
      (FOLLOW_CROP), and frames larger than TILE_SIDE are also searched in tiles of VIDEO_TILE_SIDE, a share of
      them in each frame (faces too small for the whole frame: a video call's grid, a wide shot). ``reset()``
      starts over for a new source.

    ``min_confidence``: detections scoring below it are dropped; LOWEST_MIN_CONFIDENCE (0.5) to 1.
    Any range: a photo no larger than WHOLE_IMAGE_MAX_SIDE on its longer side in which no face is
    found, and whose gray levels are not flat (WHOLE_IMAGE_MIN_CONTRAST: a plain colour is no face), is
    taken as one whole face without a score (``whole_image_face``): a picture that already is a face
    crop, like FER2013's 48x48 faces.
    """

    def __init__(self, model_range: str = "short", min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        if model_range not in DETECTOR_CHOICES:
            raise ValueError(f"model_range must be one of {sorted(DETECTOR_CHOICES)}, got {model_range!r}")
        check_min_confidence(min_confidence)
        self.model_range = model_range
        self._models = {}
        # MediaPipe's graphs keep themselves alive (their threads and some 10 MB each): a detector dropped unclosed
        # closes them as it goes
        weakref.finalize(self, _close_graphs, self._models).atexit = False
        self._open_models(min_confidence)
        self._frames_since_full = 0  # "auto" on a video: frames since the last full pass
        self._faces_in_view = 0  # "auto" on a video: faces the last full pass found (fewer from the short pass: run it)
        self._last_shape: tuple[int, ...] | None = None
        self._last_faces: list[Box] = []  # "auto" on a video: the last frame's faces, followed into the next
        self._next_tile: int | None = None  # "auto" on a video: the first tile of the next frame's share (None: all)
        self._video_tiles: list[tuple[float, int, int]] = []  # "auto" on a video: the source's tiles (tile_windows)

    def _open_models(self, min_confidence: float) -> None:
        """(Re)open the MediaPipe graphs of the range, dropping detections under ``min_confidence``."""
        self.close()
        with _quiet_native_stderr():
            for name in ["short", "full"] if self.model_range == "auto" else [self.model_range]:
                self._models[name] = _mp_face_detection.FaceDetection(
                    model_selection=MODEL_RANGES[name], min_detection_confidence=min_confidence)
                # The graph starts (and logs) on its first image: do that now, quietly.
                self._models[name].process(np.zeros((64, 64, 3), dtype=np.uint8))
        self.min_confidence = min_confidence

    def set_min_confidence(self, min_confidence: float) -> None:
        """Drop detections under ``min_confidence`` from the next image on (the graphs are reopened; the faces
        followed from frame to frame are kept)."""
        check_min_confidence(min_confidence)
        if min_confidence != self.min_confidence:
            self._open_models(min_confidence)

    def reset(self) -> None:
        """Start over for a new source: the next image gets every pass."""
        self._last_shape = None
        self._last_faces = []
        self._next_tile = None

    def _run(self, model_range: str, rgb: np.ndarray, padding: int = 0) -> list[FaceDetection]:
        """One model's faces above ``min_confidence`` in an RGB image that was padded by ``padding`` pixels."""
        output = self._models[model_range].process(rgb)
        height, width = rgb.shape[0] - 2 * padding, rgb.shape[1] - 2 * padding
        faces = []
        for detection in output.detections or []:
            score = float(detection.score[0])
            if score < self.min_confidence:  # MediaPipe's full-range graph lets some lower scores through
                continue
            relative = detection.location_data.relative_bounding_box
            # Relative to the padded image; moved and rescaled to the unpadded one.
            xmin, ymin = (relative.xmin * rgb.shape[1] - padding) / width, (relative.ymin * rgb.shape[0] - padding) / height
            box_width, box_height = relative.width * rgb.shape[1] / width, relative.height * rgb.shape[0] / height
            if padding and share_in_frame(xmin, ymin, box_width, box_height) < MIN_SHARE_IN_FRAME:
                continue  # the mirror image, in the padding, of a face cut by the frame's edge (found itself too)
            box = relative_to_pixel_box(xmin, ymin, box_width, box_height, width, height)
            if box is not None:
                # keypoints 0 and 1: the person's right and left eye, relative to the padded image
                eyes = tuple((point.x * rgb.shape[1] - padding, point.y * rgb.shape[0] - padding)
                             for point in detection.location_data.relative_keypoints[:2])
                faces.append(FaceDetection(box=box, score=score, eyes=eyes if len(eyes) == 2 else None))
        return faces

    def _detect_auto(self, rgb: np.ndarray, photo: bool = False) -> list[FaceDetection]:
        """The faces of the "auto" passes (see the class); ``photo``: every pass, and a video's state (what the
        passes of its last frame found) neither read nor changed."""
        short = self._run("short", rgb)
        if photo:
            return self._more_passes(rgb, short, padded_full_range=True)[0]
        new_source = rgb.shape != self._last_shape
        if new_source:
            self._last_faces = []
            self._next_tile = None
        self._last_shape = rgb.shape
        self._frames_since_full += 1
        if not (new_source or len(short) < self._faces_in_view or self._frames_since_full >= FULL_RANGE_INTERVAL):
            return short
        self._frames_since_full = 0
        fused, self._faces_in_view = self._more_passes(rgb, short, padded_full_range=new_source)
        return fused

    def _more_passes(self, rgb: np.ndarray, short: list[FaceDetection],
                     padded_full_range: bool) -> tuple[list[FaceDetection], int]:
        """The short-range pass's faces ``short`` fused with those of the short range on the padded image and the
        full range, and how many these are; ``padded_full_range`` (a photo, a video's first frame, which can afford
        it): also the full range on the padded image, whose faces that count leaves out."""
        padding = int(round(EDGE_PADDING * max(rgb.shape[:2])))
        padded = cv2.copyMakeBorder(rgb, padding, padding, padding, padding, cv2.BORDER_REFLECT)
        fused = fuse_passes(fuse_passes(short, self._run("short", padded, padding)), self._run("full", rgb))
        count = len(fused)
        if padded_full_range:
            fused = fuse_passes(fused, self._run("full", padded, padding))
        return fused, count

    def _follow_faces(self, rgb: np.ndarray, found: list[FaceDetection]) -> list[FaceDetection]:
        """``found`` (a video frame's faces from the whole-frame passes) and the last frame's faces they miss, each
        looked for in a square around its last box (FOLLOW_CROP); in a frame larger than TILE_SIDE, also the faces
        in this frame's share of the tiles (VIDEO_TILE_SIDE; FINEST_TILE_MIN_CONFIDENCE). These are followed into
        the next frame."""
        faces = list(found)
        for box in self._last_faces:
            if all(overlap(box, face.box) < SAME_FACE_OVERLAP for face in faces):
                faces = fuse(faces, self._detect_around(rgb, box))
        if max(rgb.shape[:2]) > TILE_SIDE:
            share = self._tile_share(rgb.shape)
            finest = [window for window in share if window[0] == 1.0]
            lowest = max(self.min_confidence, FINEST_TILE_MIN_CONFIDENCE)
            in_tiles = [face for face in self._detect_in_windows(rgb, finest, VIDEO_TILE_SIDE) if face.score >= lowest]
            in_tiles += self._detect_in_windows(rgb, [window for window in share if window[0] != 1.0], VIDEO_TILE_SIDE)
            faces = fuse(faces, in_tiles)
        self._last_faces = [face.box for face in faces]
        return faces

    def _tile_share(self, shape: tuple[int, ...]) -> list[tuple[float, int, int]]:
        """This video frame's tiles (VIDEO_TILE_SIDE): all of them for a source's first frame, then the next
        share of them in turn, every tile once in TILE_SWEEP_FRAMES frames."""
        if self._next_tile is None:  # a new source: its tiles, once
            self._video_tiles = tile_windows(shape, VIDEO_TILE_SIDE)
            self._next_tile = len(self._video_tiles)
            return self._video_tiles
        windows = self._video_tiles
        if self._next_tile >= len(windows):
            self._next_tile = 0
        share = -(-len(windows) // TILE_SWEEP_FRAMES)
        self._next_tile += share
        return windows[self._next_tile - share:self._next_tile]

    def _detect_around(self, rgb: np.ndarray, box: Box) -> list[FaceDetection]:
        """The short-range model's faces in a square FOLLOW_CROP times ``box``'s side around its centre (kept
        inside the image), in the image's coordinates: those at least FOLLOW_MIN_SIZE of ``box``'s side."""
        height, width = rgb.shape[:2]
        box_side = max(box[2] - box[0], box[3] - box[1])
        side = min(max(round(FOLLOW_CROP * box_side), FOLLOW_CROP_MIN), height, width)
        left = min(max((box[0] + box[2] - side) // 2, 0), width - side)
        top = min(max((box[1] + box[3] - side) // 2, 0), height - side)
        crop = np.ascontiguousarray(rgb[top:top + side, left:left + side])
        return [shifted(face, left, top) for face in self._run("short", crop)
                if max(face.box[2] - face.box[0], face.box[3] - face.box[1]) >= FOLLOW_MIN_SIZE * box_side]

    def _detect_in_tiles(self, rgb: np.ndarray) -> list[FaceDetection]:
        """Faces in all the TILE_SIDE tiles of a large RGB image (``tile_windows``), in its coordinates."""
        return self._detect_in_windows(rgb, tile_windows(rgb.shape, TILE_SIDE), TILE_SIDE)

    def _detect_in_windows(self, rgb: np.ndarray, windows: list[tuple[float, int, int]],
                           side: int) -> list[FaceDetection]:
        """Faces in the ``side`` x ``side`` tiles (scale, top, left) of an RGB image, in the image's coordinates;
        a face cut by a tile's edge inside the (scaled) image is left out. The short-range model where it is
        loaded."""
        model = "short" if "short" in self._models else self.model_range
        scaled_images: dict[float, np.ndarray] = {}
        faces = []
        for scale, top, left in windows:
            if scale not in scaled_images:
                scaled_images[scale] = rgb if scale == 1.0 else scaled_down(rgb, scale)
            image = scaled_images[scale]
            height, width = image.shape[:2]
            tile = np.ascontiguousarray(image[top:top + side, left:left + side])
            bottom, right = top + tile.shape[0], left + tile.shape[1]
            for face in (shifted(face, left, top) for face in self._run(model, tile)):
                x1, y1, x2, y2 = face.box
                if ((left > 0 and x1 <= left + 1) or (top > 0 and y1 <= top + 1)
                        or (right < width and x2 >= right - 1) or (bottom < height and y2 >= bottom - 1)):
                    continue  # cut by the tile's edge inside the image
                faces.append(scaled_back(face, scale, rgb.shape))
        return faces

    def detect(self, image_bgr: np.ndarray, whole_image_fallback: bool = True, tiles: bool = False,
               follow: bool = False) -> list[FaceDetection]:
        """Faces in a BGR (or gray/BGRA) uint8 image, best score first; [] when there are none.
        ``whole_image_fallback``: a small image without a detected face is one whole face (for photos,
        not a video's frames: a thumbnail-size video of a scene would get a face in every frame).
        ``tiles`` (a photo): every whole-image pass, whatever the frames before it, whose state (kept for a video's
        next frame) is left as it is; and an image larger than TILE_SIDE is also searched in tiles, for faces small
        against it (50-170 ms more on 3-12 megapixels).
        ``follow`` ("auto", a video's frames): faces of the last frame that the whole-frame passes miss are looked
        for around their last boxes, and frames larger than TILE_SIDE are also searched in a share of their tiles
        (``_follow_faces``)."""
        if self.closed:
            raise RuntimeError("FaceDetector is closed")
        if image_bgr.size == 0:
            return []
        rgb = skin_toned_if_gray(_as_rgb(image_bgr))
        scale = min(1.0, MAX_PASS_SIDE / max(rgb.shape[:2]))
        whole = rgb if scale == 1.0 else scaled_down(rgb, scale)
        faces = self._detect_auto(whole, photo=tiles) if self.model_range == "auto" else self._run(self.model_range, whole)
        if scale != 1.0:
            faces = [scaled_back(face, scale, rgb.shape) for face in faces]
        if tiles and max(rgb.shape[:2]) > TILE_SIDE:
            faces = fuse(faces, self._detect_in_tiles(rgb))
        elif follow and self.model_range == "auto":
            faces = self._follow_faces(rgb, faces)
        if not faces and whole_image_fallback and max(image_bgr.shape[:2]) <= WHOLE_IMAGE_MAX_SIDE \
                and cv2.cvtColor(_as_rgb(image_bgr), cv2.COLOR_RGB2GRAY).std() >= WHOLE_IMAGE_MIN_CONTRAST:
            return [whole_image_face(image_bgr)]
        faces.sort(key=lambda face: face.score, reverse=True)
        return faces

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has released the MediaPipe graphs."""
        return not self._models

    def close(self) -> None:
        """Release the MediaPipe graphs; safe to call twice."""
        _close_graphs(self._models)

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
