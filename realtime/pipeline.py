"""The analysis pipeline (detect -> crop -> classify in one batch -> track and smooth) and the frame loop
that the command line and the web app share.

Inference (``EmotionAnalyzer``) is kept apart from drawing (``EmotionAnnotator``) and from the
sinks: ``process_source`` wires them together for any source, writing to whichever sinks it is given.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from realtime.annotator import EmotionAnnotator
from realtime.classifier import EmotionClassifier
from realtime.detector import DEFAULT_MIN_CONFIDENCE, FaceDetector, whole_image_face
from realtime.model_metadata import ModelMetadata
from realtime.results import FrameResult
from realtime.sources import CameraSource, Frame
from realtime.summary import RunSummary
from realtime.tracker import LABEL_MARGIN, FaceTracker

FPS_SMOOTHING = 0.9  # weight of the past in the live FPS readout


class EmotionAnalyzer:
    """Emotions of the faces in a stream of frames.

    ``model_path``: exported .onnx model (default: the one in models/).
    ``detector_range``: "short" (webcam distance, fastest), "full" (faces at any distance) or "auto"
    (both, plus faces cut by the frame's edge and close-ups; see ``FaceDetector``).
    ``min_confidence``: minimum face detection score.
    ``smoothing``: weight of the past in each face's moving average of probabilities, [0, 1); 0 = off
    (then the label has no hysteresis either: every frame's own label).
    ``flip_tta``: also classify each face mirrored and average (more accurate; twice the classifier work).
    ``threads``: onnxruntime threads for the classifier; 1 (the default) leaves the other cores to the
    video decoder and encoder threads (None: onnxruntime's choice).
    ``whole_image``: classify each whole frame as one face (pictures that are face crops already),
    without detection; such faces have no detection score (None).
    """

    def __init__(self, model_path: str | Path | None = None, detector_range: str = "auto",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, smoothing: float = 0.6, flip_tta: bool = True,
                 threads: int | None = 1, whole_image: bool = False):
        self.classifier = EmotionClassifier(model_path, threads=threads, flip_tta=flip_tta)
        self.tracker = FaceTracker(self.classifier.classes, smoothing=smoothing,
                                   label_margin=LABEL_MARGIN if smoothing else 0.0)
        self.detector = FaceDetector(detector_range, min_confidence)
        self.whole_image = whole_image

    @property
    def classes(self) -> list[str]:
        """Emotion names, in the order of each face's probabilities."""
        return self.classifier.classes

    @property
    def metadata(self) -> ModelMetadata:
        """What the model says about itself (classes, input, training facts)."""
        return self.classifier.metadata

    def analyze(self, frame: Frame) -> FrameResult:
        """Faces of one frame with ids, smoothed probabilities and labels (frames in order, one source)."""
        detections = [whole_image_face(frame.image)] if self.whole_image else self.detector.detect(frame.image)
        probabilities = self.classifier.infer(frame.image, [face.box for face in detections])
        faces = self.tracker.update(detections, probabilities)
        return FrameResult(index=frame.index, timestamp=frame.timestamp, faces=faces)

    def reset(self) -> None:
        """Forget tracked faces before a new source (ids restart at 1, no smoothing across sources)."""
        self.tracker.reset()
        self.detector.reset()

    def close(self) -> None:
        """Release the face detector."""
        self.detector.close()

    def __enter__(self) -> "EmotionAnalyzer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class ProcessedFrame:
    """One frame after the pipeline: the source frame, its results, the annotated image (when an
    annotator was given) and the processing rate so far (frames per second, smoothed)."""

    frame: Frame
    result: FrameResult
    annotated: np.ndarray | None
    fps: float


def process_source(source, analyzer: EmotionAnalyzer, *, annotator: EmotionAnnotator | None = None,
                   video_writer=None, results_writer=None, window=None, summary: RunSummary | None = None,
                   source_name: str | None = None, max_frames: int | None = None,
                   progress: bool = False) -> Iterator[ProcessedFrame]:
    """Run every frame of an open ``source`` through ``analyzer`` and hand it to the sinks given.

    Yields a ProcessedFrame per frame. Annotated frames go to ``video_writer`` (``.write(image, timestamp)``;
    camera frames keep their capture times, file frames their frame rate)
    and, with an FPS readout, to ``window`` (``.show(image) -> bool``; False stops the run, as when
    the user presses q). Results go to ``results_writer`` (``.write(source_name, frame_result)``)
    and are added to ``summary``. ``max_frames`` stops early; ``progress`` shows a tqdm bar on
    stderr. The tracker is reset first, so ids start at 1 for each source. Closing the sinks and the
    source is the caller's job (``with`` blocks), which also makes Ctrl-C leave finished files.
    """
    if (video_writer is not None or window is not None) and annotator is None:
        raise ValueError("a video writer or window needs an annotator")
    name = source_name if source_name is not None else Path(source.info.source).name
    total = source.info.total_frames
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    live = isinstance(source, CameraSource)  # live frames are written at their capture times
    analyzer.reset()
    fps = 0.0
    frames = iter(source)
    with tqdm(total=total, desc=name, unit="frame", disable=not progress, file=sys.stderr,
              dynamic_ncols=True, leave=True) as bar:
        count = 0
        while max_frames is None or count < max_frames:
            started = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            result = analyzer.analyze(frame)
            annotated = annotator.annotate(frame.image, result) if annotator is not None else None
            if video_writer is not None:
                video_writer.write(annotated, timestamp=frame.timestamp if live else None)
            if results_writer is not None:
                results_writer.write(name, result)
            seconds = time.perf_counter() - started
            if seconds > 0:
                fps = 1.0 / seconds if fps == 0 else FPS_SMOOTHING * fps + (1 - FPS_SMOOTHING) / seconds
            if summary is not None:
                summary.add(result, name, seconds)
            count += 1
            bar.update(1)
            keep_going = True
            if window is not None:
                keep_going = window.show(annotator.draw_fps(annotated, fps))
            yield ProcessedFrame(frame, result, annotated, fps)
            if not keep_going:
                break
