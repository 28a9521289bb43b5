"""Batch analysis of a corpus of videos on Ray, on one machine or a cluster, results in Parquet.

``python -m realtime.batch INPUT... --results DIR`` hands whole videos to Ray actors (one per core
by default), each of which loads the face detector and the emotion model once. Every video gets
``DIR/<stem>-<id>.parquet`` (the CSV's columns; ``<id>``: 8 hex digits of the video's absolute
path, so equal names in two folders do not collide) and, once that file is in place, a completion
marker ``DIR/_done/<stem>-<id>.json`` written atomically. A rerun skips videos that have both, redoes
the rest and never rewrites finished results. ``pandas.read_parquet(DIR)`` reads the whole corpus
(it ignores names starting with ``_`` or ``.``). ``DIR/_manifest.json`` lists the last run's videos,
with the error of each one that failed; ``DIR/_batch.json`` keeps the analysis settings, so that a
rerun with other settings is refused instead of mixing results.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from realtime.annotator import EmotionAnnotator
from realtime.classifier import EmotionClassifier
from realtime.cli import OneLineErrorParser, detection_score_type, fraction_type, frames_per_second, positive_int_type
from realtime.detector import DEFAULT_MIN_CONFIDENCE, DETECTOR_CHOICES
from realtime.errors import ModelError, OutputError, SourceError, one_line
from realtime.interrupts import run_ended, stop_signals
from realtime.io.files import partial_path, write_atomically
from realtime.io.video import VIDEO_SUFFIXES, H264VideoWriter, VideoFileSource
from realtime.pipeline import EmotionAnalyzer, process_source
from realtime.rows import RESULT_COLUMN_TYPES, face_rows, utf8_safe
from realtime.sources import media_kind
from realtime.summary import RunSummary
from realtime.types import AnalyzedFrame, FrameResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
LIST_SUFFIXES = (".txt",)
DONE_FOLDER, MANIFEST_NAME, SETTINGS_NAME = "_done", "_manifest.json", "_batch.json"
FINGERPRINT_BYTES = 65536  # read from each end of a video for its fingerprint (file_identity)
ROW_GROUP_ROWS = 65_536  # rows buffered per Parquet row group
TASK_RETRIES = 2  # a video whose worker process dies is analysed again by a restarted worker, twice at most
PROGRESS_INTERVAL_S = 0.5  # how often workers report frames to the progress bar
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # only small outcome records travel through Ray's object store
CONNECT_TIMEOUT_S = 10  # for the first connection to a cluster's head
# A gRPC (HTTP/2) client's first bytes, with an empty SETTINGS frame: a Ray head's GCS answers with SETTINGS.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_FRAME_HEADER_BYTES, HTTP2_SETTINGS = 9, 4
ACTOR_READY_TIMEOUT_S = 600  # a restarted worker that has not loaded its model by then counts as lost

EXAMPLES = """\
examples:
  python -m realtime.batch ../shared/media --results results/
      every video under the folder (recursively), one worker per core, Parquet in results/
  python -m realtime.batch clips.txt --results results/ --videos annotated/ --workers 2
      the videos listed in clips.txt (one path a line), with annotated H.264 copies
  python -m realtime.batch /data/corpus --results /data/results --address 10.0.0.1:6379
      on an existing Ray cluster (ray start --head ... / ray start --address ...)

