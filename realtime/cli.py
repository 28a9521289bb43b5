"""Command line: ``python -m realtime`` analyses a camera, a video, a photo, a folder or the demo clip."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from realtime.annotator import EmotionAnnotator
from realtime.classifier import check_threads
from realtime.crops import ROLL_TOLERANCE
from realtime.detector import (
    DEFAULT_MIN_CONFIDENCE,
    DETECTOR_CHOICES,
    LOWEST_MIN_CONFIDENCE,
    WHOLE_IMAGE_MAX_SIDE,
    FaceDetector,
)
from realtime.errors import EmotionTracerError, OutputError, SourceError, one_line
from realtime.interrupts import STOP_SIGNALS, FinishingBrokenOff, Stopped, run_ended, stop_signals
from realtime.io.camera import CAMERA_FRAME_TIMEOUT_S, CAMERA_RECONNECT_S
from realtime.io.files import (
    OutputClaim,
    check_name_length,
    check_output_folder,
    check_output_path,
    check_output_suffix,
    claim_output,
    out_of_space,
)
from realtime.io.images import (
    IMAGE_OUTPUT_SUFFIXES,
    annotated_photo_suffix,
    check_image_fits,
    frames_held,
    image_size,
    write_image,
)
from realtime.io.results_file import RESULTS_SUFFIXES, ResultsWriter
from realtime.io.stream import (
    DEFAULT_OPEN_TIMEOUT_S,
    DEFAULT_RECONNECT_FOR_S,
    LatencyMeter,
    check_stream_url,
    is_stream_url,
    redacted,
    stream_threads_alive,
)
from realtime.io.video import VIDEO_OUTPUT_SUFFIXES, VIDEO_SUFFIXES, H264VideoWriter, has_track
from realtime.io.window import DisplayWindow, display_available
from realtime.pipeline import MAX_SAMPLE_FPS, EmotionAnalyzer, process_source, source_label
from realtime.sources import (
    MEDIA_SUFFIXES,
    FolderContents,
    media_below_hint,
    media_kind,
    open_source,
    parse_source,
    scan_folder,
)
from realtime.summary import RunSummary, printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
WINDOW_TITLE = "Emotion Tracer (q or Esc quits)"
MAX_SECONDS = 1e6  # longer waits are typing mistakes

EXAMPLES = """\
examples:
  python -m realtime --camera 0
      live webcam in a window with FPS; q or Esc quits
  python -m realtime --camera 0 --output session.mp4 --results session.csv --max-frames 900
      record about 30 s of annotated webcam video and a row per face per frame
  python -m realtime --camera rtsp://user:pass@192.168.1.20:554/stream1 --output door.mp4 --no-display
      a network camera (also http(s):// MJPEG or HLS, udp://, tcp://, srt://); a dropped
      stream is reopened for --reconnect-for seconds, and the recording is kept
  python -m realtime --video interview.mp4 --output interview_emotions.mp4 --results faces.jsonl
      annotate a video file (audio kept), with a progress bar and ETA
  python -m realtime --image group.jpg --output group_emotions.jpg
      annotate a photo
  python -m realtime photos/ --output annotated/ --results photos.csv
      every image and video in a folder; outputs keep the file names (videos become .mp4)
  python -m realtime dataset/ --recursive --output annotated/ --results dataset.csv
      its subfolders too: results name each file by its path in the folder (happy/0001.jpg),
      and annotated/ gets the same subfolders
  python -m realtime --demo --output demo.mp4
      a short clip built from a sample face photo, no camera or file needed

Without --output nothing is written except --results; a summary of the faces is printed at the end.
What was analysed is always kept: outputs are written as the run goes (a killed run leaves a
playable video and the rows up to its last second) and are finished whatever ends the run.

exit codes:
  0    done: every frame asked for analysed, nothing lost
  1    failed part way (e.g. disk full): outputs kept up to the failure, the error says why
  2    bad input or options, refused before any work: nothing written
  3    done with problems: damaged stretches skipped, a video cut short, a camera lost, files of a
       folder (or subfolders, with --recursive) that could not be read, files whose output could not be
       written whole (or found no room for the video's final rewrite); the summary lists them and what
       each keeps (a folder run stops, with 1, when the disk is full for a second file in a row)
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM (kill, timeout, docker stop); 129 by SIGHUP
       (terminal closed): outputs finished and kept, summary printed
"""


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2, without a usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def fraction_type(below_one: bool):
    """Parser for a number in [0, 1], or in [0, 1) when ``below_one``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (0.0 <= value < 1.0 if below_one else 0.0 <= value <= 1.0):
            raise argparse.ArgumentTypeError(f"{value:g} is not in [0, 1{')' if below_one else ']'}")
        return value
    return parse


def detection_score_type(text: str) -> float:
    """Parser for a minimum face detection score: LOWEST_MIN_CONFIDENCE (0.5) to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not LOWEST_MIN_CONFIDENCE <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is not in [{LOWEST_MIN_CONFIDENCE:g}, 1]: MediaPipe's face "
                                         f"detector reports no face scored under {LOWEST_MIN_CONFIDENCE:g}")
    return value


def positive_int_type(text: str) -> int:
    """Parser for a whole number of at least 1 (argparse type)."""
    if not text.isdecimal() or int(text) < 1:  # (isdigit() takes "²", which int() does not)
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def threads_type(text: str) -> int:
    """Parser for a number of threads: a whole number from 1 to the machine's CPU cores (argparse type)."""
    try:
        return check_threads(positive_int_type(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def seconds_type(positive: bool):
    """Parser for a number of seconds (argparse type): above 0 when ``positive``, else 0 or more."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not ((0 < value) if positive else (0 <= value)) or not value < MAX_SECONDS:
            raise argparse.ArgumentTypeError(f"{text} is not a {'positive ' if positive else ''}number of seconds"
                                             f"{'' if positive else ' (0 or more)'}")
        return value
    return parse


def frames_per_second(text: str) -> float:
    """Parser for a rate of frames a second (argparse type): a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of frames a second: {text!r}") from None
    if not 0 < value <= MAX_SAMPLE_FPS:
        raise argparse.ArgumentTypeError(f"{text} is not a number of frames a second above 0 and at most {MAX_SAMPLE_FPS}")
    return value


def _camera(text: str) -> int | str:
    """A camera index (digits) or a stream URL."""
    if "://" in text:
        try:
            return check_stream_url(text)
        except SourceError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"camera must be an index like 0 or a stream URL like rtsp://host/path, "
                                         f"got {text!r}")
    return int(text)


def _path(text: str) -> Path:
    """A path (argparse type) with ``~`` expanded, as a shell would: so that an output given as ``~/a.jpg``
    is known to be the input ``~/a.jpg`` however the two were quoted. An empty one is refused (it would be ".")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text).expanduser()


def _file(text: str) -> Path:
    """A file's path (argparse type); a stream's address is refused, its password hidden."""
    if is_stream_url(text):
        raise argparse.ArgumentTypeError(f"{redacted(text)}: a stream's address, not a file: give it to --camera")
    return _path(text)


def version_report() -> str:
    """The package's version, the shipped model's figures from its metadata, and the libraries that do the work:
    what a bug report needs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from realtime import __version__
    from realtime.classifier import EmotionClassifier

    try:
        classifier = EmotionClassifier(threads=1)
        facts = classifier.metadata.facts
        figures = ", ".join(part for part in (
            facts.get("precision"), f"{facts['parameters']:,} parameters" if "parameters" in facts else None,
            f"trained on {facts['dataset']}" if "dataset" in facts else None) if part)
        if "publictest_accuracy" in facts:
            figures += (f"; PublicTest accuracy {facts['publictest_accuracy']:.1%}, "
                        f"{facts['publictest_accuracy_flip_tta']:.1%} with flip averaging")
        model = f"{classifier.model_path} ({figures})"
    except EmotionTracerError as error:
        model = str(error)

    def installed(*names: str) -> str:
        for name in names:
            with suppress(PackageNotFoundError):
                return version(name)
        return "not installed"

    libraries = ", ".join(f"{label} {installed(*names)}" for label, names in (
        ("onnxruntime", ("onnxruntime",)), ("mediapipe", ("mediapipe",)),
        ("opencv", ("opencv-python", "opencv-python-headless", "opencv-contrib-python")), ("av", ("av",))))
    return f"emotion-tracer {__version__}\nmodel: {model}\n{libraries}, Python {platform.python_version()}"


class VersionAction(argparse.Action):
    """--version: print version_report() and exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version, the shipped model's accuracy and the libraries' versions, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_report())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render --help)."""
    parser = OneLineErrorParser(
        prog="python -m realtime",
        description="Emotion Tracer: finds faces (MediaPipe) and classifies their emotions (an ONNX CNN\n"
                    "trained on FER2013) in a live camera, a video file, a photo or a whole folder.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    source = parser.add_argument_group("source (exactly one)").add_mutually_exclusive_group(required=True)
    source.add_argument("input", nargs="?", metavar="SOURCE",
                        help="a video, a photo, a folder of them, a camera index (digits, unless a file or "
                             "folder of that name is here) or a stream URL")
    source.add_argument("--camera", type=_camera, metavar="INDEX|URL",
                        help="camera index, usually 0, or a network camera / live stream URL: rtsp://, "
                             "http(s):// (MJPEG, HLS), udp://, tcp://, srt://")
    source.add_argument("--video", type=_file, metavar="PATH", help="a video file (mp4, mov, mkv, webm, avi...)")
    source.add_argument("--image", type=_file, metavar="PATH", help="a photo (jpg, png, webp, bmp, tif...)")
    source.add_argument("--demo", action="store_true",
                        help="a short built-in clip of a sample face, to try it without a camera")
    folders = parser.add_argument_group("folders")
    folders.add_argument("--recursive", action="store_true",
                         help="a folder's subfolders too (hidden ones skipped); results name each file by its path "
                              "in the folder, and the output folder gets the same subfolders")

    output = parser.add_argument_group("outputs")
    output.add_argument("--output", "-o", type=_path, metavar="PATH",
                        help="annotated result: an .mp4 for camera/video/demo, an image file "
                             f"({', '.join(IMAGE_OUTPUT_SUFFIXES)}) for a photo, a folder for a folder")
    output.add_argument("--results", "-r", type=_path, metavar="PATH",
                        help="one row per face per frame: .csv or .jsonl (box, id, label, confidence, "
                             "probability of each emotion)")
    output.add_argument("--faceless-frame-rows", action="store_true",
                        help="in --results, also a row for each analysed frame (or photo) without faces: its "
                             "source, frame and time, the face columns empty (frames not analysed have none)")
    display = output.add_mutually_exclusive_group()
    display.add_argument("--show", action="store_true",
                         help="show a live window for files too (default: only for the camera)")
    display.add_argument("--no-display", action="store_true",
                         help="never open a window, even for the camera (automatic when there is no display)")

    analysis = parser.add_argument_group("analysis")
    analysis.add_argument("--detector", choices=DETECTOR_CHOICES,
                          help="face detector: 'short' for faces within ~2 m (fastest), 'full' for faces up "
                               "to ~5 m, 'auto' for both plus faces cut by the frame's edge and close-ups "
                               "(default: short for a camera or live stream, auto otherwise)")
    analysis.add_argument("--whole-image", action="store_true",
                          help="each image (or frame) is one face already, e.g. a face crop: classify it "
                               "whole, without face detection (small images where no face is found are "
                               "taken whole anyway, see --small-images-whole)")
    analysis.add_argument("--small-images-whole", action=argparse.BooleanOptionalAction,
                          help=f"a photo at most {WHOLE_IMAGE_MAX_SIDE} px on its longer side in which no face is "
                               "found is taken whole, as a face crop (FER2013-style), and the summary counts "
                               "them; --no-small-images-whole gives it no face, e.g. for thumbnails of scenes, "
                               "logos or icons (default: on)")
    analysis.add_argument("--min-confidence", type=detection_score_type, metavar="P",
                          help=f"minimum face detection score, {LOWEST_MIN_CONFIDENCE:g}-1 (the detector reports "
                               f"none lower); lower it (e.g. to {LOWEST_MIN_CONFIDENCE:g}) for small or dim faces, at "
                               f"the cost of false faces (default: {DEFAULT_MIN_CONFIDENCE})")
    analysis.add_argument("--smooth", type=fraction_type(below_one=True), default=0.6, metavar="S",
                          help="how much each face's emotion follows its past: the weight of the past per "
                               "1/30 s, at any frame rate, 0 <= S < 1; 0 turns smoothing off (default: 0.6)")
    analysis.add_argument("--model", type=_path, metavar="PATH",
                          help="exported .onnx emotion model (default: the INT8 model shipped in the "
                               "package, realtime/model/emotion_cnn_int8.onnx)")
    analysis.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=True,
                          help="also classify each face mirrored and average the two, in the same batch: "
                               "more accurate (--version prints the shipped model's FER2013 PublicTest "
                               "accuracy with and without) for twice the (small) emotion model work; "
                               "--no-flip-tta turns it off (default: on)")
    analysis.add_argument("--roll-correction", action=argparse.BooleanOptionalAction,
                          help=f"turn a head tilted by more than {ROLL_TOLERANCE:g} degrees (its eye line) towards upright in "
                               "its crop before classifying; --no-roll-correction crops faces as they are "
                               "(default: on)")
    analysis.add_argument("--threads", type=threads_type, default=1, metavar="N",
                          help="CPU threads for the emotion model; one leaves the other cores to video "
                               "decoding and encoding, which run alongside; at most the machine's cores (default: 1)")
    analysis.add_argument("--max-frames", type=positive_int_type, metavar="N",
                          help="stop after N frames of each source (analysed frames, with --sample-fps)")
    analysis.add_argument("--sample-fps", type=frames_per_second, metavar="N",
                          help="analyse at most N frames a second of a video or camera (and a video's last "
                               "frame), e.g. 5 for a long video; the others are read and skipped, and the "
                               "annotated video and results hold the frames analysed, at their own times "
                               "(default: every frame)")
    cameras = parser.add_argument_group("cameras (local and network)")
    cameras.add_argument("--reconnect-for", type=seconds_type(positive=False), metavar="SECONDS",
                         help=f"how long a camera that stalls (no frame for {CAMERA_FRAME_TIMEOUT_S:g} s) or goes "
                              "away is reopened (streams with back-off) before the run ends, keeping what was "
                              f"recorded; 0 gives up at once (default: {CAMERA_RECONNECT_S:g} for a local camera, "
                              f"{DEFAULT_RECONNECT_FOR_S:g} for a stream)")
    cameras.add_argument("--open-timeout", type=seconds_type(positive=True), metavar="SECONDS",
                         help=f"give up when a stream sends no frame for this long after opening "
                              f"(default: {DEFAULT_OPEN_TIMEOUT_S:g})")
    return parser


@dataclass
class Job:
    """One source to process and where its outputs go."""

    kind: str  # "camera", "video", "image" or "demo"
    spec: int | Path | None
    output: Path | None
    name: str | None = None  # a folder's file: its path within the folder (its source in the results and summary)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths name one file: the same path, a symbolic link or a hard link to it."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _file_identity(path: Path) -> tuple[int, int]:
    """(device, inode): the same for every link to one file."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _plan(args: argparse.Namespace, notes: list[str] | None = None,
          unread: list[str] | None = None) -> tuple[list[Job], bool]:
    """The jobs to run and whether the input is a folder; checks every output path before any work. What a folder
    holds but the run leaves out is said in a line added to ``notes``; its subfolders that could not be read, in
    lines added to ``unread`` (problems of the run)."""
    camera = args.camera if args.camera is not None or args.input is None else parse_source(args.input)
    if args.open_timeout is not None and not isinstance(camera, str):
        raise SourceError("--open-timeout applies to a network camera only (--camera URL)")
    if args.reconnect_for is not None and camera is None:
        raise SourceError("--reconnect-for applies to a camera only (--camera INDEX or URL)")
    named_file = args.video or args.image
    if named_file is not None and named_file.is_dir():
        raise SourceError(f"{named_file}: is a folder; give it as SOURCE, without --video or --image, "
                          "to analyse every photo and video in it")
    if args.camera is not None:
        jobs, folder = [Job("camera", args.camera, args.output)], False
    elif args.demo:
        jobs, folder = [Job("demo", None, args.output)], False
    elif args.video is not None:
        jobs, folder = [Job("video", args.video, args.output)], False
    elif args.image is not None:
        jobs, folder = [Job("image", args.image, args.output)], False
    else:
        spec = parse_source(args.input)
        if isinstance(spec, (int, str)):
            jobs, folder = [Job("camera", spec, args.output)], False
        elif spec.is_dir():
            jobs, folder = _folder_jobs(spec, args.output, args.recursive, notes, unread, args.results), True
        elif not spec.exists() and spec.suffix.lower() not in MEDIA_SUFFIXES:  # a photo, a video or a folder?
            raise SourceError(f"{spec}: no such file or folder", spec)
        else:
            jobs, folder = [Job(media_kind(spec), spec, args.output)], False
    if args.recursive and not folder:
        raise SourceError("--recursive applies to a folder only (SOURCE a folder)")
    if not folder:
        job = jobs[0]
        if job.output is not None:
            if job.kind == "video" and isinstance(job.spec, Path) and job.spec.suffix.lower() not in VIDEO_SUFFIXES \
                    and job.output.suffix.lower() in IMAGE_OUTPUT_SUFFIXES and not has_track(job.spec, "video"):
                # a file of unknown kind with a photo's output: the input is at fault, not the output's name
                raise SourceError(f"{job.spec}: neither a photo nor a video this program can read", job.spec)
            suffixes = IMAGE_OUTPUT_SUFFIXES if job.kind == "image" else VIDEO_OUTPUT_SUFFIXES
            check_output_path(job.output, suffixes)
            if isinstance(job.spec, Path) and job.spec.exists() and _same_file(job.spec, job.output):
                raise OutputError(f"{job.output}: is the input; choose another output file")
            if job.kind == "image" and (size := image_size(job.spec)) is not None:
                check_image_fits(job.output, *size)
    if args.results is not None:
        if folder and args.output is not None and not args.output.exists() \
                and args.results.parent.resolve() == args.output.resolve():  # into the folder the run makes
            check_output_suffix(args.results, RESULTS_SUFFIXES)  # the folder was checked by _folder_jobs
        else:
            check_output_path(args.results, RESULTS_SUFFIXES)
        for job in jobs:
            for other in (job.spec, job.output):
                if isinstance(other, Path) and other.exists() and _same_file(other, args.results):
                    raise OutputError(f"{args.results}: is also the input or the annotated output")
    return jobs, folder


# A folder run's output folder holds this file, which lists the outputs the program wrote there (which a rerun
# replaces), so that photos or videos of the user's own in it are told apart: a run would replace those with an
# output's name, and, in an output folder inside the folder analysed (left out of its runs), leave them out unsaid.
OUTPUT_FOLDER_MARK = ".emotion-tracer-outputs"
MARK_HEADER = ("# Annotated outputs of Emotion Tracer (python -m realtime) in this folder, one a line: a rerun replaces "
               "them, and a folder run of a folder around this one leaves them out.\n")


def _inside(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies inside the folder ``outer``, as the paths read or as their links resolve."""
    return outer.absolute() in inner.absolute().parents or outer.resolve() in inner.resolve().parents


def _marked_outputs(output: Path) -> set[str]:
    """The outputs (paths within ``output``) that OUTPUT_FOLDER_MARK lists; none without it."""
    try:
        lines = (output / OUTPUT_FOLDER_MARK).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return set()
    return {_unescaped(line) for line in lines if line and not line.startswith("#")}


# What ends a line for str.splitlines: escaped in OUTPUT_FOLDER_MARK's names, as backslashes and a first "#" are
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _escaped(name: str) -> str:
    """``name`` as one line of OUTPUT_FOLDER_MARK: backslashes doubled, line breaks as \\uXXXX, a first "#" (a
    comment line) as \\#."""
    escaped = "".join(f"\\u{ord(c):04x}" if c in LINE_BREAKS else c for c in name.replace("\\", "\\\\"))
    return "\\" + escaped if escaped.startswith("#") else escaped


def _unescaped(line: str) -> str:
    """The name an OUTPUT_FOLDER_MARK line holds (``_escaped``'s inverse)."""
    return re.sub(r"\\(\\|#|u[0-9a-f]{4})",
                  lambda match: chr(int(match[1][1:], 16)) if match[1][0] == "u" else match[1], line)


def _outputs_listed() -> Callable[[Path], bool]:
    """A test of whether a file is this program's output: listed in the OUTPUT_FOLDER_MARK of its folder or of a folder
    above it (a run into a part of an earlier run's output folder, or one around it); the lists are read once."""
    lists: dict[Path, set[str]] = {}

    def listed(path: Path) -> bool:
        path = path.absolute()
        for above in path.parents:
            if above not in lists:
                lists[above] = _marked_outputs(above)
            if path.relative_to(above).as_posix() in lists[above]:
                return True
        return False

    return listed


def _check_output_folder_holds_no_own_files(output: Path, folder: Path, recursive: bool, targets: list[Path]) -> None:
    """Refuse an existing output folder that holds files this program did not write there (not in an
    OUTPUT_FOLDER_MARK: the user's own) which the run would replace (``targets``: the outputs' paths) or, inside
    ``folder``, photos or videos it would leave out (``recursive``: the run enters the folder's subfolders, but not
    this one)."""
    if not output.is_dir():
        return
    listed = _outputs_listed()
    if not _inside(output, folder):
        own = [target for target in targets if target.exists() and not listed(target)]
        if own:
            raise OutputError(
                f"{output}: the output folder holds files of the outputs' names that are not this program's outputs "
                f"({_some_of([path.relative_to(output).as_posix() for path in own], 3)}): the run would replace "
                "them; if they are outputs of a version before 0.21 (or of a run of one file), remove them, else choose "
                "another output folder")
        return
    own: list[Path] = []
    if recursive:
        with suppress(SourceError):  # a folder that cannot be read: its outputs say so
            media, harm = scan_folder(output, recursive=True).media, "leave them out, and replace those of an output's name"
            own = [path for path in media if not listed(path)]
    else:
        own, harm = [target for target in targets if target.exists() and not listed(target)], "replace them"
    if own:
        raise OutputError(
            f"{output}: the output folder is inside {folder} and holds photos or videos that are not this program's "
            f"outputs ({_some_of([path.relative_to(output).as_posix() for path in own], 3)}): the run would {harm}; "
            "if they are outputs of a version before 0.18, remove them, else choose another output folder")


def _mark_output_folder(output: Path, targets: list[Path]) -> None:
    """List the run's outputs (``targets``) in the OUTPUT_FOLDER_MARK of the output folder, with those listed before
    (``_check_output_folder_holds_no_own_files``); a list that cannot be written leaves the folder as it was (its
    outputs then say why they cannot be)."""
    written = _marked_outputs(output) | {target.relative_to(output).as_posix() for target in targets}
    with suppress(OSError):
        (output / OUTPUT_FOLDER_MARK).write_text(MARK_HEADER + "".join(f"{_escaped(name)}\n" for name in sorted(written)),
                                                 encoding="utf-8", errors="surrogateescape")


def _folder_jobs(folder: Path, output: Path | None, recursive: bool = False,
                 notes: list[str] | None = None, unread: list[str] | None = None,
                 results: Path | None = None) -> list[Job]:
    """One job per image or video in ``folder`` (and, with ``recursive``, in its subfolders); outputs go to the
    ``output`` folder under the same path (its subfolders are made as the run reaches them). A line on what is
    left out (subfolders, files of unknown kind) is added to ``notes``, one per subfolder that cannot be read
    (whose files are lost to the run) and per image or video name that is no file to read (a broken link) to
    ``unread``. The ``results`` file, when in the folder (an earlier run's), is no file of unknown kind to it."""
    skip = [output] if output is not None else []  # an output folder inside the input is no input
    contents = scan_folder(folder, recursive, skip)
    if results is not None and results.exists():
        contents.unknown = [path for path in contents.unknown if not _same_file(path, results)]
    if not contents.media:
        below = "" if recursive else media_below_hint(folder, contents, "use --recursive", skip)
        raise SourceError(f"folder {folder}: no images or videos in it{below}", folder)
    files = contents.media
    if notes is not None and (left_out := _left_out(folder, contents)):
        notes.append(f"note: {left_out}")
    if unread is not None:
        unread.extend(f"subfolder {printable(path.relative_to(folder).as_posix())}: cannot read it ({reason}); "
                      "its files were not analysed" for path, reason in contents.unreadable)
        unread.extend(f"{printable(path.relative_to(folder).as_posix())}: {printable(what)}"
                      for path, what in contents.not_files)
    if output is not None:
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output}: is a file; give a folder for the outputs of a folder")
        if not output.exists() and output.suffix.lower() in (*VIDEO_OUTPUT_SUFFIXES, *IMAGE_OUTPUT_SUFFIXES,
                                                             *RESULTS_SUFFIXES):
            raise OutputError(f"{output}: looks like a file name; give a folder for the outputs of a folder")
        if not output.parent.is_dir():
            raise OutputError(f"{output}: folder {output.parent} does not exist")
        if output.exists() and _same_file(output, folder):
            raise OutputError(f"{output}: is the input folder; choose another output folder")
        check_output_folder(output)
    jobs, targets, made = [], {}, set()
    inputs = {_file_identity(path) for path in files}  # hard links to them included
    for path in files:
        kind = media_kind(path)
        within = path.relative_to(folder)
        name = within.as_posix()
        target = None
        if output is not None:
            if kind == "image":
                suffix = annotated_photo_suffix(path)
            else:
                suffix = ".mp4"
            target = output / within.parent / (path.stem + suffix)
            check_name_length(target, f"rename {printable(name)}, whose output it is")
            _check_output_subfolders(output, within.parent, name, made)
            if target.is_dir():
                raise OutputError(f"{target}: is a folder, where the output for {name} would go; move it or "
                                  "choose another output folder")
            key = target.relative_to(output).as_posix()
            if key in targets:
                raise OutputError(f"{target}: would be written for both {targets[key]} and {name}; rename one of them")
            targets[key] = name
            if target.exists() and _file_identity(target) in inputs:
                raise OutputError(f"{target}: is one of the inputs; choose another output folder")
        jobs.append(Job(kind, path, target, name))
    for key, name in targets.items():  # an output file where another file's output needs a subfolder: x.jpg, x.jpg/
        if key in made:
            raise OutputError(f"{output / key}: would be both the output for {name} and a folder of outputs; "
                              "rename one of them")
    if output is not None:
        _check_output_folder_holds_no_own_files(output, folder, recursive, [job.output for job in jobs])
        if notes is not None and (earlier := _earlier_outputs(output, set(targets), recursive)):
            notes.append(f"note: {output} holds {len(earlier)} output{'s' * (len(earlier) > 1)} of an earlier run that "
                         f"this run does not write (their inputs are gone, or in another folder), left as they are: "
                         f"{_some_of(earlier)}")
    return jobs


def _earlier_outputs(output: Path, targets: set[str], recursive: bool) -> list[str]:
    """The outputs an earlier run listed in ``output`` (paths within it; in its subfolders only when ``recursive``)
    that are still there and that this run, writing ``targets``, does not replace."""
    return sorted(name for name in _marked_outputs(output) - targets
                  if (recursive or "/" not in name) and (output / name).is_file())


def _check_output_subfolders(output: Path, subfolder: Path, name: str, made: set[str]) -> None:
    """Refuse, before any work, a file in the way of a subfolder that the output of ``name`` (a folder's file at
    ``subfolder`` within the folder) needs in ``output``, or one that cannot be written in; ``made`` gathers the
    subfolders already checked (paths within ``output``)."""
    for depth in range(1, len(subfolder.parts) + 1):
        key = Path(*subfolder.parts[:depth]).as_posix()
        if key in made:
            continue
        made.add(key)
        path = output / key
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path}: is a file, where the subfolder for the output of {name} would go; move it "
                              "or choose another output folder")
        if path.is_dir():  # one to be made is as writable as the output folder, checked already
            check_output_folder(path)


