"""Frame sources: camera, video file and single image, all yielding `Frame`s with one interface.

Every source is a context manager with `.info` (a `VideoInfo`) and iterates `Frame`s. Files are
checked before a decoder sees them and the first frame is read up front, so a bad source fails
immediately with a one-line `SourceError` that names it.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_FPS = 30.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp", ".gif"}
)
CAMERA_PROBE_INDICES = range(10)
CAMERA_FRAME_TIMEOUT_S = 5.0


class SourceError(Exception):
    """A source cannot be opened or read; the message is one line and names the source."""


@dataclass
class VideoInfo:
    """Size, frame rate and length of a source. `fps` is always a usable positive number."""

    width: int
    height: int
    fps: float
    total_frames: int | None
    source: str

    def __post_init__(self) -> None:
        self.fps = usable_fps(self.fps)


@dataclass
class Frame:
    """One frame: position in the source, seconds since its start, and a (H, W, 3) uint8 BGR image."""

    index: int
    timestamp: float
    image: np.ndarray


def usable_fps(fps: float | None) -> float:
    """`fps` when it is a positive finite number, else DEFAULT_FPS (webcams often report 0 or nan)."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return DEFAULT_FPS
    return fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS


def parse_source(text: str) -> int | Path:
    """Digits mean a camera index, anything else a file path."""
    text = str(text).strip()
    if not text:
        raise SourceError("no source given: pass a camera index (e.g. 0) or a file path")
    return int(text) if text.isdigit() else Path(text).expanduser()


def check_input_file(path: Path, kind: str) -> None:
    """Raise SourceError unless `path` is an existing, readable, non-empty file."""
    if not path.exists():
        raise SourceError(f"{kind} {path}: no such file")
    if not path.is_file():
        raise SourceError(f"{kind} {path}: not a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{kind} {path}: permission denied")
    if path.stat().st_size == 0:
        raise SourceError(f"{kind} {path}: file is empty")


def media_kind(path: Path | str) -> str:
    """Return "image" or "video" by suffix; with an unknown suffix, "image" if Pillow recognises the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES or not path.is_file():
        return "video"
    try:
        with Image.open(path):
            return "image"
    except Exception:  # anything Pillow cannot identify is left to the video decoder to judge
        return "video"


def list_media(folder: Path | str) -> list[Path]:
    """The images and videos directly inside `folder` (hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"folder {folder}: no such folder")
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )
    if not files:
        raise SourceError(f"folder {folder}: no images or videos in it")
    return files


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, upright per its EXIF orientation.

    Transparency is composited onto white, grayscale and 16-bit images become 8-bit BGR.
    Images larger than Pillow's MAX_IMAGE_PIXELS are refused before they are decoded.
    """
    path = Path(path)
    check_input_file(path, "image")
    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and image.width * image.height > limit:
                raise SourceError(
                    f"image {path}: {image.width}x{image.height} pixels is more than the {limit} allowed "
                    "(possible decompression bomb)"
                )
            return _pil_to_bgr(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as error:
        raise SourceError(f"image {path}: too many pixels (possible decompression bomb)") from error
    except UnidentifiedImageError as error:
        raise SourceError(f"image {path}: not an image file Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SourceError(f"image {path}: cannot decode it ({one_line(error)})") from error


def _pil_to_bgr(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> C-contiguous (H, W, 3) uint8 BGR."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit samples: map 0..65535 onto 0..255.
        wide = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        gray = np.rint(wide / 257.0).astype(np.uint8)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("1", "L", "F"):
        return cv2.cvtColor(np.asarray(image.convert("L")), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def one_line(error: BaseException) -> str:
    """An exception's message squeezed onto one line (its type name when it has no message)."""
    return " ".join(str(error).split()) or type(error).__name__