Rerunning the same command skips finished videos and redoes the rest. Read the results with
pandas.read_parquet("results/"). Exit codes: 0 all videos done, 1 some failed (listed in the summary
and in results/_manifest.json), 2 bad input or options (nothing written), 3 all done but some with
frames lost to damage or a cut-short file (listed), 130 interrupted (143 SIGTERM, 129 SIGHUP).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render --help)."""
    parser = OneLineErrorParser(
        prog="python -m realtime.batch",
        description="Emotion Tracer batch analysis: every face in every frame of a corpus of videos, on\n"
                    "all cores of this machine or all nodes of a Ray cluster, one Parquet file per video.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (searched recursively) or .txt files listing paths, one a line "
                             "(relative paths are relative to the list); - or a pipe such as <(find ...): "
                             "such a list read from standard input or the pipe")
    parser.add_argument("--results", type=Path, required=True, metavar="DIR",
                        help="folder for one Parquet file per video (created if missing; its parent must exist)")
    parser.add_argument("--videos", type=Path, metavar="DIR", help="also write annotated H.264 copies here")
    parser.add_argument("--workers", type=positive_int_type, metavar="N",
                        help="Ray actors analysing videos side by side (default: one per CPU core of this "
                             "machine, or of the cluster with --address)")
    parser.add_argument("--address", metavar="ADDR",
                        help="an existing Ray cluster, e.g. 10.0.0.1:6379 (default: start Ray on this machine)")
    analysis = parser.add_argument_group("analysis (as in python -m realtime)")
    analysis.add_argument("--detector", choices=DETECTOR_CHOICES, default="auto",
                          help="face detector (default: auto, as for files in python -m realtime)")
    analysis.add_argument("--min-confidence", type=detection_score_type, default=DEFAULT_MIN_CONFIDENCE,
                          metavar="P", help=f"minimum face detection score, 0.5-1 (default: {DEFAULT_MIN_CONFIDENCE})")
    analysis.add_argument("--smooth", type=fraction_type(below_one=True), default=0.6, metavar="S",
                          help="weight of each face's past in its probabilities, 0 <= S < 1 (default: 0.6)")
    analysis.add_argument("--model", type=Path, metavar="PATH", help="exported .onnx emotion model")
    analysis.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=True,
                          help="average each face with its mirror image (default: on)")
    analysis.add_argument("--sample-fps", type=frames_per_second, metavar="N",
                          help="analyse at most N frames a second of each video, the others read and skipped "
                               "(default: every frame)")
    return parser


class WorkersLost(Exception):
    """No worker is left to analyse the remaining videos."""


@dataclass(frozen=True)
class Video:
    """One video of the corpus: absolute path, its ``source`` column (the path as given) and the stem
    of its output files (unique per absolute path)."""

    path: str
    source: str
    name: str
    refused: str = ""  # why a listed path is no video to analyse (a photo, a folder without videos): it fails alone


@dataclass
class VideoOutcome:
    """What happened to one video: status "done", "skipped" (complete before this run), "failed" or
    "not finished" (the run was interrupted first); ``problems``: what its analysis lost (damaged
    stretches skipped, a cut-short file), a line each."""

    name: str
    source: str
    path: str
    status: str
    frames: int = 0
    faces: int = 0
    started: float = 0.0  # time.time() on the worker when analysis began
    seconds: float = 0.0  # analysis time on the worker
    cpu_seconds: float = 0.0  # CPU time of the worker process (all its threads) for this video
    worker: int = 0
    node: str = ""
    error: str = ""
    problems: list[str] = field(default_factory=list)
    size: int = 0  # the file analysed (file_identity): how a rerun tells a changed or moved video
    mtime_ns: int = 0
    fingerprint: str = ""
    note: str = ""  # why a video complete before was analysed again (changed, or moved)


# A video's stem is cut to this many bytes (UTF-8) in its output files' names, so that the longest of them, the hidden
# partial copy of its Parquet file or annotated video (".<stem>-<id>.parquet.<8 hex>.part", 32 bytes more), stays
# within a file system's 255 bytes a name; the names of every stem that fitted before are kept (reruns find them).
OUTPUT_STEM_BYTES = 223


def output_name(path: Path) -> str:
    """Stem of a video's output files: its own stem, cut to OUTPUT_STEM_BYTES (bytes that are no UTF-8, from an old
    archive, as U+FFFD), and 8 hex digits of its absolute path."""
    stem = os.fsencode(path.stem).decode("utf-8", "replace").encode("utf-8")[:OUTPUT_STEM_BYTES]
    return f"{stem.decode('utf-8', 'ignore')}-{hashlib.sha1(os.fsencode(str(path))).hexdigest()[:8]}"


def collect_videos(inputs: list[str]) -> list[Video]:
    """The videos named by files, folders (recursively) and .txt lists, each once, largest first. A path
    given that is not there is a SourceError; a listed one is kept, for ``BatchRun.plan`` to fail alone.

    A video's ``source`` is its path as given (joined to its folder or list's folder), so that rows
    of equal file names in different folders stay apart.
    """
    if inputs.count("-") > 1:
        raise SourceError("- (the list on standard input) is given more than once: standard input is read once")
    found: dict[str, Video] = {}
    for text in inputs:
        path = Path(text).expanduser()
        if text == "-" or _is_pipe(path) or (path.suffix.lower() in LIST_SUFFIXES and path.is_file()):
            list_file = None if text == "-" else path
            entries = _listed_paths(list_file)
            if not entries:
                raise SourceError(f"{_list_name(list_file)}: no paths in it")
            # a listed path that is gone, a photo or a folder without videos fails alone (BatchRun.plan), as a video
            # that cannot be read would
            video_paths = []
            for entry in entries:
                try:
                    video_paths += [(video, "") for video in (_videos_at(entry) if entry.exists() else [entry])]
                except SourceError as error:
                    video_paths.append((entry, str(error)))
        else:
            video_paths = [(video, "") for video in _videos_at(path)]
        for video_path, refused in video_paths:
            absolute = video_path.resolve()
            found.setdefault(str(absolute), Video(str(absolute), str(video_path), output_name(absolute), refused))
    return sorted(found.values(), key=lambda video: _size(video.path), reverse=True)


def _size(path: str) -> int:
    """The file's size in bytes, 0 for a file that is not there."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _is_pipe(path: Path) -> bool:
    """Whether ``path`` is a pipe, such as the ``/dev/fd/63`` of a shell's ``<(find ...)``: a list of paths."""
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def _list_name(list_file: Path | None) -> str:
    """How messages name a list of paths: its file, or standard input (None)."""
    return "the list on standard input" if list_file is None else f"list {list_file}"


def _listed_paths(list_file: Path | None) -> list[Path]:
    """The paths in a list file or pipe (None: standard input), one a line; blank lines and lines starting with #
    are skipped. Relative paths are taken from a list file's folder, from the current folder for a pipe."""
    name = _list_name(list_file)
    try:
        text = sys.stdin.buffer.read() if list_file is None else list_file.read_bytes()
        lines = text.decode("utf-8-sig").splitlines()  # with or without a byte-order mark
    except OSError as error:
        raise SourceError(f"{name}: cannot read it ({one_line(error)})") from error
    except UnicodeDecodeError as error:
        raise SourceError(f"{name}: not a text file of paths (not UTF-8)") from error
    folder = list_file.parent if list_file is not None and not _is_pipe(list_file) else Path()
    return [folder / Path(line.strip()).expanduser() for line in lines
            if line.strip() and not line.strip().startswith("#")]


