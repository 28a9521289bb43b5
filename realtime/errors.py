"""The project's user-facing errors: one line each, naming the file or device they are about."""

from __future__ import annotations

from pathlib import Path


class EmotionTracerError(Exception):
    """Base of the errors a user sees as one ``error:`` line; ``path`` is the file it is about, if any."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(" ".join(str(message).split()))
        self.path = path


class SourceError(EmotionTracerError):
    """A source cannot be opened or read."""


class OutputError(EmotionTracerError):
    """An output cannot be written."""


class ModelError(EmotionTracerError):
    """The emotion model is missing, unreadable or not an Emotion Tracer model."""


def one_line(error: BaseException) -> str:
    """An exception's reason on one line, in words: the system's or FFmpeg's text without its
    ``[Errno N]`` code and the file name the surrounding message already gives (the exception's
    type name when it has no message)."""
    reason = getattr(error, "strerror", None)
    if not isinstance(reason, str) or not reason.strip():
        reason = str(error)
    return " ".join(reason.split()) or type(error).__name__
