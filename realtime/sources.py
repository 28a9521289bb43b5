"""What a source is, and the one function that turns what a user names into an open source.

Every source is a context manager with ``info`` (a ``VideoInfo``), ``live`` (frames are captured
now, so the loop keeps their capture times and never waits for old ones), ``audio_path`` (a file
whose audio an annotated copy can carry, or None) and iterates ``Frame``s. Files are checked before
a decoder sees them and the first frame is read up front, so a bad source fails immediately with a
one-line ``SourceError`` that names it. Video files and cameras also have ``issues``: a line for
each damaged stretch skipped, a cut-short end or a camera outage, complete once the iteration has
ended (video files count the frames lost in ``frames_lost``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from realtime.errors import SourceError
from realtime.io.camera import CAMERA_RECONNECT_S, CameraSource
from realtime.io.images import IMAGE_SUFFIXES, ImageSource
from realtime.io.stream import DEFAULT_OPEN_TIMEOUT_S, DEFAULT_RECONNECT_FOR_S, StreamSource, is_stream_url, redacted
from realtime.io.video import VIDEO_SUFFIXES, VideoFileSource
from realtime.types import Frame, VideoInfo


@runtime_checkable
class Source(Protocol):
    """Frames from a camera, a file or anything else, in order."""

    info: VideoInfo
    live: bool
    audio_path: Path | None

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc) -> None: ...


def parse_source(text: str) -> int | str | Path:
    """Digits mean a camera index, ``scheme://...`` a network stream (kept as text), anything else a file path.
    A file or folder that is there is taken as it is named, spaces around it and all digits included
    (a folder ``2024``; ``--camera 2024`` would be the camera)."""
    text = str(text)
    stripped = text.strip()
    if not stripped:
        raise SourceError("no source given: pass a camera index (e.g. 0), a stream URL or a file path")
    if is_stream_url(stripped):
        return stripped
    as_named = Path(text).expanduser()
    if as_named.exists():
        return as_named
    return int(stripped) if stripped.isdigit() else Path(stripped).expanduser()


def media_kind(path: Path | str) -> str:
    """Return "image" or "video" by suffix; with an unknown suffix, "image" if Pillow recognises the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES or not path.is_file():
        return "video"
    try:
        with warnings.catch_warnings():  # a very large image is still an image; read_image() refuses it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return "image"
    except Image.DecompressionBombError:
        return "image"
    except Exception:  # anything Pillow cannot identify is left to the video decoder to judge
        return "video"


def list_media(folder: Path | str) -> list[Path]:
    """The images and videos directly inside ``folder`` (hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"folder {folder}: no such folder", folder)
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )
    if not files:
        raise SourceError(f"folder {folder}: no images or videos in it", folder)
    return files


def open_source(spec: str | int | Path, kind: str | None = None, *, open_timeout: float | None = None,
                reconnect_for: float | None = None) -> Source:
    """Open a camera index, a stream URL, a photo, a video file or the demo clip: the one place a source
    is interpreted.

    ``kind`` ("camera", "image", "video" or "demo") forces how ``spec`` is read, as the command
    line's --camera/--image/--video/--demo do; without it, digits mean a camera, ``scheme://...``
    a network camera or stream, and files are told apart by ``media_kind``. A stream waits at most
    ``open_timeout`` seconds for its first frame; a camera or stream that stalls or goes away is
    reopened for up to ``reconnect_for`` seconds before its recording ends (None: each kind's default).
    """
    if kind == "demo":
        from realtime.demo import demo_source  # builds the clip with scikit-image: only when asked

        return demo_source()
    if isinstance(spec, str):
        spec = parse_source(spec)
    if isinstance(spec, str):
        if kind not in (None, "camera"):
            raise SourceError(f"{redacted(spec)}: a stream URL is a camera, not {'an' if kind == 'image' else 'a'} {kind}")
        return StreamSource(spec, open_timeout=DEFAULT_OPEN_TIMEOUT_S if open_timeout is None else open_timeout,
                            reconnect_for=DEFAULT_RECONNECT_FOR_S if reconnect_for is None else reconnect_for)
    if kind is None:
        kind = "camera" if isinstance(spec, int) else media_kind(spec)
    if kind == "camera":
        return CameraSource(int(spec), reconnect_for=CAMERA_RECONNECT_S if reconnect_for is None else reconnect_for)
    path = Path(spec)
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; list its files with realtime.sources.list_media() and open them "
                          "one by one", path)
    if kind == "image":
        return ImageSource(path)
    if kind == "video":
        return VideoFileSource(path)
    raise ValueError(f"unknown source kind {kind!r}")