def _videos_at(path: Path) -> list[Path]:
    """A video file, or the videos in a folder and its subfolders (hidden ones skipped), sorted."""
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        videos = sorted(file for file in path.rglob("*")
                        if file.suffix.lower() in VIDEO_SUFFIXES and file.is_file()
                        and not any(part.startswith(".") for part in file.relative_to(path).parts)
                        and media_kind(file) == "video")  # not a GIF of one frame: a photo
        if not videos:
            raise SourceError(f"folder {path}: no videos in it")
        return videos
    if media_kind(path) == "image":
        raise SourceError(f"{path}: is a photo; python -m realtime.batch analyses videos (python -m realtime "
                          "analyses photos)")
    return [path]


def result_schema(classes: list[str]) -> pa.Schema:
    """The Parquet columns: those of the CSV results, then one probability column per class."""
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(column, types[kind]) for column, kind in RESULT_COLUMN_TYPES.items()]
                     + [(name, pa.float64()) for name in classes])


def _utf8_safe_texts(value):
    """``value`` with ``utf8_safe`` applied to every text in it (inside lists and dicts too)."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, list):
        return [_utf8_safe_texts(item) for item in value]
    if isinstance(value, dict):
        return {key: _utf8_safe_texts(item) for key, item in value.items()}
    return value


def _write_json_atomically(path: Path, data) -> None:
    write_atomically(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


class RunStopped(Exception):
    """The run this worker's video belongs to has ended (interrupted): its results are not kept."""


RUNNING_PREFIX = ".running."  # a run's marker in its results folder: workers keep results only while it is there


def _check_still_running(running: Path) -> None:
    """RunStopped once the run's marker is gone: the driver stopped (its manifest lists this video as not
    finished), even if this worker got no signal (a SIGTERM to the process group lets Ray's workers go on)."""
    if not running.exists():
        raise RunStopped("the run was stopped before this video was finished")


def driver_gone(marker: Path) -> bool:
    """Whether the run of a ``.running.*`` marker has ended without removing it: its driver, a process of this
    machine, is not there. A marker of another machine's run, or of one still going here, is never taken for one."""
    try:
        host, pid = marker.read_text(encoding="utf-8").split()
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):  # unreadable, or a process of another user: left alone
        return False
    return False


def file_identity(path: str) -> dict:
    """A file's size, modification time and fingerprint (SHA-1 of its size and of its first and last
    FINGERPRINT_BYTES): the file a video's results were made of, as its completion marker keeps it."""
    with open(path, "rb") as file:
        status = os.fstat(file.fileno())
        digest = hashlib.sha1(str(status.st_size).encode())
        digest.update(file.read(FINGERPRINT_BYTES))
        if status.st_size > FINGERPRINT_BYTES:
            file.seek(max(FINGERPRINT_BYTES, status.st_size - FINGERPRINT_BYTES))
            digest.update(file.read(FINGERPRINT_BYTES))
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "fingerprint": digest.hexdigest()}


def changed_since(path: str, marker: dict) -> bool:
    """Whether the video at ``path`` is no longer the file its completion ``marker`` was made of (a marker of an
    earlier version, without a fingerprint, is taken as it is). Same size and time: unchanged, without reading it."""
    if not marker.get("fingerprint"):
        return False
    try:
        status = os.stat(path)
        if (status.st_size, status.st_mtime_ns) == (marker["size"], marker["mtime_ns"]):
            return False
        return file_identity(path)["fingerprint"] != marker["fingerprint"]
    except OSError:
        return True


def _remove_unfinished(folder: Path, file_name: str) -> None:
    """Delete hidden partial copies of ``file_name`` left by a worker that was cut off."""
    for part in folder.glob(f".{glob.escape(file_name)}.*.part*"):
        part.unlink(missing_ok=True)


def _read_marker(path: Path) -> dict | None:
    """A completion marker's record, or None when it is missing or damaged (its video is then redone)."""
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
        VideoOutcome(**marker)
    except (OSError, ValueError, TypeError):
        return None
    return marker


