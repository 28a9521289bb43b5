"""The analysis pipeline (detect -> crop -> classify in one batch -> track and smooth) and the frame loop
that the command line, the web app and the Python API share.

Inference (``EmotionAnalyzer``) is kept apart from drawing (``EmotionAnnotator``) and from the
sinks: ``process_source`` hands every analysed frame of a source to whichever sinks it is given.
"""

from __future__ import annotations

import gc
import math
import numbers
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from realtime.annotator import EmotionAnnotator
from realtime.classifier import EmotionClassifier
from realtime.detector import (
    DEFAULT_MIN_CONFIDENCE,
    DETECTOR_CHOICES,
    FaceDetector,
    check_min_confidence,
    whole_image_face,
)
from realtime.errors import SourceError
from realtime.interrupts import frame_handoff
from realtime.io.images import ImageSource, bgr_image, read_photo_file
from realtime.io.stream import StreamSource, is_stream_url, redacted
from realtime.model_metadata import ModelMetadata
from realtime.scene_cuts import SceneCutDetector, ShotChange
from realtime.sinks import Sink
from realtime.sources import Source, open_source
from realtime.summary import printable, shortened
from realtime.tracker import LABEL_MARGIN, FaceTracker, check_smoothing
from realtime.types import AnalyzedFrame, FaceResult, Frame, FrameResult

FPS_SMOOTHING = 0.9  # weight of the past in the live FPS readout
# Every frame leaves reference cycles (MediaPipe builds a class for each detection's outputs; a PyAV frame and its
# side data hold each other) that outlive the young generations' collections. Left to Python's rare full
# collections, a 25-minute video's run grew by 70 MB; a full collection every this many frames of a stream
# (process_source: files, cameras, streams) keeps it flat. It takes ~50 ms with the models loaded (the command line
# freezes what is loaded first: a few ms); track()'s callers (the web app's live camera) are spared the pause.
FULL_COLLECTION_EVERY = 500
# Sampled frames are due on a grid of 1/N s from the first; a frame this close before its time counts as on time
# (timestamps such as i / 30 do not add up exactly).
SAMPLE_TOLERANCE_S = 1e-6
NO_CHANGES = (ShotChange.SAME, None)  # no shot change since the last frame analysed
MAX_SAMPLE_FPS = 1000  # frames a second at most that sampling is asked for (no camera or file has more)
PROGRESS_NAME_COLUMNS = 24  # of a source's name on its progress bar: 80 columns keep the count, rate and ETA


class SourceWarning(UserWarning):
    """What ``EmotionAnalyzer.stream()`` could not analyse of its source, one warning per line of the source's
    ``issues`` (a damaged stretch skipped, a cut-short end, a camera or stream outage), worded as the command
    line's "warning:" lines; the stream's results lack those frames. ``analyzer.last_source_issues`` keeps
    the lines of the last stream."""


def read_photo(path: str | Path, calls_below_user: int = 1) -> np.ndarray:
    """A photo file's image (``read_photo_file``), with a SourceWarning for each thing lost reading it (a damaged
    or cut-short file, unreadable EXIF data), said where the user's code called this ``calls_below_user`` calls
    up; SourceError naming what was given for an empty path or a network address (which ``stream()`` reads)."""
    if not str(path).strip():
        raise SourceError("image path is empty")
    if isinstance(path, str) and is_stream_url(path):
        raise SourceError(f"image {redacted(path)}: a network address; analyze() and track() read image files (stream() "
                          "reads cameras and network streams)")
    photo = read_photo_file(Path(path))
    for issue in photo.issues:
        warnings.warn(issue, SourceWarning, stacklevel=2 + calls_below_user)
    return photo.image


