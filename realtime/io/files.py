"""File checks and atomic writing shared by every file source and sink."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

from realtime.errors import OutputError, SourceError, one_line
from realtime.interrupts import finishing_outputs

LOG = logging.getLogger("emotion_tracer.files")
# Major brands of ISO box files that hold still images (HEIC from phones, AVIF), not video.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


def ffmpeg_file(path: Path | str) -> str:
    """A local file's path as FFmpeg is given it: "file:" first, so that a name such as "12:30.mp4" or
    "udp:5000.mp4" is not taken for a protocol (an error, or a network address)."""
    return f"file:{path}"


def check_input_file(path: Path, kind: str) -> None:
    """Raise SourceError unless ``path`` is an existing, readable, non-empty file."""
    if not path.exists():
        raise SourceError(f"{kind} {path}: no such file", path)
    if not path.is_file():
        raise SourceError(f"{kind} {path}: not a file", path)
    if not os.access(path, os.R_OK):
        raise SourceError(f"{kind} {path}: permission denied", path)
    if path.stat().st_size == 0:
        raise SourceError(f"{kind} {path}: file is empty", path)


def check_name_length(path: Path, remedy: str = "choose a shorter name") -> None:
    """OutputError when a name in ``path`` (its last, or a folder's) is longer than the file system takes (255 bytes
    on most)."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):  # a folder not there (yet), or a system that does not say
        limit = 255
    for name in path.parts:
        length = len(os.fsencode(name))
        if length > limit:
            whose = "" if name == path.name else f" ({name[:20]}...)"
            raise OutputError(f"{path}: a name of {length} bytes{whose}, more than the {limit} the file system "
                              f"takes; {remedy}", path)