class ParquetResultsWriter:
    """One row per face into a Parquet file, written under a hidden name and renamed into place when
    closed; any exception inside the ``with`` block (Ctrl-C included) leaves no file."""

    def __init__(self, path: Path, classes: list[str]):
        self.path = path
        self.schema = result_schema(classes)
        self.rows_written = 0
        self._rows: list[dict] = []
        self._temp = partial_path(path)
        self._writer = pq.ParquetWriter(self._temp, self.schema)

    def write(self, result: FrameResult) -> None:
        """Add the rows of one frame (``realtime.rows``, as in the CSV results)."""
        self._rows.extend(face_rows(result))
        if len(self._rows) >= ROW_GROUP_ROWS:
            self._flush()

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: the rows of one analysed frame."""
        self.write(analyzed.result)

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.table([pa.array([row[field.name] for row in self._rows], type=field.type)
                                               for field in self.schema], schema=self.schema))
            self.rows_written += len(self._rows)
            self._rows = []

    def close(self) -> None:
        """Write the last rows and move the file into place (a valid empty table when no face was seen)."""
        try:
            self._flush()
            self._writer.close()
            os.replace(self._temp, self.path)
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        """Delete the partial file."""
        self._writer.close()
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> ParquetResultsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


@ray.remote(num_cpus=0)
class FrameCounter:
    """Frames analysed by all workers since the driver last asked (for the progress bar)."""

    def __init__(self):
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def take(self) -> int:
        frames, self.frames = self.frames, 0
        return frames


@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=TASK_RETRIES)
class VideoAnalyst:
    """A worker: loads the face detector and emotion model once, then analyses whole videos.

    When its process dies, Ray starts a new one and gives it the video again (``TASK_RETRIES``).
    """

    def __init__(self, number: int, settings: dict, counter_name: str):
        self.number = number
        self.node = ray.get_runtime_context().get_node_id()[:8]
        self.analyzer = EmotionAnalyzer(settings["model"], detector_range=settings["detector"],
                                        min_confidence=settings["min_confidence"],
                                        smoothing=settings["smoothing"], flip_tta=settings["flip_tta"], threads=1)
        self.sample_fps = settings["sample_fps"]
        self.annotator = EmotionAnnotator()
        self.counter = ray.get_actor(counter_name)

    def ready(self) -> int:
        """The worker's number, once its model is loaded."""
        return self.number

    def analyse(self, video: Video, results_dir: str, videos_dir: str | None, write_rows: bool,
                running: str) -> VideoOutcome:
        """Analyse one video into its Parquet file (unless ``write_rows`` is False: it is complete) and,
        with ``videos_dir``, an annotated copy; then mark its rows complete. Failures are returned. Nothing is
        kept once the run's marker ``running`` is gone (``_check_still_running``)."""
        outcome = VideoOutcome(video.name, video.source, video.path, "done", started=time.time(),
                               worker=self.number, node=self.node)
        summary = RunSummary()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            identity = file_identity(video.path)  # before it is read: a change while it is, is seen by the next run
            outcome.size, outcome.mtime_ns, outcome.fingerprint = (identity["size"], identity["mtime_ns"],
                                                                   identity["fingerprint"])
            self._analyse(video, Path(results_dir), Path(videos_dir) if videos_dir else None, write_rows, summary,
                          Path(running))
        except Exception as error:  # isolated: reported for this video, the worker goes on with others
            outcome.status, outcome.error = "failed", one_line(error)
        outcome.frames, outcome.faces, outcome.problems = summary.frames, summary.faces, list(summary.problems)
        outcome.seconds = time.perf_counter() - started
        outcome.cpu_seconds = time.process_time() - cpu_started
        if outcome.status == "done" and write_rows and Path(running).exists():
            _write_json_atomically(Path(results_dir) / DONE_FOLDER / f"{video.name}.json", asdict(outcome))
        return outcome

    def _analyse(self, video: Video, results_dir: Path, videos_dir: Path | None, write_rows: bool,
                 summary: RunSummary, running: Path) -> None:
        """The rows and the annotated copy, each written under a hidden name and moved into place only
        when the whole video is analysed and the run still goes on; what the source lost goes into ``summary``'s
        problems."""
        parquet_path = results_dir / f"{video.name}.parquet"
        _remove_unfinished(results_dir, parquet_path.name)
        annotated_path = unfinished_video = None
        if videos_dir is not None:
            annotated_path = videos_dir / f"{video.name}.mp4"
            _remove_unfinished(videos_dir, annotated_path.name)
            unfinished_video = annotated_path.with_name(f".{annotated_path.name}.{secrets.token_hex(4)}.part.mp4")
        try:
            with ExitStack() as stack:
                source = stack.enter_context(VideoFileSource(video.path, name=video.source))
                rows = None
                if write_rows:
                    rows = stack.enter_context(ParquetResultsWriter(parquet_path, self.analyzer.classes))
                annotated = None
                if unfinished_video is not None:
                    annotated = stack.enter_context(H264VideoWriter(unfinished_video, source.info,
                                                                    audio_source=video.path))
                reported, last_report = 0, time.monotonic()
                sinks = [sink for sink in (annotated, rows, summary) if sink is not None]
                for _ in process_source(source, self.analyzer, sinks=sinks,
                                        annotator=self.annotator if annotated else None, source_name=video.source,
                                        sample_fps=self.sample_fps):
                    if time.monotonic() - last_report >= PROGRESS_INTERVAL_S:
                        self.counter.add.remote(summary.frames - reported)
                        reported, last_report = summary.frames, time.monotonic()
                self.counter.add.remote(summary.frames - reported)
                _check_still_running(running)  # (before the rows are moved into place, as the ExitStack ends)
            for issue in source.issues:
                summary.note(issue)
            if unfinished_video is not None and unfinished_video.exists():
                _check_still_running(running)
                os.replace(unfinished_video, annotated_path)
        finally:
            if unfinished_video is not None:
                unfinished_video.unlink(missing_ok=True)