def _number(name: str, value: float) -> float:
    """``value`` as a float; TypeError for what is no number (True, "0.5")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {value!r}")
    return float(value)


class EmotionAnalyzer:
    """Emotions of the faces in photos and in streams of frames.

    ``model_path``: exported .onnx model (default: the INT8 model shipped inside the package).
    ``detector_range``: "short" (webcam distance, fastest), "full" (faces at any distance) or "auto"
    (both, plus faces cut by the frame's edge and close-ups; see ``FaceDetector``).
    ``min_confidence``: minimum face detection score.
    ``smoothing``: weight of the past in each face's moving average of probabilities, [0, 1); 0 = off
    (then the label has no hysteresis either: every frame's own label).
    ``flip_tta``: also classify each face mirrored and average (more accurate; twice the classifier work).
    ``threads``: onnxruntime threads for the classifier, at most the machine's cores; 1 (the default) leaves
    the other cores to the video decoder and encoder threads (None: onnxruntime's choice).
    ``whole_image``: classify each whole frame as one face (pictures that are face crops already),
    without detection; such faces have no detection score (None). Without it, a photo (not a video's
    frame) no larger than 160 pixels on its longer side in which no face is found, and which is not flat,
    is also taken whole (see ``FaceDetector``): a small picture is usually a face crop. Such a face has no
    detection score (None) either.
    ``small_images_whole``: False turns that off: a small photo without a detected face has no face (for
    thumbnails of scenes, logos, icons).
    ``roll_correction``: turn tilted heads upright (eye line level) in their crops before classifying.

    Only ``model_path`` may be given by position. One analyzer may be shared between threads: its calls
    then run one at a time (for work in parallel, one analyzer per thread). It goes through one stream
    at a time, and takes no ``track()`` calls meanwhile.
    """

    def __init__(self, model_path: str | Path | None = None, *, detector_range: str = "auto",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, smoothing: float = 0.6, flip_tta: bool = True,
                 threads: int | None = 1, whole_image: bool = False, roll_correction: bool = True,
                 small_images_whole: bool = True):
        if model_path in DETECTOR_CHOICES and not Path(model_path).exists():
            raise ValueError(f"{model_path!r} is a detector range, not a model file: detector_range={model_path!r}")
        if detector_range not in DETECTOR_CHOICES:
            raise ValueError(f"detector_range must be one of {sorted(DETECTOR_CHOICES)}, not {detector_range!r}")
        min_confidence, smoothing = _number("min_confidence", min_confidence), _number("smoothing", smoothing)
        for name, value in (("flip_tta", flip_tta), ("whole_image", whole_image), ("roll_correction", roll_correction),
                            ("small_images_whole", small_images_whole)):
            if not isinstance(value, (bool, np.bool_)):  # "no" would be taken as true
                raise TypeError(f"{name} must be True or False, not {value!r}")
        self.classifier = EmotionClassifier(model_path, threads=threads, flip_tta=flip_tta)
        self.tracker = FaceTracker(self.classifier.classes, smoothing=smoothing,
                                   label_margin=LABEL_MARGIN if smoothing else 0.0)
        self.detector = FaceDetector(detector_range, min_confidence)
        self.scene_cuts = SceneCutDetector()
        self.whole_image = whole_image
        self.small_images_whole = small_images_whole
        self.roll_correction = roll_correction
        self.last_source_issues: tuple[str, ...] = ()  # what the last stream() lost, a line each (SourceWarning)
        self.last_source_frames_lost = 0  # frames of the last stream()'s video file skipped as damaged or cut off
        self._lock = threading.RLock()
        self._closed = self._streaming = False
        self._tracked_frames, self._first_capture, self._tracked_size = 0, None, None
        self._frames_streamed = 0  # frames of streams (process_source) analysed by this analyzer, ever
        # the shot changes since the last frame analysed (sampling skips frames): where they lead, and where
        # the newest cut among them came from (None: no cut among them)
        self._changes_since_analysed: tuple[ShotChange, ShotChange | None] = NO_CHANGES

    def __repr__(self) -> str:
        return (f"EmotionAnalyzer({str(self.classifier.model_path)!r}, detector_range={self.detector.model_range!r}, "
                f"min_confidence={self.detector.min_confidence}, smoothing={self.tracker.smoothing}, "
                f"flip_tta={self.classifier.flip_tta}, whole_image={self.whole_image}, "
                f"small_images_whole={self.small_images_whole}, "
                f"roll_correction={self.roll_correction}{', closed' * self._closed})")

    @property
    def classes(self) -> list[str]:
        """Emotion names, in the order of each face's probabilities."""
        return self.classifier.classes

    @property
    def metadata(self) -> ModelMetadata:
        """What the model says about itself (classes, input, training facts)."""
        return self.classifier.metadata

    def analyze(self, image: np.ndarray | Image.Image | str | Path) -> FrameResult:
        """The faces of one photo: a uint8 array (OpenCV's BGR order; gray and BGRA too), a PIL image or an
        image file's path. A file or PIL image is taken upright, as a viewer shows it (its EXIF orientation
        applied), and the boxes are in that upright image's pixels; an array is taken as it is.

        Faces are numbered 1, 2, ... best detection first; nothing is tracked or smoothed, so calls
        are independent of each other and of any stream.
        """
        source = ""
        image = _as_path(image)
        if isinstance(image, (str, Path)):
            source = str(image)
            image = read_photo(image)
        image = bgr_image(image)
        with self._lock:
            self._check_open()
            detections, probabilities, speed = self._detect_and_classify(image)  # a stream's state is left as it is
        classes = tuple(self.classes)
        faces = [FaceResult(face_id=number, box=detection.box, detection_score=detection.score,
                            probabilities=row, label=classes[int(np.argmax(row))], confidence=float(np.max(row)),
                            classes=classes)
                 for number, (detection, row) in enumerate(zip(detections, probabilities), start=1)]
        return FrameResult(index=0, timestamp=0.0, faces=faces, source=source, speed=speed, classes=classes)

    def track(self, frame: Frame | np.ndarray | Image.Image | str | Path, source_name: str = "") -> FrameResult:
        """The next frame of a stream: faces with ids kept across frames and smoothed probabilities.

        ``frame``: a ``Frame``, or an image as ``analyze()`` takes it (e.g. from your own camera loop), which is
        numbered from 0 and timed by the clock from the first one since ``reset()``. It is a video's frame: unlike
        a photo in ``analyze()``, it is not searched in tiles, and a small one without a detected face is not taken
        whole. ``source_name`` goes into the result's ``source`` (default: the path of a frame given as one).
        Refused while the analyzer goes through a stream (``stream()``, ``process_source()``): its tracker follows
        that stream's faces.
        """
        if not isinstance(source_name, str):
            raise TypeError(f"source_name must be a str, not {type(source_name).__name__}")
        frame = _as_path(frame)
        if not source_name and isinstance(frame, (str, Path)):
            source_name = str(frame)  # as analyze() names a photo
        return self._track(frame, source_name, still=False, edited=False, in_stream=False)

    def _track(self, frame: Frame | np.ndarray | Image.Image | str | Path, source_name: str, still: bool,
               edited: bool, in_stream: bool = True) -> FrameResult:
        """``track()``; ``in_stream``: the frame is the stream's own (else it is refused while a stream goes,
        checked under the lock that a stream's frames hold, so never between two of them); ``still``: the
        frame is a photo, so a small one without a detected face is taken whole, as ``analyze()`` does (unless
        ``small_images_whole`` is off);
        ``edited``: the frame is a video file's, which may cut from one shot to another (a new shot forgets
        the faces of the last one: new ids, no smoothing across the cut; after a flash, or anything else that
        interrupts the shot up to a second, the faces of the shot before it come back)."""
        if isinstance(frame, (str, Path)):
            frame = read_photo(frame, calls_below_user=2)  # track() -> _track()
        if isinstance(frame, Frame) and (isinstance(frame.timestamp, bool)
                                         or not isinstance(frame.timestamp, numbers.Real)):
            raise TypeError(f"a Frame's timestamp must be a number of seconds, not {frame.timestamp!r}")
        if isinstance(frame, Frame) and not math.isfinite(frame.timestamp):  # a NaN would reach the results' JSON
            raise ValueError(f"a Frame's timestamp must be a finite number of seconds, not {frame.timestamp!r}")
        with self._lock:
            self._check_open()
            if not in_stream and self._streaming:
                raise RuntimeError("this EmotionAnalyzer is going through a stream (stream() or process_source()), "
                                   "whose faces its tracker follows; track() another source with another "
                                   "EmotionAnalyzer")
            if isinstance(frame, Frame):
                index, timestamp, image = frame.index, frame.timestamp, bgr_image(frame.image)
            else:
                image, now = bgr_image(frame), time.monotonic()
                self._first_capture = now if self._first_capture is None else self._first_capture
                index, timestamp = self._tracked_frames, now - self._first_capture
            if image.size:  # (an image of no pixels has no size to follow the faces to)
                if self._tracked_size not in (None, image.shape[:2]):  # follow the faces to the new size
                    self.tracker.rescale(image.shape[1] / self._tracked_size[1],
                                         image.shape[0] / self._tracked_size[0])
                    self.detector.reset()
                self._tracked_size = image.shape[:2]
            change = ShotChange.SAME
            if edited:  # with the changes among the frames sampling skipped before it, if any
                change = self._fold_shot_change(self.scene_cuts.shot_change(image, timestamp))
                self._changes_since_analysed = NO_CHANGES
            if change is not ShotChange.SAME:
                self.detector.reset()  # every detection pass for the faces of the new (or resumed) shot
            detections, probabilities, speed = self._detect_and_classify(image, photo=still)
            started = time.perf_counter()
            faces = self.tracker.update(detections, probabilities, timestamp, new_scene=change is ShotChange.NEW,
                                        scene_resumed=change is ShotChange.BACK)
            speed["track"] = 1000 * (time.perf_counter() - started)
            self._tracked_frames += 1
        if in_stream:
            self._frames_streamed += 1
            if self._frames_streamed % FULL_COLLECTION_EVERY == 0:
                gc.collect()
        return FrameResult(index=index, timestamp=timestamp, faces=faces, source=source_name, speed=speed,
                           classes=tuple(self.classes))

    def _skipped_frame(self, frame: Frame) -> None:
        """A video file's frame that sampling skips: the scene-cut detector sees it all the same, so that it
        compares neighbouring frames (motion over the frames skipped is no cut) and a cut among them is not missed."""
        with self._lock:
            self._fold_shot_change(self.scene_cuts.shot_change(bgr_image(frame.image), frame.timestamp))

    def _fold_shot_change(self, change: ShotChange) -> ShotChange:
        """Where the shot changes since the last frame analysed lead, with ``change`` (the newest frame's): SAME
        (none, or a flash that began and ended among them), NEW (a cut; a flash after it ends in it), or BACK (the
        end of a flash that began at or before that frame)."""
        state, before_cut = self._changes_since_analysed
        if change is ShotChange.NEW:
            state, before_cut = ShotChange.NEW, state
        elif change is ShotChange.BACK:
            state, before_cut = (ShotChange.BACK, None) if before_cut is None else (before_cut, None)
        self._changes_since_analysed = state, before_cut
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this EmotionAnalyzer is closed; make a new one")

    def _detect_and_classify(self, image: np.ndarray, photo: bool = True
                             ) -> tuple[list, np.ndarray, dict[str, float]]:
        """The image's faces (or the whole image as one), their probabilities, and each stage's milliseconds;
        ``photo``: the image is a photo, not a video's frame: a large one is also searched in tiles, and a small
        one without a detected face is taken whole when ``small_images_whole`` is on."""
        started = time.perf_counter()
        if self.whole_image:
            detections = [whole_image_face(image)] if image.shape[0] and image.shape[1] else []
        else:
            detections = self.detector.detect(image, photo and self.small_images_whole, tiles=photo,
                                              follow=not photo)
        detected = time.perf_counter()
        rolls = [face.roll for face in detections] if self.roll_correction else None
        probabilities = self.classifier.infer(image, [face.box for face in detections], rolls)
        classified = time.perf_counter()
        return detections, probabilities, {"detect": 1000 * (detected - started),
                                           "classify": 1000 * (classified - detected)}

    def stream(self, source: Source | str | int | Path, max_frames: int | None = None, *,
               source_name: str | None = None, sample_fps: float | None = None) -> Iterator[FrameResult]:
        """One FrameResult per frame of a video file, a camera index or URL, or an open Source, ids tracked.

        A source given by name or index is opened here and closed when the iteration ends. One stream at a
        time: a second one started before the first has ended is refused (make a second analyzer for it).
        Tracking starts afresh with each stream, and after it (``reset()``).

        ``source_name`` goes into every result's ``source``. By default a file is named by its path as
        given (here or to ``open_source()``), as ``analyze()`` names a photo, so that ``cam_a/clip.mp4``
        and ``cam_b/clip.mp4`` stay apart; a camera is "camera 0", a stream its address with any password
        hidden. ``sample_fps`` analyses at most that many frames a second (see ``sample_frames``), the
        others are read and skipped: a long video goes faster; ``max_frames`` counts the frames analysed.

        What the source could not deliver (damaged stretches skipped, a cut-short end, camera or stream
        outages) is a ``SourceWarning`` per line when the iteration ends, and those lines stay in
        ``last_source_issues`` (``last_source_frames_lost``: a video file's frames lost) until the next stream.
        """
        source = _as_path(source)
        if isinstance(source, numbers.Integral) and not isinstance(source, bool):
            source = int(source)  # a camera index as numpy gives it
        if isinstance(source, bool) or not isinstance(source, (str, int, Path, Source)):
            raise TypeError(f"stream() takes a video file's path, a camera index or URL, or an open Source, not "
                            f"{type(source).__name__} (for single images: analyze(), or track() frame by frame)")
        if source_name is not None and not isinstance(source_name, str):
            raise TypeError(f"source_name must be a str, not {type(source_name).__name__}")
        return self._stream(source, check_max_frames(max_frames), source_name, check_sample_fps(sample_fps))

    def _stream(self, source: Source | str | int | Path, max_frames: int | None,
                source_name: str | None, sample_fps: float | None) -> Iterator[FrameResult]:
        self._refuse_second_stream()  # before a camera is opened for it
        given = source
        self.last_source_issues, self.last_source_frames_lost = (), 0
        with ExitStack() as stack:
            if not isinstance(source, Source):
                source = stack.enter_context(open_source(source, name=source_name or str(source)))
            if source_name is None:  # a file by its path as given, as analyze() names a photo
                by_path = isinstance(given, (str, Path)) and not _by_address(source)
                source_name = str(given) if by_path else source.info.source
            try:
                for analyzed in process_source(source, self, source_name=source_name, max_frames=max_frames,
                                               sample_fps=sample_fps):
                    yield analyzed.result
            finally:  # also when the caller stops early or the source fails part way: what was lost so far
                self.last_source_issues = tuple(getattr(source, "issues", ()))
                self.last_source_frames_lost = getattr(source, "frames_lost", 0)
            for issue in self.last_source_issues:  # the iteration ended: the caller's loop is told
                warnings.warn(issue, SourceWarning, stacklevel=2)

    def _refuse_second_stream(self) -> None:
        if self._streaming:
            raise RuntimeError("this EmotionAnalyzer is already going through a stream; make another "
                               "EmotionAnalyzer for a second stream at the same time (a stream left part way "
                               "goes on until its generator is closed: results.close())")

    @contextmanager
    def _going_through_a_stream(self) -> Iterator[None]:
        """Mark the analyzer as following one stream (a second one, and ``track()``, are refused meanwhile);
        tracking starts afresh before and after it."""
        with self._lock:
            self._refuse_second_stream()
            self._streaming = True
            self.reset()
        try:
            yield
        finally:
            with self._lock:
                self.reset()
                self._streaming = False

    def configure(self, *, min_confidence: float | None = None, smoothing: float | None = None) -> None:
        """Change the minimum detection score and the smoothing from the next frame on, as in the constructor;
        the faces followed keep their ids (a live view's settings, changed while it runs)."""
        if min_confidence is not None:  # both checked before either changes
            min_confidence = _number("min_confidence", min_confidence)
            check_min_confidence(min_confidence)
        if smoothing is not None:
            smoothing = _number("smoothing", smoothing)
            check_smoothing(smoothing)
        with self._lock:
            self._check_open()
            if min_confidence is not None:
                self.detector.set_min_confidence(min_confidence)
            if smoothing is not None:
                self.tracker.set_smoothing(smoothing, label_margin=LABEL_MARGIN if smoothing else 0.0)

    def reset(self) -> None:
        """Forget tracked faces before a new source (ids restart at 1, no smoothing across sources)."""
        with self._lock:
            self.tracker.reset()
            self.detector.reset()
            self.scene_cuts.reset()
            self._tracked_frames, self._first_capture, self._tracked_size = 0, None, None
            self._changes_since_analysed = NO_CHANGES

    def close(self) -> None:
        """Release the face detector; the analyzer cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self.detector.close()

    def __enter__(self) -> EmotionAnalyzer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _as_path(value: object) -> object:
    """A path-like object (``os.PathLike``: a PurePath, a DirEntry...) as a Path; anything else as it is."""
    return Path(os.fsdecode(value)) if isinstance(value, os.PathLike) and not isinstance(value, Path) else value


def check_max_frames(max_frames: int | None) -> int | None:
    """``max_frames`` if it is None (no limit) or a whole number of at least 1, else ValueError."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral)
                                   or max_frames < 1):
        raise ValueError(f"max_frames must be None or a whole number of at least 1, not {max_frames!r}")
    return None if max_frames is None else int(max_frames)


def check_sample_fps(sample_fps: float | None) -> float | None:
    """``sample_fps`` if it is None (every frame) or a number above 0 and at most MAX_SAMPLE_FPS, as a float, else
    ValueError."""
    if sample_fps is None:
        return None
    if isinstance(sample_fps, bool) or not isinstance(sample_fps, numbers.Real) \
            or not 0 < sample_fps <= MAX_SAMPLE_FPS:
        raise ValueError(f"sample_fps must be None or a number of frames a second above 0 and at most "
                         f"{MAX_SAMPLE_FPS}, not {sample_fps!r}")
    return float(sample_fps)


def sample_frames(frames: Iterable[Frame], per_second: float | None,
                  skipped: Callable[[Frame], None] | None = None) -> Iterator[tuple[Frame, int]]:
    """Each of ``frames`` (``per_second`` None), or at most ``per_second`` of them a second: the first, then the
    first at or after each step of a 1/``per_second`` s grid from it (so a rate that does not divide the source's
    keeps its average), and the last (the analysis reaches the source's end); each with how many frames were read
    for it (it and those skipped before it). Each frame skipped goes to ``skipped``. Time going back (a source
    restarting its clock) starts the grid again; a frame without a finite time is taken."""
    first = due = previous = waiting = None  # waiting: the last frame read, skipped unless it is the last
    read = 0
    for frame in frames:
        read += 1
        if waiting is not None and skipped is not None:
            skipped(waiting)
        waiting = None
        if per_second is not None and math.isfinite(frame.timestamp):
            if due is not None and previous <= frame.timestamp < due - SAMPLE_TOLERANCE_S:
                waiting = frame
                continue
            if due is None or frame.timestamp < previous:
                first = frame.timestamp
            steps = (frame.timestamp - first) * per_second
            if not math.isfinite(steps):  # times too far apart for the grid: it starts again here
                first, steps = frame.timestamp, 0.0
            previous = frame.timestamp
            due = first + (math.floor(steps + SAMPLE_TOLERANCE_S) + 1) / per_second
        yield frame, read
        read = 0
    if waiting is not None:
        yield waiting, read


def source_label(source: Source) -> str:
    """How results name a source: a file by its name; a camera or stream as its info says ("camera 0",
    or the stream's address with any password hidden)."""
    return source.info.source if _by_address(source) else Path(source.info.source).name


def _by_address(source: Source) -> bool:
    """Whether results name ``source`` as its info says: a camera or a stream (a file served over HTTP too)."""
    return source.live or isinstance(source, StreamSource)


def process_source(source: Source, analyzer: EmotionAnalyzer, *, sinks: Iterable[Sink] = (),
                   annotator: EmotionAnnotator | None = None, source_name: str | None = None,
                   max_frames: int | None = None, progress: bool = False,
                   sample_fps: float | None = None) -> Iterator[AnalyzedFrame]:
    """Run every frame of an open ``source`` through ``analyzer`` and hand it to each of ``sinks``.

    Yields an AnalyzedFrame per frame, annotated when an ``annotator`` is given (sinks that show or
    write images need one). A sink returning False from ``write_frame`` stops the run (the user
    pressed q). ``source_name`` goes into every result (default: ``source_label()``, a file's name without
    its folder, as the command line names a single file; ``stream()`` names a file by its path);
    ``max_frames`` stops after that many frames analysed; ``sample_fps`` analyses at most that many frames a
    second (``sample_frames``), skipping the others; ``progress`` shows a tqdm bar of the source's frames on
    stderr when it is a terminal (not in a log file). The tracker is reset first and afterwards, so ids start at
    1 for each source; meanwhile the analyzer refuses a second stream and ``track()``. Closing the sinks and the
    source is the caller's job (``with`` blocks), which also makes Ctrl-C leave finished files, and so is reading
    what the source lost (its ``issues`` and ``frames_lost``, complete once the iteration has ended): no warning
    is given here.
    """
    if not isinstance(source, Source):
        raise TypeError(f"process_source() takes an open Source (realtime.open_source(...)), not "
                        f"{type(source).__name__}; EmotionAnalyzer.stream() takes a path or a camera")
    check_max_frames(max_frames)
    sample_fps = check_sample_fps(sample_fps)
    sinks = list(sinks)
    name = source_name if source_name is not None else source_label(source)
    total = source.info.total_frames
    if max_frames is not None:
        limit = max_frames if sample_fps is None else math.ceil(max_frames * max(source.info.fps / sample_fps, 1.0))
        total = min(total, limit) if total is not None else limit
    still = isinstance(source, ImageSource)  # a photo: a small one without a detected face is taken whole
    edited = not source.live and not still  # a video file, which may cut from shot to shot
    fps = 0.0
    # frames that sampling skips are still seen by the scene-cut detector: a cut between two frames analysed
    frames = sample_frames(source, sample_fps, analyzer._skipped_frame if edited else None)
    # the bar: none without stderr (started with 2>&-); below a folder's bar (the command line's), gone when done
    with analyzer._going_through_a_stream(), \
            tqdm(total=total, desc=shortened(printable(name), PROGRESS_NAME_COLUMNS), unit="frame",
                 disable=None if progress and sys.stderr else True, file=sys.stderr, dynamic_ncols=True,
                 leave=None) as bar:
        count = 0
        while max_frames is None or count < max_frames:
            started = time.perf_counter()
            frame, read = next(frames, (None, 0))
            if frame is None:
                if bar.total is not None and bar.n != bar.total and not getattr(source, "issues", None):
                    bar.total = bar.n  # whole: the count in its header was off (frames before its start, trimmed)
                    bar.refresh()
                break
            result = analyzer._track(frame, name, still, edited)
            annotated = None
            if annotator is not None:  # a small photo scaled up, so that its labels can be read
                annotated = (annotator.annotate_photo if still else annotator.annotate)(frame.image, result)
            seconds = time.perf_counter() - started
            if seconds > 0:
                fps = 1.0 / seconds if fps == 0 else FPS_SMOOTHING * fps + (1 - FPS_SMOOTHING) / seconds
            analyzed = AnalyzedFrame(frame, result, annotated, fps, seconds, source.live)
            keep_going = True
            with frame_handoff():  # a stop waits for the frame to reach every sink (realtime/interrupts.py)
                for sink in sinks:
                    if sink.write_frame(analyzed) is False:
                        keep_going = False
            count += 1
            bar.update(read)
            yield analyzed
            if not keep_going:
                break
            if count == max_frames and bar.total is not None:  # the frames read (its total was a guess with sampling)
                bar.total = bar.n
                bar.refresh()