def check_output_path(path: Path | str, allowed_suffixes: Iterable[str]) -> Path:
    """Check, before any work starts, that ``path`` can be written: a name the file system takes, known suffix,
    existing writable folder."""
    path = Path(path).expanduser()
    check_name_length(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file name", path)
    if str(path) == "-" or (path.exists() and not path.is_file()):  # standard output, /dev/null, a pipe
        raise OutputError(f"{path}: outputs are written to files ({', '.join(allowed_suffixes)}), not to standard "
                          "output or a device; give a file name", path)
    check_output_suffix(path, allowed_suffixes)
    folder = path.parent
    if not folder.is_dir():
        missing = next((above for above in [*reversed(folder.parents), folder] if not above.is_dir()), folder)
        if missing.exists():  # out.jpg/x.mp4: a file where a folder is named
            raise OutputError(f"{path}: {missing} is a file, not a folder", path)
        raise OutputError(f"{path}: folder {folder} does not exist", path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {folder} is not writable", path)
    _try_writing(path)
    return path


def check_output_suffix(path: Path, allowed_suffixes: Iterable[str]) -> None:
    """OutputError unless ``path`` ends in one of ``allowed_suffixes`` (any case)."""
    allowed = tuple(allowed_suffixes)
    if not path.suffix and path.name.lower() in allowed:  # ".mp4": a hidden file without a suffix, to Python
        raise OutputError(f"{path}: has no name before {path.name!r}; give one, e.g. out{path.name}", path)
    if path.suffix.lower() not in allowed:
        raise OutputError(f"{path}: unsupported output type {path.suffix or '(none)'!r}; use {', '.join(allowed)}",
                          path)


def check_output_folder(folder: Path) -> None:
    """Check, before any work starts, that files can be created in ``folder`` (or that it can be made)."""
    check_name_length(folder)
    if folder.is_dir():
        try:
            _try_writing(folder / f".{secrets.token_hex(4)}.probe")
        except OutputError as error:  # named by the folder, not by the probe file
            raise OutputError(f"{folder}: cannot write in it ({one_line(error.__cause__)})", folder) from error
        return
    try:
        folder.mkdir()
        folder.rmdir()
    except OSError as error:
        raise OutputError(f"{folder}: cannot create the folder ({one_line(error)})", folder) from error


def _try_writing(path: Path) -> None:
    """Open ``path`` for writing without changing it (a new file is removed again), or raise OutputError.

    Catches what permission bits do not show: read-only or special file systems (/proc), root's
    writes refused, a file that is in the way.
    """
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{path}: is a link to {os.readlink(path)}, which is not there; remove the link or "
                          "choose another name", path)
    try:
        if path.exists():
            with open(path, "ab"):
                pass
        else:
            with open(path, "xb"):
                pass
            path.unlink()
    except OSError as error:
        raise OutputError(f"{path}: cannot write it ({one_line(error)})", path) from error


class OutputClaim:
    """A run's lock on one of its outputs (``claim_output``), held until ``release`` or the process's end."""

    def __init__(self, lock: int, lock_file: Path):
        self.lock, self.lock_file = lock, lock_file

    def release(self) -> None:
        """Let the output go; the lock file goes too unless another run holds it (shared claims)."""
        import fcntl
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.lock_file.unlink()  # a run that opened it meanwhile sees it gone and makes another (claim_output)
        except OSError:
            pass
        os.close(self.lock)


# tries at a lock another run holds, LOCK_RETRY_S apart: a run letting a lock go holds it alone a moment, to remove
# its file (OutputClaim.release), and a shared claim must not be refused then
LOCK_ATTEMPTS, LOCK_RETRY_S = 10, 0.01


def claim_output(path: Path, shared: bool = False) -> OutputClaim | None:
    """Claim the output ``path`` (a file or a folder a run is to write) for this process, until the claim is
    released or the process ends, however it ends: OutputError when another run holds it (two runs writing one
    file would each destroy what the other wrote). ``shared``: a claim other shared claims do not refuse (a folder
    that single-file runs write in, which a folder run must not claim meanwhile). The locks are files named by a
    hash of the output's real path, in a private folder of the temporary folder; None where outputs cannot be
    locked (no such folder, one not this user's alone, a system without flock)."""
    try:
        import fcntl
    except ImportError:  # (Windows)
        return None
    key = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / f"emotion-tracer-outputs-in-use-{os.getuid()}"
    lock_file = folder / key
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        status = folder.lstat()
    except OSError:
        return None
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or not folder.is_dir():  # not ours alone
        return None
    for attempt in range(LOCK_ATTEMPTS):
        try:
            lock = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            held = True
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(lock)
                return None
            held = False
        if held and _names(lock_file, lock):
            return OutputClaim(lock, lock_file)
        # held by another run (which may be letting it go: its release holds it alone a moment), or let go and
        # removed since it was opened: try again, at the file there now
        os.close(lock)
        if not held:
            if attempt == LOCK_ATTEMPTS - 1:
                raise OutputError(f"{path}: another run is writing {'in ' * shared}it; wait for that run to end, or "
                                  "choose another name", path)
            time.sleep(LOCK_RETRY_S)
    return None


def _names(lock_file: Path, lock: int) -> bool:
    """Whether ``lock_file`` is still the name of the open file ``lock``."""
    try:
        named, opened = lock_file.stat(), os.fstat(lock)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def through_links(path: Path) -> Path:
    """The file an output named ``path`` is renamed into place as: a symbolic link's target (the link stays a
    link, and its target gets the output) when that is a file in a folder this process can write in, else
    ``path`` (the link itself is replaced by the output)."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if (target.is_file() or not target.exists()) and os.access(target.parent, os.W_OK | os.X_OK):
        return target
    return path


def detach_hard_link(path: Path) -> None:
    """Remove a file at ``path`` that has other names (hard links) before an output is written there: the output
    is a new file, and the other names keep what they had (a file written in place, then renamed into place
    when finished, would leave them a half-made copy)."""
    try:
        if not path.is_symlink() and path.is_file() and path.stat().st_nlink > 1:
            path.unlink()
    except OSError:
        pass  # writing it says what is wrong


MAX_NAME_BYTES = 255  # a file name's length at most on the usual file systems


def partial_path(path: Path) -> Path:
    """A hidden, unique file name beside ``path`` (same file system, so the final rename is atomic); ``path``'s name
    is cut where the whole would be longer than a file system takes (a partial copy of a partial copy)."""
    token = f".{secrets.token_hex(4)}.part"
    name = os.fsencode(path.name)[:MAX_NAME_BYTES - 1 - len(token)]
    return path.with_name(f".{os.fsdecode(name)}{token}")


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists (it does not when a folder on its way is a file now)."""
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a partial file renamed into place: never a half-written file (when
    writing fails, a file already at ``path`` stays as it was). Through a symbolic link, its target gets the data."""
    target = through_links(path)
    temp = partial_path(target)
    try:
        with open(temp, "xb") as file:
            file.write(data)
        os.replace(temp, target)
    except OSError as error:
        remove_quietly(temp)
        raise OutputError(f"{path}: cannot write it ({one_line(error)}); nothing of it was written", path) from error
    except BaseException:  # Ctrl-C, SIGTERM: no partial file is left beside the output
        remove_quietly(temp)
        raise


def out_of_space(error: BaseException) -> bool:
    """Whether ``error``, or the error that caused it, is a full disk or an exhausted disk quota."""
    while error is not None:
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__
    return False


class KeptOutput(ABC):
    """Base of the file sinks that keep what they wrote whatever ends their ``with`` block.

    On a clean exit ``close()`` finishes the file and its errors propagate; when an exception ends the
    block, the file is finished just the same and that exception is the one reported, except when it is
    this file's own failure (an OutputError with the same cause): then ``close()``'s error, which says what
    the finished file keeps, takes its place, so that the failure is told once.
    """

    @abstractmethod
    def close(self) -> None:
        """Finish the file (it stays playable / readable)."""

    def holds_nothing(self) -> bool:
        """Whether nothing was written (a stop then leaves no file, and there is nothing to say about it)."""
        return False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        finished_failure = None
        with finishing_outputs():  # a stop that comes meanwhile waits until the file is whole
            if exc_type is None:
                self.close()
                return
            try:
                self.close()
            except OutputError as error:
                if isinstance(exc, OutputError) and error.__cause__ is not None and error.__cause__ is exc.__cause__:
                    finished_failure = error
                elif not (isinstance(exc, KeyboardInterrupt) and self.holds_nothing()):
                    LOG.warning("warning: %s", error)  # the exception that ended the block is reported; this too
        if finished_failure is not None:  # raised after a stop that came meanwhile, which goes first
            raise finished_failure


def file_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of a regular file (fewer if it is shorter); b"" for anything else."""
    try:
        if not path.is_file():  # a named pipe would block the read
            return b""
        with open(path, "rb") as file:
            return file.read(size)
    except OSError:
        return b""


def heif_still(path: Path) -> bytes | None:
    """The brand of a HEIF/AVIF still image (an ISO box file of a still-image brand: b"heic" for an iPhone's
    photo, b"avif"), else None."""
    return heif_brand(file_head(path, 12))


def heif_brand(head: bytes) -> bytes | None:
    """``heif_still`` of a file that begins with ``head`` (its first 12 bytes or more)."""
    return head[8:12] if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS else None