@dataclass
class BatchRun:
    """One run over a corpus: what to do, and the outcome of each video so far."""

    videos: list[Video]
    results_dir: Path
    videos_dir: Path | None
    settings: dict
    workers: int
    progress: bool = True

    def __post_init__(self):
        self.outcomes: list[VideoOutcome] = []
        self.todo: deque = deque()
        self.started = time.time()

    def completed(self, video: Video) -> dict | None:
        """The completion marker's record when a finished Parquet file and its marker are there, else None."""
        if not (self.results_dir / f"{video.name}.parquet").is_file():
            return None
        return _read_marker(self.results_dir / DONE_FOLDER / f"{video.name}.json")

    def plan(self) -> None:
        """Take the videos complete before as skipped, those no longer there as failed, and queue the
        others (no Ray needed)."""
        self.todo = deque()
        gone = self._results_of_gone_videos() if (self.results_dir / DONE_FOLDER).is_dir() else {}
        for video in self.videos:
            if video.refused:
                self.outcomes.append(VideoOutcome(video.name, video.source, video.path, "failed",
                                                  error=f"{video.refused} (listed)"))
                continue
            if not Path(video.path).is_file():
                self.outcomes.append(VideoOutcome(video.name, video.source, video.path, "failed",
                                                  error="no such file (listed, but not there)"))
                continue
            marker, stale = self.completed(video), None  # stale: the names whose results go, and the note why
            if marker is not None and changed_since(video.path, marker):
                marker, stale = None, ([video.name], "changed since its results were made: analysed again")
            if marker is None and (moved_from := self._moved_from(video, gone)) is not None:
                # moved or renamed; over an analysed video of the new name (mv a.mp4 b.mp4): b's results go too
                change = "changed since its results were made: it is " if stale else ""
                stale = ([*(stale[0] if stale else []), moved_from["name"]],
                         f"{change}the same file as {moved_from['source']}, which is no longer there: analysed "
                         "again, and the results made there removed")
            write_video = self.videos_dir is not None and (
                stale is not None or not (self.videos_dir / f"{video.name}.mp4").is_file())
            if marker is None or write_video:
                self.todo.append((video, marker is None, write_video, stale))
            else:
                self.outcomes.append(VideoOutcome(**{**marker, "status": "skipped"}))

    def _results_of_gone_videos(self) -> dict[int, list[dict]]:
        """The completion markers, by file size, of videos no longer at their path (moved, or deleted; or on a drive not
        mounted now: a video found elsewhere that is the same file then takes the place of their results)."""
        gone: dict[int, list[dict]] = {}
        for path in sorted((self.results_dir / DONE_FOLDER).glob("*.json")):
            marker = _read_marker(path)
            # gone: not there, or there only through a link (a corpus moved, and a link left at its old place)
            if (marker is not None and marker.get("fingerprint") and (not os.path.exists(marker["path"]) or
                                                                      os.path.realpath(marker["path"]) != marker["path"])
                    and (self.results_dir / f"{marker['name']}.parquet").is_file()):
                gone.setdefault(marker["size"], []).append(marker)
        return gone

    def _moved_from(self, video: Video, gone: dict[int, list[dict]]) -> dict | None:
        """The marker in ``gone`` of the same file as ``video`` (moved or renamed since), taken out of ``gone``."""
        candidates = gone.get(_size(video.path), [])
        if not candidates:
            return None
        try:
            fingerprint = file_identity(video.path)["fingerprint"]
        except OSError:
            return None
        for marker in candidates:
            if marker["fingerprint"] == fingerprint:
                candidates.remove(marker)
                return marker
        return None

    def _remove_results(self, name: str) -> None:
        """Delete a video's Parquet file, marker and annotated copy (results of a file no longer there)."""
        (self.results_dir / DONE_FOLDER / f"{name}.json").unlink(missing_ok=True)
        (self.results_dir / f"{name}.parquet").unlink(missing_ok=True)
        if self.videos_dir is not None:
            (self.videos_dir / f"{name}.mp4").unlink(missing_ok=True)

    def run(self) -> None:
        """Analyse the planned videos on ``workers`` Ray actors (Ray must be connected)."""
        todo = self.todo
        if not todo:
            return
        (self.results_dir / DONE_FOLDER).mkdir(parents=True, exist_ok=True)
        if self.videos_dir is not None:
            self.videos_dir.mkdir(exist_ok=True)
        counter_name = f"emotion-tracer-frames-{secrets.token_hex(4)}"
        counter = FrameCounter.options(name=counter_name).remote()
        analysts = [VideoAnalyst.options(scheduling_strategy="SPREAD").remote(number, self.settings, counter_name)
                    for number in range(1, min(self.workers, len(todo)) + 1)]
        for marker in self.results_dir.glob(RUNNING_PREFIX + "*"):
            if driver_gone(marker):  # a run killed before it could remove its marker
                marker.unlink(missing_ok=True)
        running = self.results_dir / f"{RUNNING_PREFIX}{secrets.token_hex(4)}"
        running.write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")  # whose run (driver_gone)
        new_rows = [video for video, write_rows, *_ in todo if write_rows]
        try:
            self._dispatch(todo, analysts, counter, running)
        finally:
            running.unlink(missing_ok=True)  # first: a worker that goes on keeps nothing the manifest does not list
            for actor in [*analysts, counter]:
                ray.kill(actor)
            self._note_late_finishes(new_rows)

    def _note_late_finishes(self, new_rows: list[Video]) -> None:
        """Videos of ``new_rows`` (none complete when the run began) that a worker finished as the run was stopped,
        before their outcome came back: done, as their completion marker says."""
        known = {outcome.path for outcome in self.outcomes}
        for video in new_rows:
            marker = None if video.path in known else self.completed(video)
            if marker is not None and not changed_since(video.path, marker):  # (not a changed video's old marker)
                self.outcomes.append(VideoOutcome(**marker))

    def _dispatch(self, todo: deque, analysts: list, counter, running: Path) -> None:
        """Keep every worker busy with one video until all are analysed; update the progress bars."""
        idle, pending = list(analysts), {}
        with ExitStack() as bars:
            videos_bar = bars.enter_context(tqdm(total=len(self.videos), desc="videos", unit="video",
                                                 disable=None if self.progress else True, file=sys.stderr,
                                                 dynamic_ncols=True))
            frames_bar = bars.enter_context(tqdm(desc="frames", unit="frame", disable=None if self.progress else True,
                                                 file=sys.stderr, dynamic_ncols=True))
            videos_bar.update(len(self.outcomes))
            while todo or pending:
                while idle and todo:
                    analyst = idle.pop()
                    video, write_rows, write_video, stale = todo.popleft()
                    if stale is not None:  # its results first (a cut-off run leaves none of them, and redoes it)
                        for name in stale[0]:
                            self._remove_results(name)
                    reference = analyst.analyse.remote(video, str(self.results_dir),
                                                       str(self.videos_dir) if write_video else None, write_rows,
                                                       str(running))
                    pending[reference] = (video, analyst, stale[1] if stale else "")
                finished, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_INTERVAL_S)
                frames_bar.update(ray.get(counter.take.remote()))
                for reference in finished:
                    video, analyst, note = pending.pop(reference)
                    try:
                        outcome = ray.get(reference)
                    except ray.exceptions.RayActorError:
                        outcome = VideoOutcome(video.name, video.source, video.path, "failed",
                                               error=f"its worker process died {TASK_RETRIES + 1} times (a video "
                                                     "that crashes the decoder, or a machine out of memory)")
                        if not _responds(analyst):
                            analysts.remove(analyst)
                            analyst = None
                    outcome.note = note
                    self.outcomes.append(outcome)
                    videos_bar.update(1)
                    if analyst is not None:
                        idle.append(analyst)
                    elif not analysts:
                        raise WorkersLost("every worker was lost; rerun to finish the corpus")

    def unfinished(self) -> list[VideoOutcome]:
        """The videos this run has no outcome for (it was interrupted or lost its workers first)."""
        known = {outcome.path for outcome in self.outcomes}
        return [VideoOutcome(video.name, video.source, video.path, "not finished")
                for video in self.videos if video.path not in known]

    def manifest(self) -> dict:
        """Every video of this run with its outcome. Bytes of a name that are no UTF-8 are written as the rows'
        ``source`` writes them (``utf8_safe``), in every text but ``path``, which stays the file's name (a lone
        surrogate escape in the JSON, which Python reads back as the name)."""
        videos = [{key: value if key == "path" else _utf8_safe_texts(value) for key, value in asdict(outcome).items()}
                  for outcome in [*self.outcomes, *self.unfinished()]]
        return {"results": str(self.results_dir), "settings": _utf8_safe_texts(self.settings), "videos": videos}

    def write_manifest(self) -> None:
        _write_json_atomically(self.results_dir / MANIFEST_NAME, self.manifest())

    def format_summary(self) -> str:
        """Videos done/skipped/failed, frames, faces, frames per second overall and per worker (per
        second of analysis, and per CPU-second of the worker's process, which other load does not skew)."""
        counts = {status: sum(o.status == status for o in self.outcomes) for status in ("done", "skipped", "failed")}
        done = [o for o in self.outcomes if o.status == "done"]
        unfinished = len(self.unfinished())
        lines = [f"videos: {counts['done']} done, {counts['skipped']} skipped (complete before), "
                 f"{counts['failed']} failed, " + (f"{unfinished} not finished, " if unfinished else "")
                 + f"of {len(self.videos)}"]
        if done:
            frames, faces = sum(o.frames for o in done), sum(o.faces for o in done)
            span = max(max(o.started + o.seconds for o in done) - min(o.started for o in done), 1e-6)
            lines.append(f"frames: {frames}, faces: {faces}; {frames / span:.1f} frames/s overall over {span:.1f} s "
                         f"of analysis ({time.time() - self.started:.1f} s with starting the workers)")
            lines.append("worker  node      videos  frames  seconds  frames/s  cpu s  frames/cpu-s")
            for number in sorted({o.worker for o in done}):
                mine = [o for o in done if o.worker == number]
                worker_frames = sum(o.frames for o in mine)
                seconds, cpu_seconds = sum(o.seconds for o in mine), sum(o.cpu_seconds for o in mine)
                lines.append(f"{number:<6}  {mine[0].node:<8}  {len(mine):>6}  {worker_frames:>6}  {seconds:>7.1f}  "
                             f"{worker_frames / seconds if seconds else 0:>8.1f}  {cpu_seconds:>5.1f}  "
                             f"{worker_frames / cpu_seconds if cpu_seconds else 0:>12.1f}")
        for outcome in self.outcomes:
            if outcome.status == "failed":
                named = outcome.path in outcome.error or outcome.source in outcome.error  # (as given, or resolved)
                error = outcome.error if named else f"{outcome.path}: {outcome.error}"
                lines.append(f"failed: {error}")
            lines.extend(f"frames lost: {problem}" for problem in outcome.problems)
            if outcome.note:
                lines.append(f"note: {outcome.source}: {outcome.note}")
        return "\n".join(lines)


