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

import os
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from realtime.errors import SourceError, one_line
from realtime.io.camera import CAMERA_RECONNECT_S, CameraSource
from realtime.io.files import heif_still
from realtime.io.images import IMAGE_SUFFIXES, ImageSource, looks_like_a_video, quiet_pillow
from realtime.io.stream import DEFAULT_OPEN_TIMEOUT_S, DEFAULT_RECONNECT_FOR_S, StreamSource, is_stream_url, redacted
from realtime.io.video import VIDEO_SUFFIXES, VideoFileSource
from realtime.types import Frame, VideoInfo

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


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
    """Return "image" or "video" by suffix (a GIF of one frame is an image); with an unknown suffix, "image" if
    Pillow recognises the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "video" if looks_like_a_video(path) else "image"  # a video named as a photo is read as a video
    if suffix == ".gif" and path.is_file():
        return "image" if _still_gif(path) else "video"
    if suffix in VIDEO_SUFFIXES or not path.is_file():
        return "video"
    # what Pillow cannot identify is left to the video decoder (but a HEIC photo, which the photo reader names)
    return "image" if _pillow_reads(path) or heif_still(path) is not None else "video"


def _pillow_reads(path: Path) -> bool:
    """Whether Pillow identifies the file as an image (a very large one too: read_image() refuses it)."""
    try:
        with quiet_pillow():
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True
    except Exception:
        return False


def _still_gif(path: Path) -> bool:
    """Whether ``path`` is a GIF of one frame (a photo, not an animation)."""
    try:
        with quiet_pillow(), Image.open(path) as image:
            return image.format == "GIF" and not getattr(image, "is_animated", False)
    except Exception:  # not a GIF Pillow reads: left to the video decoder to judge
        return False


@dataclass
class FolderContents:
    """What a folder holds, as ``scan_folder`` found it; hidden files and folders are left out of every list.

    Each list is sorted by the path within the folder (``a.jpg`` before ``day1/a.jpg`` before ``z.jpg``).
    """

    media: list[Path] = field(default_factory=list)  # images and videos (in the subfolders too, when recursive)
    subfolders: list[Path] = field(default_factory=list)  # subfolders not entered (the scan was not recursive)
    unknown: list[Path] = field(default_factory=list)  # files whose suffix is no known image or video
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # subfolders that could not be read, and why
    repeated: list[Path] = field(default_factory=list)  # links to a folder already scanned (a loop, a second link)
    # names of images or videos that are no file to read (a broken link, a pipe, a device), and what they are
    not_files: list[tuple[Path, str]] = field(default_factory=list)


def _folder_identity(path: Path | str) -> tuple[int, int]:
    """(device, inode) of the folder ``path`` names, through any links: the same for every way to it."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def scan_folder(folder: Path | str, recursive: bool = False, skip: Iterable[Path | str] = ()) -> FolderContents:
    """The images, videos, subfolders and other files inside ``folder``; with ``recursive``, inside its subfolders too.

    Files are told apart by suffix only. Links to folders are followed, but a folder is entered once however many
    links lead to it, so a link loop ends there (it is listed in ``repeated``). Folders in ``skip`` (an output folder
    inside the input) are neither entered nor listed. A subfolder that cannot be read is listed in ``unreadable``;
    ``folder`` itself raises SourceError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"folder {folder}: no such folder", folder)
    skipped = set()
    for path in skip:
        with suppress(OSError):  # not there (yet): nothing to skip
            skipped.add(_folder_identity(path))
    contents = FolderContents()
    try:
        seen = {_folder_identity(folder)}
        entries = _entries(folder)
    except OSError as error:
        raise SourceError(f"folder {folder}: cannot read it ({one_line(error)})", folder) from error
    pending = [iter(entries)]  # depth first, in name order: which of two links to a folder is entered is fixed
    while pending:
        for entry in pending[-1]:
            path = Path(entry.path)
            try:
                is_folder = entry.is_dir()  # through a link too
            except OSError:
                is_folder = False
            if not is_folder:
                media = path.suffix.lower() in MEDIA_SUFFIXES
                try:
                    is_file = entry.is_file()
                except OSError:  # a link that cannot be followed (a loop)
                    is_file = False
                if is_file:
                    (contents.media if media else contents.unknown).append(path)
                elif media:  # named as one, but nothing to read
                    contents.not_files.append((path, _not_a_file(entry)))
                continue
            try:
                identity = _folder_identity(path)
            except OSError as error:
                contents.unreadable.append((path, one_line(error)))
                continue
            if identity in skipped:
                continue
            if not recursive:
                contents.subfolders.append(path)
            elif identity in seen:
                contents.repeated.append(path)
            else:
                seen.add(identity)
                try:
                    pending.append(iter(_entries(path)))
                except OSError as error:
                    contents.unreadable.append((path, one_line(error)))
                else:
                    break  # into the subfolder; the rest of this folder comes after it
        else:
            pending.pop()

    def within(path: Path) -> tuple[str, ...]:
        return path.relative_to(folder).parts

    for found in (contents.media, contents.subfolders, contents.unknown, contents.repeated):
        found.sort(key=within)
    for pairs in (contents.unreadable, contents.not_files):
        pairs.sort(key=lambda item: within(item[0]))
    return contents


def _not_a_file(entry: os.DirEntry) -> str:
    """What a folder's entry that is neither a file nor a folder is, in words."""
    if not entry.is_symlink():
        return "not a file (a pipe, socket or device)"
    link = f"a link to {os.readlink(entry.path)}"
    try:
        os.stat(entry.path)
    except FileNotFoundError:
        return f"{link}, which is not there"
    except OSError as error:
        return f"{link}, which cannot be followed ({error.strerror})"
    return f"{link}, which is not a file (a pipe, socket or device)"


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` that are not hidden (their names do not start with a dot), sorted by name."""
    with os.scandir(folder) as entries:
        return sorted((entry for entry in entries if not entry.name.startswith(".")), key=lambda entry: entry.name)


def list_media(folder: Path | str, recursive: bool = False) -> list[Path]:
    """The images and videos directly inside ``folder`` (with ``recursive``, in its subfolders too; hidden files and
    folders skipped), sorted by their path within it (see ``scan_folder``)."""
    contents = scan_folder(folder, recursive)
    if not contents.media:
        below = "" if recursive else media_below_hint(folder, contents, "list_media(folder, recursive=True) lists them")
        raise SourceError(f"folder {folder}: no images or videos in it{below}", folder)
    return contents.media


def media_below_hint(folder: Path | str, contents: FolderContents, how: str, skip: Iterable[Path | str] = ()) -> str:
    """For a folder that holds no media itself (``contents``, not recursive): ``", but N in its subfolders (<how>)"``,
    or "" when they hold none either."""
    if not contents.subfolders:
        return ""
    count = len(scan_folder(folder, recursive=True, skip=skip).media)
    return f", but {count} in its subfolders ({how})" if count else ""


def open_source(spec: str | int | Path, kind: str | None = None, *, open_timeout: float | None = None,
                reconnect_for: float | None = None, name: str | None = None) -> Source:
    """Open a camera index, a stream URL, a photo, a video file or the demo clip: the one place a source
    is interpreted.

    ``kind`` ("camera", "image", "video" or "demo") forces how ``spec`` is read, as the command
    line's --camera/--image/--video/--demo do; without it, digits mean a camera, ``scheme://...``
    a network camera or stream, and files are told apart by ``media_kind``. A stream waits at most
    ``open_timeout`` seconds for its first frame; a camera or stream that stalls or goes away is
    reopened for up to ``reconnect_for`` seconds before its recording ends (None: each kind's default).
    ``name``: how a file's ``issues`` name it (default: a video's file name, a photo's path).
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
        return ImageSource(path, name=name)
    if kind == "video":
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not looks_like_a_video(path) \
                and _pillow_reads(path):  # (neither: the video decoder says it cannot read it)
            raise SourceError(f"video {path}: a photo, not a video: analyse it with --image (in Python: "
                              "EmotionAnalyzer.analyze())", path)
        return VideoFileSource(path, name=name)
    raise ValueError(f"unknown source kind {kind!r}")