class ImageSource:
    """A single image file as a one-frame source."""

    has_audio = False

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._image = read_image(self.path)
        height, width = self._image.shape[:2]
        self.info = VideoInfo(width, height, DEFAULT_FPS, 1, str(self.path))

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self._image)

    def close(self) -> None:
        """Nothing to release; present so every source can be closed the same way."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_END = object()


class VideoFileSource:
    """A video file decoded by PyAV in a background thread (bounded queue, flat memory).

    Frames come out upright (rotation metadata applied) with timestamps from their pts.
    Iterate once; `close()` (or the `with` block) stops the decoder.
    """

    def __init__(self, path: Path | str, queue_size: int = 4):
        self.path = Path(path)
        check_input_file(self.path, "video")
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, UnicodeDecodeError) as error:
            raise SourceError(f"video {self.path}: not a video file PyAV can read ({one_line(error)})") from error
        try:
            if not self._container.streams.video:
                raise SourceError(f"video {self.path}: has no video track")
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            self.has_audio = bool(self._container.streams.audio)
            fps = usable_fps(stream.average_rate or stream.guessed_rate or stream.base_rate)
            self._frames = self._decode(stream, fps)
            try:
                self._first = next(self._frames, None)
            except av.FFmpegError as error:
                raise SourceError(f"video {self.path}: cannot decode it ({one_line(error)})") from error
            if self._first is None:
                raise SourceError(f"video {self.path}: has no frames")
        except BaseException:
            self._container.close()
            raise
        height, width = self._first.image.shape[:2]
        self.info = VideoInfo(width, height, fps, stream.frames or None, str(self.path))
        self._thread = threading.Thread(target=self._produce, name=f"decode {self.path.name}", daemon=True)
        self._thread.start()

    def _decode(self, stream, fps: float) -> Iterator[Frame]:
        """Decode frames in order, upright, with seconds since the first frame."""
        origin = None
        previous = -1.0 / fps
        for index, av_frame in enumerate(self._container.decode(stream)):
            image = np.ascontiguousarray(_upright(av_frame.to_ndarray(format="bgr24"), av_frame.rotation))
            if av_frame.time is None:
                timestamp = previous + 1.0 / fps
            else:
                origin = av_frame.time if origin is None else origin
                timestamp = av_frame.time - origin
                if timestamp <= previous:  # broken or missing pts: keep time moving forward
                    timestamp = previous + 1.0 / fps
            previous = timestamp
            yield Frame(index, timestamp, image)

    def _produce(self) -> None:
        """Background thread: move decoded frames into the bounded queue until the end or close()."""
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
            self._put(_END)
        except Exception as error:  # handed to the consumer, which raises it as a SourceError
            self._put(error)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise RuntimeError("a VideoFileSource can be iterated only once")
        first, self._first = self._first, None
        yield first
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise SourceError(f"video {self.path}: decoding failed ({one_line(item)})") from item
            yield item

    def close(self) -> None:
        """Stop the decoder thread and release the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._container.close()

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as PyAV reports it)."""
    turns = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    code = turns.get(round(rotation or 0) % 360)
    return image if code is None else cv2.rotate(image, code)


def available_cameras(indices=CAMERA_PROBE_INDICES) -> list[int]:
    """Camera indices that open (quick probe, OpenCV's warnings silenced)."""
    found = []
    with _quiet_opencv():
        for index in indices:
            if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
                continue
            capture = cv2.VideoCapture(index)
            if capture.isOpened():
                found.append(index)
            capture.release()
    return found


@contextmanager
def _quiet_opencv():
    """Silence OpenCV's log (it warns on stderr for every camera index that does not open)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # 0 = silent
    try:
        yield
    finally:
        cv2.setLogLevel(level)


class CameraSource:
    """A live camera. A grabber thread keeps only the newest frame, so a slow consumer never lags:
    each iteration returns the latest frame and stale ones are dropped. Timestamps are seconds on a
    monotonic clock since the source opened; indices count the frames handed out.
    """

    has_audio = False

    def __init__(self, index: int):
        self.index = index
        self.path = None
        with _quiet_opencv():
            self._capture = cv2.VideoCapture(index)
            ok, image = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok or image is None:
            self._capture.release()
            others = [i for i in available_cameras() if i != index]
            hint = f"cameras that open: {', '.join(map(str, others))}" if others else "no camera found"
            raise SourceError(f"camera {index}: cannot open it or read a frame ({hint})")
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._start = time.monotonic()
        height, width = image.shape[:2]
        self.info = VideoInfo(width, height, self._capture.get(cv2.CAP_PROP_FPS), None, f"camera {index}")
        self._condition = threading.Condition()
        self._latest: tuple[np.ndarray, float] | None = (image, 0.0)
        self._grabbed = 1  # frames read from the camera so far
        self._running = True
        self._thread = threading.Thread(target=self._grab, name=f"camera {index}", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        """Background thread: read frames as fast as the camera delivers, keep only the newest."""
        while self._running:
            ok, image = self._capture.read()
            with self._condition:
                if not ok:
                    self._running = False
                else:
                    self._latest = (image, time.monotonic() - self._start)
                    self._grabbed += 1
                self._condition.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        seen = 0
        index = 0
        while True:
            with self._condition:
                if not self._condition.wait_for(
                    lambda: self._grabbed > seen or not self._running, timeout=CAMERA_FRAME_TIMEOUT_S
                ):
                    raise SourceError(f"camera {self.index}: no frame for {CAMERA_FRAME_TIMEOUT_S:.0f} s")
                if self._grabbed == seen:  # stopped: the camera went away or close() was called
                    return
                seen = self._grabbed
                image, timestamp = self._latest
            yield Frame(index, timestamp, image)
            index += 1

    def close(self) -> None:
        """Stop the grabber thread and release the camera."""
        with self._condition:
            self._running = False
            self._condition.notify_all()
        self._thread.join(timeout=CAMERA_FRAME_TIMEOUT_S)
        self._capture.release()

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Source = CameraSource | VideoFileSource | ImageSource


def open_source(spec: str | int | Path) -> Source:
    """Open a camera index, image file or video file; the one place a source spec is interpreted."""
    if isinstance(spec, str):
        spec = parse_source(spec)
    if isinstance(spec, int):
        return CameraSource(spec)
    path = Path(spec)
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; list its files with list_media() and open them one by one")
    return ImageSource(path) if media_kind(path) == "image" else VideoFileSource(path)