def _responds(actor) -> bool:
    """Whether a worker is alive (restarted if need be) and has its model loaded."""
    try:
        ray.get(actor.ready.remote(), timeout=ACTOR_READY_TIMEOUT_S)
        return True
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False


def analysis_settings(args: argparse.Namespace) -> dict:
    """What decides the rows: the model (path and content hash) and the analysis options."""
    classifier = EmotionClassifier(args.model)  # raises ModelError for a missing or bad model
    model_path = classifier.model_path.resolve()
    return {"model": str(model_path), "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
            "classes": classifier.classes, "detector": args.detector, "min_confidence": args.min_confidence,
            "smoothing": args.smooth, "flip_tta": args.flip_tta, "sample_fps": args.sample_fps}


def check_folder(path: Path, option: str) -> Path:
    """An output folder that exists or can be created (its parent exists), as an absolute path (workers
    do not share the driver's current folder); nothing is created yet."""
    path = path.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, not a folder")
    if not path.exists() and not path.parent.is_dir():
        raise OutputError(f"{option} {path}: folder {path.parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: not writable")
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot be created: folder {path.parent} is not writable")
    return path


def check_settings(results_dir: Path, settings: dict) -> None:
    """Refuse to add results made with other settings than those already in ``results_dir``."""
    settings_file = results_dir / SETTINGS_NAME
    if not settings_file.is_file():
        return
    try:
        previous = json.loads(settings_file.read_text(encoding="utf-8"))
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise OutputError(f"--results {results_dir}: its {SETTINGS_NAME}, which keeps the settings its results were "
                          f"made with, is damaged ({one_line(error)}); use another folder") from error
    changed = [key for key in settings if key != "model" and previous.get(key) != settings[key]]
    if changed:
        raise OutputError(f"--results {results_dir}: holds results made with other settings "
                          f"({', '.join(f'{key} {previous.get(key)!r}' for key in changed)}); "
                          "use those settings or another folder")


