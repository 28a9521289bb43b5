"""Output sinks: H.264 MP4 video, still images, CSV/JSONL results and an on-screen window.

File sinks write to a hidden temp file beside the target and rename it into place when they
finish, so a failed run never leaves a corrupt output. Ctrl-C (KeyboardInterrupt) is not a
failure: what was written so far is finalised into a valid file. Any other exception inside the
`with` block discards the output.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import secrets
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from realtime.results import FrameResult
from realtime.sources import VideoInfo, one_line

VIDEO_OUTPUT_SUFFIXES = (".mp4",)
IMAGE_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
RESULTS_SUFFIXES = (".csv", ".jsonl")
RESULT_COLUMNS = (
    "source", "frame", "time", "face_id", "x1", "y1", "x2", "y2", "detection_score", "label", "confidence",
)
MP4_AUDIO_CODECS = frozenset({"aac", "mp3"})  # copied as they are; other audio is re-encoded to AAC


class OutputError(Exception):
    """An output cannot be written; the message is one line and names the file."""


def check_output_path(path: Path | str, allowed_suffixes: Iterable[str]) -> Path:
    """Check, before any work starts, that `path` can be written: known suffix, existing writable folder."""
    path = Path(path).expanduser()
    allowed = tuple(allowed_suffixes)
    if path.suffix.lower() not in allowed:
        raise OutputError(f"{path}: unsupported output type {path.suffix or '(none)'!r}; use {', '.join(allowed)}")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file name")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")
    return path


def _temp_path(path: Path) -> Path:
    """A hidden, unique file name beside `path` (same file system, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def write_image(path: Path | str, image_bgr: np.ndarray) -> Path:
    """Write a BGR image atomically, in the format its suffix names. Returns the path."""
    path = check_output_path(path, IMAGE_OUTPUT_SUFFIXES)
    try:
        ok, data = cv2.imencode(path.suffix.lower(), image_bgr)
    except cv2.error as error:
        raise OutputError(f"{path}: cannot encode the image ({one_line(error)})") from error
    if not ok:
        raise OutputError(f"{path}: cannot encode the image")
    temp = _temp_path(path)
    try:
        with open(temp, "xb") as file:
            file.write(data.tobytes())
        os.replace(temp, path)
    except OSError as error:
        _remove(temp)
        raise OutputError(f"{path}: cannot write it ({one_line(error)})") from error
    return path


class _AudioTrack:
    """The audio of a source file, fed into an output container in step with the video.

    AAC and MP3 packets are copied as they are; any other codec is re-encoded to AAC (mono or stereo).
    Timestamps are shifted so the source's first video frame is time 0, like the written video.
    """

    def __init__(self, source: Path, container: av.container.OutputContainer):
        self._input = av.open(str(source))
        try:
            stream = self._input.streams.audio[0]
            video = self._input.streams.video[0] if self._input.streams.video else None
            self._offset = float(video.start_time * video.time_base) if video is not None and video.start_time else 0.0
            self._remux = stream.codec_context.codec.canonical_name in MP4_AUDIO_CODECS
            if self._remux:
                self._output = container.add_stream_from_template(stream)
            else:
                context = stream.codec_context
                layout = "mono" if context.channels == 1 else "stereo"  # more channels are mixed down
                self._output = container.add_stream("aac", rate=context.sample_rate, layout=layout)
                self._output.bit_rate = 160_000
            self._packets = self._source_packets(stream)
            self._pending: av.Packet | None = None
        except BaseException:
            self._input.close()
            raise

    def _source_packets(self, stream) -> Iterator[av.Packet]:
        """Output-ready packets, in order: copies of the source's, or freshly encoded AAC."""
        for packet in self._input.demux(stream):
            if packet.dts is None:  # demuxer flush marker
                continue
            if self._remux:
                shift = round(self._offset / packet.time_base)
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                packet.stream = self._output
                yield packet
            else:
                for frame in packet.decode():
                    if frame.pts is not None:
                        frame.pts -= round(self._offset / frame.time_base)
                    yield from self._output.encode(frame)
        if not self._remux:
            yield from self._output.encode(None)

    def mux_until(self, container: av.container.OutputContainer, seconds: float) -> None:
        """Mux the audio packets that start before `seconds`."""
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            if self._pending.pts is not None and float(self._pending.pts * self._pending.time_base) >= seconds:
                return
            container.mux(self._pending)
            self._pending = None

    def close(self) -> None:
        self._input.close()


_STOP = None


class H264VideoWriter:
    """Writes BGR frames to a browser-playable MP4: H.264 (libx264, yuv420p), +faststart.

    Frames are encoded in a background thread (bounded queue) so encoding overlaps with the work
    that produces them. Odd widths or heights are padded by one replicated pixel row/column, as
    4:2:0 H.264 needs even sizes. With `audio_source`, that file's first audio track (if any) is
    copied in, trimmed to the written video. Ctrl-C inside the `with` block keeps a playable file
    with the frames written so far; any other exception leaves no file.
    """

    def __init__(
        self,
        path: Path | str,
        info: VideoInfo,
        audio_source: Path | str | None = None,
        preset: str = "veryfast",
        crf: int = 23,
        queue_size: int = 8,
    ):
        self.path = check_output_path(path, VIDEO_OUTPUT_SUFFIXES)
        self.info = info
        self.frames_written = 0
        self._rate = Fraction(info.fps).limit_denominator(1001)
        self._time_base = 1 / self._rate
        self._pad = (info.height % 2, info.width % 2)
        self._last_pts = -1
        self._end_time = 0.0
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._finished = False
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._temp = _temp_path(self.path)
        self._audio: _AudioTrack | None = None
        self._thread: threading.Thread | None = None
        try:
            self._container = av.open(str(self._temp), "w", format="mp4", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as error:
            _remove(self._temp)
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})") from error
        try:
            self._video = self._container.add_stream(
                "libx264", rate=self._rate, options={"preset": preset, "crf": str(crf)}
            )
            self._video.width = info.width + self._pad[1]
            self._video.height = info.height + self._pad[0]
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = self._time_base
            if audio_source is not None and _has_audio(Path(audio_source)):
                self._audio = _AudioTrack(Path(audio_source), self._container)
        except (av.FFmpegError, OSError, ValueError) as error:
            self._abandon()
            raise OutputError(f"{self.path}: cannot set up the encoder ({one_line(error)})") from error
        self._thread = threading.Thread(target=self._encode_loop, name=f"encode {self.path.name}", daemon=True)
        self._thread.start()

    def write(self, image_bgr: np.ndarray, timestamp: float | None = None) -> None:
        """Queue one (H, W, 3) uint8 BGR frame of the size in `info`.

        Without `timestamp` frames are spaced 1/fps apart (constant frame rate); with it (seconds,
        e.g. `Frame.timestamp` from a camera) the frame is shown at that time, so dropped frames
        do not speed the video up.
        """
        expected = (self.info.height, self.info.width, 3)
        if image_bgr.shape != expected or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected a {expected} uint8 image, got {image_bgr.shape} {image_bgr.dtype}")
        if any(self._pad):
            image_bgr = cv2.copyMakeBorder(image_bgr, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")  # copies the pixels
        pts = self._last_pts + 1 if timestamp is None else max(self._last_pts + 1, round(timestamp / self._time_base))
        frame.pts, frame.time_base = pts, self._time_base
        self._last_pts = pts
        self._end_time = float((pts + 1) * self._time_base)
        self._put(frame)
        self.frames_written += 1

    def _put(self, item) -> None:
        """Hand `item` to the encoder thread; raise OutputError if that thread has failed."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise OutputError(f"{self.path}: encoding failed ({one_line(self._error)})") from self._error

    def _encode_loop(self) -> None:
        """Background thread: encode and mux queued frames, interleaving audio; flush at the end."""
        try:
            while (frame := self._queue.get()) is not _STOP:
                if self._cancel.is_set():
                    return
                self._container.mux(self._video.encode(frame))
                if self._audio is not None:
                    self._audio.mux_until(self._container, float(frame.time))
            if self._cancel.is_set():
                return
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.mux_until(self._container, self._end_time)
        except Exception as error:  # reported to the writing thread by write() / close()
            self._error = error

    def close(self) -> None:
        """Finish encoding, finalise the MP4 and move it into place. No frames -> OutputError, no file."""
        if self._finished:
            return
        self._finished = True
        try:
            self._put(_STOP)
            self._thread.join()
            self._raise_if_failed()
            if self.frames_written == 0:
                raise OutputError(f"{self.path}: no frames were written")
            self._close_container()
            os.replace(self._temp, self.path)
        except BaseException as error:  # including a second Ctrl-C while finishing
            self._abandon()
            if isinstance(error, (av.FFmpegError, OSError)):
                raise OutputError(f"{self.path}: cannot finish it ({one_line(error)})") from error
            raise

    def discard(self) -> None:
        """Stop encoding and delete the partial output."""
        if not self._finished:
            self._finished = True
            self._abandon()

    def _close_container(self) -> None:
        try:
            self._container.close()
        finally:
            if self._audio is not None:
                self._audio.close()

    def _abandon(self) -> None:
        """Stop the encoder thread (dropping queued frames), close everything and delete the temp file."""
        if self._thread is not None and self._thread.is_alive():
            self._cancel.set()
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(_STOP)
            self._thread.join()
        try:
            self._close_container()
        except Exception:  # the file is deleted anyway; the original error is what matters
            pass
        _remove(self._temp)

    def __enter__(self) -> H264VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if exc_type is None or (interrupted and self.frames_written):
            self.close()
        else:
            self.discard()


def _has_audio(path: Path) -> bool:
    """Whether a media file has an audio track (False when it cannot be opened at all)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


class ResultsWriter:
    """Streams one row per face to CSV or JSONL (chosen by suffix), atomically like the video writer.

    Columns: source, frame, time, face_id, x1, y1, x2, y2, detection_score, label, confidence and
    one probability column per class. JSONL rows carry the same fields with `probabilities` as a
    {class: p} object instead. Frames without faces add no rows.
    """

    def __init__(self, path: Path | str, classes: list[str]):
        self.path = check_output_path(path, RESULTS_SUFFIXES)
        self.classes = list(classes)
        clashes = set(self.classes) & set(RESULT_COLUMNS)
        if clashes:
            raise ValueError(f"class names clash with result columns: {sorted(clashes)}")
        self.rows_written = 0
        self._jsonl = self.path.suffix.lower() == ".jsonl"
        self._temp = _temp_path(self.path)
        try:
            self._file = open(self._temp, "x", newline="", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})") from error
        self._csv = None if self._jsonl else csv.writer(self._file)
        if self._csv is not None:
            self._csv.writerow([*RESULT_COLUMNS, *self.classes])

    def write(self, source_name: str, frame: FrameResult) -> None:
        """Append one row per face in `frame`."""
        for face in frame.faces:
            probabilities = [round(float(p), 4) for p in face.probabilities]
            if len(probabilities) != len(self.classes):
                raise ValueError(f"{len(probabilities)} probabilities for {len(self.classes)} classes")
            x1, y1, x2, y2 = (int(v) for v in face.box)
            row = {
                "source": source_name,
                "frame": int(frame.index),
                "time": round(float(frame.timestamp), 3),
                "face_id": int(face.face_id),
                "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                "detection_score": None if face.detection_score is None else round(float(face.detection_score), 4),
                "label": face.label,
                "confidence": round(float(face.confidence), 4),
            }
            try:
                if self._csv is not None:
                    self._csv.writerow([*row.values(), *probabilities])
                else:
                    row["probabilities"] = dict(zip(self.classes, probabilities))
                    self._file.write(json.dumps(row) + "\n")
            except OSError as error:
                raise OutputError(f"{self.path}: cannot write to it ({one_line(error)})") from error
            self.rows_written += 1

    def close(self) -> None:
        """Finish the file and move it into place (a file with only the header when no face was seen)."""
        try:
            self._file.close()
            os.replace(self._temp, self.path)
        except BaseException as error:
            _remove(self._temp)
            if isinstance(error, OSError):
                raise OutputError(f"{self.path}: cannot finish it ({one_line(error)})") from error
            raise

    def discard(self) -> None:
        """Delete the partial output."""
        self._file.close()
        _remove(self._temp)

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.discard()


def display_available() -> bool:
    """Whether a window can be shown: on Linux that needs DISPLAY set (and, for a local display, its socket)."""
    if not sys.platform.startswith("linux"):
        return True
    display = os.environ.get("DISPLAY", "")
    if display.startswith(":"):  # local X server: Qt aborts the process if it is not there
        return Path(f"/tmp/.X11-unix/X{display[1:].split('.')[0]}").exists()
    return bool(display)


class DisplayWindow:
    """An OpenCV window; `show()` returns False once the user presses q or Esc or closes the window."""

    def __init__(self, title: str = "Emotion Tracer"):
        self.title = title
        self._open = False

    def __enter__(self) -> DisplayWindow:
        if not display_available():
            raise OutputError("cannot open a window: no display (DISPLAY is not set); write to a file instead")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as error:
            raise OutputError(f"cannot open a window ({one_line(error)})") from error
        self._open = True
        return self

    def show(self, image: np.ndarray) -> bool:
        """Show `image`; False when the user asked to stop (q, Esc or the window closed)."""
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        """Close the window."""
        if self._open:
            self._open = False
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)

    def __exit__(self, *exc) -> None:
        self.close()
