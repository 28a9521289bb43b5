"""Speed benchmark (not a test): frames per second of each pipeline stage, and classifier cost per face.

    python -m benchmarks.pipeline                       # ../shared/media clips when present, else the demo clip
    python -m benchmarks.pipeline clip.mp4 --detector short
    python -m benchmarks.pipeline --classifier-only --models a_int8.onnx b_int8.onnx
    python -m benchmarks.pipeline --detector auto --sample-fps 5   # the full stages analyse 5 frames a second

For each video and detector range: decode only; decode + face detection; the full pipeline
(detect, classify, track, annotate) without writing; the full pipeline writing H.264. Each is the
best of --repeat runs, in the clip's frames per second of wall time (with --sample-fps the full stages
analyse only that many frames a second, and read and skip the others). Then the classifier alone on one CPU
thread at several batch sizes, for every shipped model (or the --models given). Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from realtime.annotator import EmotionAnnotator
from realtime.classifier import EmotionClassifier, default_model_path
from realtime.cli import frames_per_second, positive_int_type
from realtime.demo import demo_source
from realtime.detector import DETECTOR_CHOICES, FaceDetector
from realtime.errors import ModelError
from realtime.io.video import H264VideoWriter, VideoFileSource
from realtime.pipeline import EmotionAnalyzer, process_source

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER_MODELS = (PROJECT_ROOT / "models" / "emotion_cnn.onnx", default_model_path())  # float32, shipped INT8
SHARED_CLIPS = [PROJECT_ROOT.parent / "shared" / "media" / name
                for name in ("single_face.mp4", "test.mp4")]
STAGES = ("decode only", "decode + detect", "full, no writing", "full + H.264")


def open_clip(path: Path | None):
    """The clip as a frame source (the built-in demo clip when ``path`` is None)."""
    return demo_source() if path is None else VideoFileSource(path)


def time_stage(stage: str, path: Path | None, analyzer: EmotionAnalyzer, detector: FaceDetector,
               sample_fps: float | None = None) -> tuple[int, float]:
    """Frames processed and seconds taken by one run of ``stage`` over the clip (the full stages analysing at
    most ``sample_fps`` frames a second)."""
    annotator = EmotionAnnotator()
    with open_clip(path) as source, tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        if stage == "decode only":
            frames = sum(1 for _ in source)
        elif stage == "decode + detect":
            frames = sum(1 for frame in source if detector.detect(frame.image, follow=True) is not None)
        elif stage == "full, no writing":
            frames = sum(1 for _ in process_source(source, analyzer, annotator=annotator, sample_fps=sample_fps))
        else:
            with H264VideoWriter(Path(folder) / "out.mp4", source.info) as writer:
                frames = sum(1 for _ in process_source(source, analyzer, sinks=[writer], annotator=annotator,
                                                       sample_fps=sample_fps))
        return frames, time.perf_counter() - started


def benchmark_pipeline(clips: list[Path | None], detector_ranges: list[str], repeat: int,
                       sample_fps: float | None = None) -> None:
    """Print the clip's frames per second of wall time per stage, and the full pipeline with H.264 relative to
    decoding alone."""
    print(f"{'clip':<18}{'size':>10}{'detector':>10}" + "".join(f"{stage:>18}" for stage in STAGES)
          + f"{'full+H.264 / decode':>21}")
    for clip in clips:
        with open_clip(clip) as source:
            size = f"{source.info.width}x{source.info.height}"
        for detector_range in detector_ranges:
            with EmotionAnalyzer(detector_range=detector_range) as analyzer, \
                    FaceDetector(detector_range, 0.5) as detector:
                fps, clip_frames = {}, None
                for stage in STAGES:
                    runs = [time_stage(stage, clip, analyzer, detector, sample_fps) for _ in range(repeat)]
                    clip_frames = clip_frames or runs[0][0]  # decode only: every frame of the clip
                    fps[stage] = max(clip_frames / seconds for _, seconds in runs)
            name = clip.name if clip else "demo clip"
            print(f"{name:<18}{size:>10}{detector_range:>10}" + "".join(f"{fps[s]:>14.0f} fps" for s in STAGES)
                  + f"{fps['full + H.264'] / fps['decode only']:>20.0%}", flush=True)


def benchmark_classifier(classifiers: dict[Path, EmotionClassifier], batch_sizes: tuple[int, ...] = (1, 8, 32),
                         runs: int = 300) -> None:
    """Print milliseconds per face for each model (opened on one onnxruntime thread) and batch size."""
    names = [path.name for path in classifiers]
    labels = names if len(set(names)) == len(names) else [str(path) for path in classifiers]
    column = max(26, *(len(label) + 2 for label in labels))
    print(f"\n{'model (1 CPU thread)':<{column}}" + "".join(f"{f'batch {b}':>14}" for b in batch_sizes))
    for classifier, label in zip(classifiers.values(), labels):
        height, width = classifier.metadata.input_size
        channels = 1 if classifier.metadata.color == "gray" else 3
        costs = []
        for batch in batch_sizes:
            crops = np.random.default_rng(0).random((batch, height, width, channels), dtype=np.float32)
            for _ in range(10):
                classifier.predict(crops)
            count = max(20, runs // batch)
            started = time.perf_counter()
            for _ in range(count):
                classifier.predict(crops)
            costs.append((time.perf_counter() - started) / count / batch * 1000)
        print(f"{label:<{column}}" + "".join(f"{cost:>11.3f} ms" for cost in costs), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path, help="clips to time (default: ../shared/media clips)")
    parser.add_argument("--detector", choices=(*DETECTOR_CHOICES, "all"), default="all")
    parser.add_argument("--repeat", type=positive_int_type, default=3, help="runs per stage; the fastest counts")
    parser.add_argument("--models", nargs="+", type=Path,
                        help="ONNX emotion models for the per-face table (default: the shipped float32 and INT8)")
    parser.add_argument("--classifier-only", action="store_true", help="only the per-face table")
    parser.add_argument("--sample-fps", type=frames_per_second, metavar="N",
                        help="the full stages analyse at most N frames a second, as python -m realtime --sample-fps")
    args = parser.parse_args(argv)
    models = args.models or [path for path in CLASSIFIER_MODELS if path.is_file()]
    try:  # every model opens before anything is timed
        classifiers = {path: EmotionClassifier(path, threads=1) for path in models}
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.classifier_only:
        benchmark_classifier(classifiers)
        return 0
    clips = args.videos or [clip for clip in SHARED_CLIPS if clip.is_file()] or [None]
    missing = [clip for clip in clips if clip is not None and not clip.is_file()]
    if missing:
        print(f"error: no such video: {missing[0]}", file=sys.stderr)
        return 2
    sampled = f"; the full stages analyse at most {args.sample_fps:g} a second" if args.sample_fps else ""
    print(f"{os.cpu_count()} CPU cores; the clip's frames per second, best of {args.repeat} runs{sampled}\n")
    benchmark_pipeline(clips, list(DETECTOR_CHOICES) if args.detector == "all" else [args.detector], args.repeat,
                       args.sample_fps)
    benchmark_classifier(classifiers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