def connect_ray(address: str | None, workers: int | None) -> tuple[int, bool]:
    """Connect to the cluster at ``address``, or start Ray on this machine (127.0.0.1 only, no
    dashboard, no usage stats); a connection this process already has is used as it is.
    Returns the number of workers to start and whether this call connected."""
    connected = not ray.is_initialized()
    if connected:
        # no "Task ... failed. There are 2 retries remaining" on stdout for each video an interrupt stops
        os.environ.setdefault("RAY_enable_output_error_log_if_still_retry", "0")
        if address is None:
            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
            # Ray keeps token auth on for a local start and warns that it has; it stays on, without the warning
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            ray.init(num_cpus=max(os.cpu_count() or 1, workers or 1), _node_ip_address="127.0.0.1",
                     include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     log_to_driver=False, logging_level=logging.WARNING)
        else:
            _check_reachable(address)
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1))), connected


def _check_reachable(address: str) -> None:
    """Fail fast (ray.init retries for minutes) unless ``address`` is host:port and answers as a Ray head's
    GCS does: a gRPC server, whose first HTTP/2 frame is SETTINGS."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port, e.g. 10.0.0.1:6379")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S) as connection:
        connection.sendall(HTTP2_PREFACE)
        answer = b""
        try:
            while len(answer) < HTTP2_FRAME_HEADER_BYTES:
                received = connection.recv(HTTP2_FRAME_HEADER_BYTES - len(answer))
                if not received:
                    break
                answer += received
        except TimeoutError:
            raise ConnectionError(f"it accepts connections but sends nothing back within {CONNECT_TIMEOUT_S} s, "
                                  "where a Ray head's port (--port of ray start --head, 6379 by default) answers "
                                  "at once") from None
    if len(answer) < HTTP2_FRAME_HEADER_BYTES or answer[3] != HTTP2_SETTINGS:
        raise ConnectionError("something other than Ray listens there (it does not answer as the Ray head's port, "
                              "--port of ray start --head, 6379 by default, does)")


def _error(message) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None, program_ends: bool = False) -> int:
    """Run the command line; returns the exit code. ``program_ends``: the program ends with this run, so that a
    Ctrl-C after its summary (while Ray shuts down, or Python) is ignored (see ``stop_signals``)."""
    args = build_parser().parse_args(argv)
    try:
        videos = collect_videos(args.inputs)
        results_dir = check_folder(args.results, "--results")
        videos_dir = check_folder(args.videos, "--videos") if args.videos is not None else None
        if videos_dir is not None and videos_dir.resolve().is_relative_to(results_dir.resolve()):
            raise OutputError(f"--videos {videos_dir}: is inside the --results folder, where pandas.read_parquet "
                              "would take the videos for Parquet files; give them a folder of their own")
        outputs = [folder.resolve() for folder in (results_dir, videos_dir) if folder is not None]
        videos = [video for video in videos if not any(Path(video.path).is_relative_to(o) for o in outputs)]
        if not videos:
            raise SourceError("no videos to analyse outside the output folders")
        settings = analysis_settings(args)
        check_settings(results_dir, settings)
        batch = BatchRun(videos, results_dir, videos_dir, settings, args.workers or 1)
        batch.plan()
    except (SourceError, OutputError, ModelError) as error:
        _error(error)
        return EXIT_USAGE
    if not batch.todo:  # every video complete before, or listed but gone: no need for Ray
        try:
            results_dir.mkdir(exist_ok=True)
        except OSError as error:
            _error(f"--results {results_dir}: cannot create it ({one_line(error)})")
            return EXIT_USAGE
        with stop_signals(program_ends):
            return _finish(batch, _exit_code(batch))
    starts_ray = args.address is None and not ray.is_initialized()  # processes of its own, on this machine
    before = _processes_below() if starts_ray else set()
    connected = False
    try:
        with stop_signals(program_ends) as received:  # from ray.init to the run's end: no stop between two blocks
            try:
                with _without_rays_sigterm_handler():
                    batch.workers, connected = connect_ray(args.address, args.workers)
            except (KeyboardInterrupt, SystemExit) as stop:  # SystemExit: SIGTERM by Ray's handler, where it has one
                if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
                    raise
                received = received or [signal.SIGTERM if isinstance(stop, SystemExit) else signal.SIGINT]
            except Exception as error:  # Ray raises ConnectionError, RuntimeError or ValueError for a bad address
                _error(f"cannot {'connect to the Ray cluster at ' + args.address if args.address else 'start Ray'} "
                       f"({one_line(error)})")
                return EXIT_USAGE
            if received:  # a stop while Ray started (its exception may have been lost in code that ignores them)
                if starts_ray:
                    _end_started_processes(before)
                    connected = False
                name = "Ctrl-C" if received[0] == signal.SIGINT else signal.Signals(received[0]).name
                print(f"\ninterrupted ({name}) while starting Ray: no video was analysed; rerun to do them",
                      file=sys.stderr)
                with suppress(OSError):
                    results_dir.mkdir(exist_ok=True)
                return _finish(batch, EXIT_INTERRUPTED if received[0] == signal.SIGINT else 128 + received[0])
            with stop_signals(program_ends) as run_received:  # its own handlers again, should Ray have set one
                return _run(batch, run_received, settings)
    except KeyboardInterrupt:  # a second Ctrl-C while the manifest was written
        print("\ninterrupted again: the manifest may be missing or the previous run's", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if connected:
            ray.shutdown()


@contextmanager
def _without_rays_sigterm_handler() -> Iterator[None]:
    """Keep ray.init from putting its own handler on SIGTERM (a SystemExit raised wherever the signal finds the
    program), so that the stop_signals() one stays; a stop raised where Python ignores exceptions (code run at a
    fork) is not printed as a traceback: stop_signals() has noted it all the same."""
    utils = getattr(ray, "_private", None) and getattr(ray._private, "utils", None)
    original = getattr(utils, "set_sigterm_handler", None)
    unraisable_hook = sys.unraisablehook

    def quiet_about_stops(unraisable) -> None:
        if not isinstance(unraisable.exc_value, (KeyboardInterrupt, SystemExit)):
            unraisable_hook(unraisable)

    sys.unraisablehook = quiet_about_stops
    if original is not None:  # (another Ray may have none: its handler's SystemExit is taken for a SIGTERM)
        utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        sys.unraisablehook = unraisable_hook
        if original is not None:
            utils.set_sigterm_handler = original


def _processes_below() -> set[int]:
    """The processes below this one: its children, theirs... (Linux's /proc; none where there is none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])  # after the name: state, ppid
            children.setdefault(parent, []).append(int(entry.name))
    pending, below = [os.getpid()], set()
    while pending:
        for child in children.get(pending.pop(), []):
            below.add(child)
            pending.append(child)
    return below


def _end_started_processes(before: set[int]) -> None:
    """After a local ray.init was stopped part way: shut down what it started. ``ray.shutdown()`` knows only the
    processes of a start that finished, so the others are ended too: those below this one that were not there
    ``before`` it."""
    with suppress(Exception):
        ray.shutdown()
    for pid in _processes_below() - before:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _run(batch: BatchRun, received: list[int], settings: dict) -> int:
    """Make the results folder with its ``settings``, run the batch, write its manifest and print its summary;
    returns the exit code. ``received``: the stop signals received (Ray raises a plain KeyboardInterrupt for each)."""
    try:
        try:
            batch.results_dir.mkdir(exist_ok=True)
            if not (batch.results_dir / SETTINGS_NAME).is_file():
                _write_json_atomically(batch.results_dir / SETTINGS_NAME, settings)
        except (OSError, OutputError) as error:
            _error(f"--results {batch.results_dir}: cannot write in it ({one_line(error)})")
            return EXIT_USAGE
        batch.run()
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP
        signum = received[0] if received else signal.SIGINT
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\ninterrupted ({name}): finished videos are kept; rerun to do the others", file=sys.stderr)
        code = EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
    except WorkersLost as error:
        _error(error)
        code = EXIT_FAILED
    else:
        code = _exit_code(batch)
    return _finish(batch, code)


def program_main() -> int:
    """``main()`` as a program (``python -m realtime.batch``): a Ctrl-C once the run has ended changes neither the
    exit code nor prints a traceback; one before Ray started (listing the folders) ends it with exit code 130."""
    try:
        return main(program_ends=True)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ninterrupted (Ctrl-C) before any video was analysed", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_code(batch: BatchRun) -> int:
    """1 when a video failed, 3 when one lost frames (to damage or a cut-short file), else 0."""
    if any(outcome.status == "failed" for outcome in batch.outcomes):
        return EXIT_FAILED
    return EXIT_PARTIAL if any(outcome.problems for outcome in batch.outcomes) else EXIT_OK


def _finish(batch: BatchRun, code: int) -> int:
    """Write the manifest and print the summary, a Ctrl-C from then on changing nothing (within stop_signals());
    returns ``code``."""
    batch.write_manifest()
    run_ended()
    print(batch.format_summary())
    return code
