"""Ctrl-C, SIGTERM and SIGHUP as exceptions in the main thread, held back while a frame is handed to the sinks.

A stop that lands between two sinks would leave a frame counted in the summary and written to the results
but missing from the video. ``stop_signals()`` (the command line's) turns the three signals into
KeyboardInterrupt / ``Stopped``; inside ``frame_handoff()`` such a stop waits until the block ends, so every
sink gets the frame or none does; inside ``finishing_outputs()`` (a file sink's close) a first stop waits
until the file is finished. A second Ctrl-C while the outputs are being finished raises
``FinishingBrokenOff`` at once, so that the run can say what the break cost. Without ``stop_signals()`` (the library in
someone else's program) signals keep their usual handlers and ``frame_handoff()`` changes nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, taken like Ctrl-C: the outputs are finished, then the exit code is 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class FinishingBrokenOff(KeyboardInterrupt):
    """A Ctrl-C after the first stop: finishing the outputs was broken off (the video may lack its last second)."""


class _HandoffState:
    """Whether the main thread is inside frame_handoff() or finishing_outputs(), and the stop that arrived
    meanwhile; ``breakable``: inside finishing_outputs(), where a second Ctrl-C is raised at once."""

    inside = False
    breakable = False
    held: KeyboardInterrupt | None = None


_state = _HandoffState()


@contextmanager
def frame_handoff() -> Iterator[None]:
    """Within the block, a stop caught by stop_signals() is raised only at its end (main thread only)."""
    with _stops_held(breakable=False):
        yield


@contextmanager
def finishing_outputs() -> Iterator[None]:
    """Within the block (a file being finished), a first stop caught by stop_signals() is raised only at its
    end, so the file is whole; a Ctrl-C after a first stop (FinishingBrokenOff) is raised at once."""
    with _stops_held(breakable=True):
        yield


@contextmanager
def _stops_held(breakable: bool) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or _state.inside:
        yield
        return
    _state.inside, _state.breakable, _state.held = True, breakable, None
    try:
        yield
    finally:
        _state.inside, held = False, _state.held
        _state.held = None
    if held is not None:
        raise held


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Within the block, Ctrl-C raises KeyboardInterrupt and SIGTERM / SIGHUP raise Stopped in the main
    thread, after any frame being handed to the sinks. SIGTERM and SIGHUP act once, so that a repeat does
    not break off finishing the outputs (SIGKILL still does; the outputs stay playable); a Ctrl-C after any
    first stop raises FinishingBrokenOff. Yields the numbers of the signals received, in order (for code
    that sees only a plain KeyboardInterrupt: Ray turns any it meets into one)."""
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def stop(signum, frame):
        if signum in STOP_SIGNALS:
            for number in STOP_SIGNALS:
                signal.signal(number, signal.SIG_IGN)
            interruption = Stopped(signum)
        else:
            interruption = FinishingBrokenOff() if stopped else KeyboardInterrupt()
        stopped.append(signum)
        if not _state.inside or (_state.breakable and isinstance(interruption, FinishingBrokenOff)):
            raise interruption
        if _state.held is None:
            _state.held = interruption

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, *STOP_SIGNALS)}
    try:
        yield stopped
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