def _make_output_folder(job: Job) -> None:
    """Make the subfolders of the output folder that ``job``'s output goes in (a folder run with --recursive), as
    the run reaches it; a failure is that file's output failure. Making a folder is atomic, and one made meanwhile
    by someone else is used."""
    if job.name is None or job.output is None or job.output.parent.is_dir():
        return
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{job.output}: cannot create the folder {job.output.parent} ({one_line(error)}); nothing "
                          "of it was written", job.output) from error


def _some_of(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` of ``names``, then how many more."""
    listed = ", ".join(printable(name) for name in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _left_out(folder: Path, contents: FolderContents) -> str:
    """What a folder run leaves out of ``folder``, in words (a few names of each, then how many more), or ""."""

    def names(paths: list[Path]) -> str:
        return _some_of([path.relative_to(folder).as_posix() for path in paths])

    def count(number: int, what: str) -> str:
        return f"{number} {what}{'s' * (number != 1)}"

    parts = []
    if contents.subfolders:
        parts.append(f"{count(len(contents.subfolders), 'subfolder')} not analysed (use --recursive): "
                     f"{names(contents.subfolders)}")
    if contents.unknown:
        parts.append(f"{count(len(contents.unknown), 'file')} of unknown kind skipped: {names(contents.unknown)}")
    if contents.repeated:
        parts.append(f"{count(len(contents.repeated), 'folder link')} skipped (its folder is analysed already): "
                     f"{names(contents.repeated)}")
    return "; ".join(parts)


def _detect_as_in_a_video_file(analyzer: EmotionAnalyzer) -> None:
    """Give ``analyzer``, made for a camera, the detector of video files ("auto")."""
    if analyzer.detector.model_range != "auto":
        min_confidence = analyzer.detector.min_confidence
        analyzer.detector.close()
        analyzer.detector = FaceDetector("auto", min_confidence)


def _run_job(job: Job, analyzer: EmotionAnalyzer, annotator: EmotionAnnotator, results_writer,
             summary: RunSummary, args: argparse.Namespace, show_window: bool, source_name: str | None,
             notes: list[str], latencies: list[LatencyMeter], reached: dict | None = None) -> OutputError | None:
    """Process one source into its outputs, which are finished (kept) whatever ends it; returns the annotated
    video's ``rewrite_failure`` (kept whole, but its final rewrite failed, e.g. for want of space), if any.

    ``notes`` are printed (and emptied) once the source is open; ``results_writer()`` gives the
    results writer, created then. A source that fails part way, and what a source reports as lost
    (``issues``), become warnings and problems in ``summary``. A SourceError means the source
    could not be opened: nothing of it was analysed. A live source that tells its capture clock
    gets a latency meter, added to ``latencies``. ``reached`` gets how far into a video file the analysis came
    (``seconds``, of ``length`` when known), for a stop to say what was left.
    """
    with ExitStack() as stack:
        source_options = {name: value for name in ("open_timeout", "reconnect_for")
                          if (value := getattr(args, name)) is not None}
        source = open_source(job.spec, job.kind, name=job.name, **source_options)
        stack.callback(_close_after_its_outputs, source)
        if job.kind == "camera" and not source.live and args.detector is None and not args.whole_image:
            _detect_as_in_a_video_file(analyzer)  # a video file on a web server: its faces need not be close
        _make_output_folder(job)  # once the file is known to open: no empty subfolder for a file skipped
        if getattr(source, "frames_in_file", 1) > 1:  # an animated GIF/WebP or a multi-page TIFF
            as_video = " (--video analyses them all)" if job.spec.suffix.lower() in VIDEO_SUFFIXES else ""
            notes.append(f"note: {job.name or job.spec} holds {frames_held(source.frames_in_file)}; only the first is "
                         f"analysed{as_video}")
        for note in notes:
            _say(note)
        notes.clear()
        meter = None
        if source.live and getattr(source, "clock_origin", None) is not None:
            # (a served file's frames are timed by the file, not by when they came: no latency to measure)
            meter = LatencyMeter(source.clock_origin)
            latencies.append(meter)
        video_writer = None
        if job.output is not None and job.kind != "image":
            video_writer = stack.enter_context(H264VideoWriter(job.output, source.info, audio_source=source.audio_path,
                                                               live=source.live))
        # the latency meter first (it measures until the annotated frame is ready), then rows before the video
        sinks = [sink for sink in (meter, summary, results_writer(), video_writer) if sink is not None]
        window = stack.enter_context(DisplayWindow(WINDOW_TITLE)) if show_window else None
        if window is not None:
            sinks.append(window)
        name = source_name or source_label(source)
        last, done = None, 0
        if reached is not None:
            total = source.info.total_frames
            reached.update(seconds=0.0, length=total / source.info.fps if total else None)
        try:
            for last in process_source(source, analyzer, sinks=sinks, annotator=annotator, source_name=source_name,  # noqa: B007 (the last frame is used after the loop)
                                       max_frames=args.max_frames, progress=job.kind != "image",
                                       sample_fps=args.sample_fps):
                done += 1
                if reached is not None:
                    reached["seconds"] = last.frame.timestamp
            if reached is not None:
                reached["whole"] = True  # analysed to its end (or --max-frames): a stop now only finishes outputs
        except SourceError as error:  # failed part way: what was analysed before is kept
            _problem(summary, f"{name}: stopped after {done} frame{'s' * (done != 1)} ({error}); "
                              "the outputs keep those frames")
        finally:  # also when interrupted: what was lost before is reported
            for issue in getattr(source, "issues", ()):
                _problem(summary, issue)
            summary.add_outages(getattr(source, "outages", 0), getattr(source, "silent_seconds", 0.0))
        if job.kind == "image" and job.output is not None and last is not None:
            write_image(job.output, last.annotated)
        if window is not None and job.kind == "image" and last is not None:
            while window.show(last.annotated):  # a photo stays up until q/Esc or the window is closed
                time.sleep(0.05)
    return video_writer.rewrite_failure if video_writer is not None else None


def _close_after_its_outputs(source) -> None:
    """Close a source, last of a job's (its outputs are finished by then): a Ctrl-C after the first stop, while a
    stream's reader takes up to its read timeout to end, only cuts that wait short; nothing is broken off."""
    try:
        source.close()
    except FinishingBrokenOff:
        pass


def _output_failure(job: Job, error: OutputError, frames: int, results: Path | None, reached: dict) -> str | None:
    """The line for a folder's file whose annotated output failed (what the output keeps is in ``error``), or
    None when ``error`` is about another output (the shared results file, a window).

    ``frames`` were analysed (their rows are in the results file); ``reached``: how far into the file (``_run_job``).
    """
    if job.output is None or error.path is None or Path(error.path) != job.output:
        return None
    rows = ", their rows are in the results file" if results is not None and frames else ""
    cut = _cut_off(job, reached)
    return f"{job.name or job.spec.name}: {error} ({frames} frame{'s' * (frames != 1)} analysed{rows}" + (
        f"; it stopped {cut}, the rest was not analysed)" if cut else ")")


def _cut_off(job: Job, reached: dict) -> str | None:
    """Where the analysis of a video file was cut off (``reached``: how far it got, from ``_run_job``), "at 39.9 s of
    240.0 s", or None for a video analysed to its end (or ``--max-frames``), a photo or a camera."""
    if job.kind != "video" or "seconds" not in reached or reached.get("whole"):
        return None
    length = reached["length"]
    return f"at {reached['seconds']:.1f} s" + (f" of {length:.1f} s" if length else "")


def _cut_off_note(job: Job, reached: dict, frames: int, how: str) -> str | None:
    """The summary's line on a video file whose analysis was cut off (``how``: "interrupted", "stopped by the error
    below") after ``frames`` analysed, or None (``_cut_off``)."""
    cut = _cut_off(job, reached)
    return cut and (f"{job.name or job.spec.name}: {how} {cut}, after {frames} frame{'s' * (frames != 1)} analysed; "
                    "the rest was not analysed")


def _raise_stop(stops: list[int]) -> None:
    """Raise the first stop received (Ctrl-C, SIGTERM, SIGHUP), if any: one held back while a failing output was
    finished gives way to that OutputError, and must still end a folder run."""
    if stops:
        raise Stopped(stops[0]) if stops[0] in STOP_SIGNALS else KeyboardInterrupt()


def _problem(summary: RunSummary, problem: str, output_failed: bool = False) -> None:
    """A warning now and a line in the summary's problems."""
    summary.note(problem, output_failed)
    _say(f"warning: {summary.problems[-1]}")


def _say(line: str) -> None:
    """A line on stderr, above any progress bar, its control characters escaped (a file name's ESC sequences)."""
    with suppress(OSError):  # a terminal closed (SIGHUP) must not turn a warning into a failure
        tqdm.write(printable(line), file=sys.stderr)


def _saved(args: argparse.Namespace, jobs: list[Job], folder: bool, since: float) -> str | None:
    """The summary's line on where the outputs the run wrote (modified ``since``, its start) are ("saved: out.mp4
    (annotated video), rows.csv (results)"), or None when it wrote none."""
    def written(path: Path | None) -> bool:
        try:
            return path is not None and path.is_file() and path.stat().st_mtime >= since - 1  # (coarse file times)
        except OSError:
            return False

    saved = []
    if folder and args.output is not None:
        files = sum(written(job.output) for job in jobs)
        if files:
            saved.append(f"{printable(str(args.output))}{os.sep} ({files} annotated file{'s' * (files > 1)})")
    elif written(args.output):
        saved.append(f"{printable(str(args.output))} (annotated {'photo' if jobs[0].kind == 'image' else 'video'})")
    if written(args.results):
        saved.append(f"{printable(str(args.results))} (results)")
    return f"saved: {', '.join(saved)}" if saved else None


def _report(summary: RunSummary, latencies: list[LatencyMeter], saved: str | None = None) -> None:
    """Print the run's summary, the latency of live sources, and where the outputs are (``saved``) (to no one when
    stdout is closed: ``| head``, ``>&-``; a stdout that cannot take it, such as a full disk, gets a warning: the
    outputs are as written)."""
    if sys.stdout is None:  # started with stdout closed
        return
    try:
        print(summary.format())
        for meter in latencies:
            if meter.frames:
                print(meter.format())
        if saved is not None:
            print(saved)
        sys.stdout.flush()
    except (OSError, ValueError) as error:  # the outputs are as written; only the report has no reader
        with suppress(OSError, ValueError):  # and Python's flush at exit none either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if not isinstance(error, BrokenPipeError):
            with suppress(OSError, AttributeError):
                print(f"warning: the summary could not be printed ({one_line(error)})", file=sys.stderr)


class _AboveProgressBars(logging.Handler):
    """The library's warnings (a stream lost and reopened) on their own line, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        with suppress(OSError):  # a terminal closed (SIGHUP) must not turn a warning into a failure
            tqdm.write(printable(self.format(record)), file=sys.stderr)


def _show_library_warnings() -> None:
    logger = logging.getLogger("emotion_tracer")
    if not any(isinstance(handler, _AboveProgressBars) for handler in logger.handlers):
        logger.addHandler(_AboveProgressBars(logging.WARNING))  # Python's last-resort handler no longer prints


def _error(message: str) -> None:
    print(printable(f"error: {' '.join(str(message).split())}"), file=sys.stderr)


def main(argv: list[str] | None = None, program_ends: bool = False) -> int:
    """Run the command line; returns the exit code (see EXAMPLES). ``program_ends``: the program ends with this
    run, so Ctrl-C is left ignored once it has ended (``program_main``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.whole_image:
        detection_options = [option for option, value in (("--detector", args.detector),
                                                          ("--min-confidence", args.min_confidence),
                                                          ("--[no-]roll-correction", args.roll_correction),
                                                          ("--[no-]small-images-whole", args.small_images_whole))
                             if value is not None]
        if detection_options:
            parser.error(f"{', '.join(detection_options)}: face detection option{'s' * (len(detection_options) > 1)}, "
                         "which --whole-image turns off")
    if args.faceless_frame_rows and args.results is None:
        parser.error("--faceless-frame-rows: rows of the results file, which --results names")
    args.min_confidence = DEFAULT_MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence
    args.roll_correction = args.roll_correction is not False
    args.small_images_whole = args.small_images_whole is not False
    try:
        notes = []  # printed once the first source is open, so bad input gets only its error line
        unread = []  # a folder's subfolders that could not be read: problems, once the model is loaded
        jobs, folder = _plan(args, notes, unread)
        claims = _claim_outputs(args, jobs, folder)
        live = jobs[0].kind == "camera"
        detector_range = args.detector or ("short" if live else "auto")
        want_window = args.show or (live and not args.no_display)
        show_window = want_window and display_available()
        if want_window and not show_window:
            notes.append("note: no display available, running without a window")
        if live and not show_window:
            notes.append("note: press Ctrl-C to stop")
    except EmotionTracerError as error:
        _error(error)
        return EXIT_USAGE
    _show_library_warnings()
    try:
        with stop_signals(program_ends) as stops:
            return _run(args, jobs, folder, detector_range, show_window, notes, unread, stops)
    finally:
        for claim in claims:
            claim.release()


def _claim_outputs(args: argparse.Namespace, jobs: list[Job], folder: bool) -> list[OutputClaim]:
    """Locks on the run's outputs (a folder run's output folder, not each file in it) and results file, held until
    it ends; OutputError, before any work, when another run is writing one of them."""
    outputs = [args.output] if folder else [job.output for job in jobs]
    # a single file's folder is claimed shared: other files may be written in it, but no folder run may claim it
    folders = [] if folder or args.output is None else [args.output.parent]
    claims = []
    try:
        for path, shared in [*((path, False) for path in [*outputs, args.results]), *((path, True) for path in folders)]:
            if path is not None and (claim := claim_output(path, shared)) is not None:
                claims.append(claim)
    except OutputError:
        for claim in claims:
            claim.release()
        raise
    return claims


def program_main() -> int:
    """``main()`` as a program (``python -m realtime``, ``emotion-tracer``): once the run has ended (outputs
    finished) a Ctrl-C, such as a second press landing while Python shuts down, changes neither the exit code
    nor prints a traceback (Python's shutdown resets the handler, and the signal would kill the process)."""
    try:
        code = main(program_ends=True)
    except KeyboardInterrupt:  # before the run began (reading the arguments, listing a folder)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return EXIT_INTERRUPTED
    # Stopped while a stream was being opened: Python's shutdown would meet its thread. Stopped by a signal: about
    # one run in 30 stopped within its first frames ended by SIGINT after Python's shutdown (status -2, not 130),
    # with SIGINT ignored by then (tests/test_interrupts.py; none in 80 runs leaving this way).
    if stream_threads_alive() or code in (EXIT_INTERRUPTED, *(128 + number for number in STOP_SIGNALS)):
        logging.shutdown()
        with suppress(OSError, ValueError):  # a closed or broken stdout
            sys.stdout.flush()
        with suppress(OSError, ValueError):
            sys.stderr.flush()
        os._exit(code)  # the outputs are finished and closed: nothing is left for the shutdown to do
    return code


def _run(args: argparse.Namespace, jobs: list[Job], folder: bool, detector_range: str, show_window: bool,
         notes: list[str], unread: list[str], stops: list[int]) -> int:
    """Run the planned jobs; every ending finishes the outputs and prints the summary once work has begun.

    In a folder, a file that cannot be read is skipped, and a file whose annotated output fails part way
    (a full disk) keeps what was written of it: either is a warning and a line in the summary, and the run
    goes on with the next file (exit 3). So does a video kept whole but in its fragmented form, because no
    space was left for its final rewrite. When a second file in a row finds no space left (ENOSPC or a
    quota, at any stage of its output, the final rewrite included; only a file written whole in between
    shows there was room), the disk is taken to be full: the run stops there and fails (exit 1), as the
    files after it would fail alike. A failing results file, shared by all the files, and a stop
    (``stops``: Ctrl-C, SIGTERM, SIGHUP) end the whole run. A folder's subfolders that could not be read
    (``unread``) are problems of the run from its start.
    """
    summary = RunSummary(whole_image=args.whole_image)
    started = time.time()  # outputs modified since were written by this run
    latencies: list[LatencyMeter] = []
    begun = 0  # jobs begun: a stop leaves those after them not analysed
    running: tuple[Job, int] | None = None  # the job begun last, and the frames analysed before it
    reached: dict = {}  # how far into its video the job came (_run_job)
    try:
        with ExitStack() as stack:
            analyzer = stack.enter_context(EmotionAnalyzer(
                args.model, detector_range=detector_range, min_confidence=args.min_confidence,
                smoothing=args.smooth, flip_tta=args.flip_tta, threads=args.threads, whole_image=args.whole_image,
                roll_correction=args.roll_correction, small_images_whole=args.small_images_whole))
            annotator = EmotionAnnotator()
            gc.collect()
            gc.freeze()  # what is loaded stays for the run: the analyzer's periodic full collections pass over it
            stack.callback(gc.unfreeze)
            if folder:  # what it leaves out, before any file's warnings (a single source's notes wait until it opens)
                for note in notes:
                    _say(note)
                notes.clear()
            for problem in unread:
                _problem(summary, f"skipped {problem}")
            opened = []

            def results_writer() -> ResultsWriter | None:
                """The results file, created once the first source is open (bad input writes nothing)."""
                if args.results is not None and not opened:
                    opened.append(stack.enter_context(ResultsWriter(args.results, analyzer.classes,
                                                                      args.faceless_frame_rows)))
                return opened[0] if opened else None

            if folder and args.output is not None:
                args.output.mkdir(exist_ok=True)
                _mark_output_folder(args.output, [job.output for job in jobs])
            elif args.output is not None and (args.output.parent / OUTPUT_FOLDER_MARK).is_file():
                _mark_output_folder(args.output.parent, [args.output])  # one file into a folder run's output folder
            # whether the last file that was written, or failed to be, found no space (files skipped unread and
            # outputs failed for another reason are left out: they show neither a full disk nor room)
            out_of_space_before = False
            # a folder's files counted on a terminal (a video's own bar shows below it while it goes)
            files = stack.enter_context(tqdm(jobs, desc="files", unit="file", file=sys.stderr, dynamic_ncols=True,
                                             disable=None if folder and len(jobs) > 1 and sys.stderr else True))
            for index, job in enumerate(files):
                begun = index + 1
                frames_before = summary.frames
                running = job, frames_before
                try:
                    reached.clear()
                    rewrite_failure = _run_job(job, analyzer, annotator, results_writer, summary, args, show_window,
                                               job.name if folder else None, notes, latencies, reached)
                except SourceError as error:
                    if not folder:
                        raise
                    # one unreadable file does not stop a folder; named by its path in the folder, as the others
                    _problem(summary, f"skipped {str(error).replace(str(job.spec), job.name)}")
                    running = None  # (its line says what happened to it)
                    continue
                except OutputError as error:
                    if not folder or (failure := _output_failure(job, error, summary.frames - frames_before,
                                                                  args.results, reached)) is None:
                        raise
                    _raise_stop(stops)
                    _problem(summary, failure, output_failed=True)
                    failed, running = error, None  # (its line says where it stopped)
                else:
                    running = None  # ended: a later error stopped none of it
                    if not folder or rewrite_failure is None or not out_of_space(rewrite_failure):
                        out_of_space_before = False  # written whole: there was room
                        if rewrite_failure is not None:  # whole, and plays: said, but no problem
                            _say(f"warning: {rewrite_failure}")
                        continue
                    # the video is whole, but kept in its fragmented form: no room was left for its final rewrite
                    _problem(summary, _output_failure(job, rewrite_failure, summary.frames - frames_before,
                                                      args.results, reached))
                    failed = rewrite_failure
                if not out_of_space(failed):
                    continue
                if out_of_space_before:
                    left = len(jobs) - index - 1
                    not_analysed = f" ({left} more file{'s' * (left != 1)} not analysed)" if left else ""
                    raise OutputError(f"{args.output}: no space left for a second file in a row, so the run "
                                      f"stops{not_analysed}", args.output) from failed
                out_of_space_before = True
    except KeyboardInterrupt as stop:
        run_ended()
        name = signal.Signals(stop.signum).name if isinstance(stop, Stopped) else "Ctrl-C"
        with suppress(OSError):  # after SIGHUP the terminal may be gone; the exit code still tells
            if isinstance(stop, FinishingBrokenOff):
                stops = "Ctrl-C twice" if stop.first == signal.SIGINT else f"{signal.Signals(stop.first).name}, then Ctrl-C"
                print(f"\ninterrupted ({stops}): finishing the outputs was broken off; the video plays but may "
                      "lack up to its last second, which the summary and results count", file=sys.stderr)
            elif not summary.frames:
                print(f"\ninterrupted ({name}) before any frame was analysed", file=sys.stderr)
            else:
                print(f"\ninterrupted ({name}): outputs written so far are finished and kept", file=sys.stderr)
            if summary.frames and running is not None and \
                    (note := _cut_off_note(running[0], reached, summary.frames - running[1], "interrupted")):
                summary.note(note)
            if folder and begun < len(jobs):
                left = [job.name for job in jobs[begun:]]
                summary.note(f"{len(left)} file{'s' * (len(left) != 1)} of the folder not analysed (interrupted): "
                             f"{_some_of(left)}")
            if summary.frames or summary.problems:  # (a summary of nothing would only say "no faces found")
                _report(summary, latencies, _saved(args, jobs, folder, started))
        first = stop.first if isinstance(stop, FinishingBrokenOff) else getattr(stop, "signum", signal.SIGINT)
        return EXIT_INTERRUPTED if first == signal.SIGINT else 128 + first  # as the first stop asked
    except Exception as error:  # a failure while processing: outputs kept, one error line
        run_ended()
        if not summary.frames and isinstance(error, EmotionTracerError):
            _error(error)
            return EXIT_USAGE  # bad input found on opening it: nothing was written
        if summary.frames:
            if running is not None and (note := _cut_off_note(running[0], reached, summary.frames - running[1],
                                                               "stopped by the error below")):
                summary.note(note)
            _report(summary, latencies, _saved(args, jobs, folder, started))
        _error(error if isinstance(error, EmotionTracerError) else f"{type(error).__name__}: {error}")
        return EXIT_FAILED
    run_ended()
    _report(summary, latencies, _saved(args, jobs, folder, started))
    if summary.problems and not summary.frames:
        problems = len(summary.problems)
        _error(f"nothing could be analysed: {summary.problems[-1]}"
               + (f" (and {problems - 1} more problem{'s' * (problems > 2)} above)" if problems > 1 else ""))
        return EXIT_FAILED
    return EXIT_PARTIAL if summary.problems else EXIT_OK
