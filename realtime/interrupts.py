"""Ctrl-C, SIGTERM and SIGHUP as exceptions in the main thread, held back while a frame is handed to the sinks.

A stop that lands between two sinks would leave a frame counted in the summary and written to the results
but missing from the video. ``stop_signals()`` (the command line's) turns the three signals into
KeyboardInterrupt / ``Stopped``; inside ``frame_handoff()`` such a stop waits until the block ends, so every
sink gets the frame or none does; inside ``finishing_outputs()`` (a file sink's close) a first stop waits
until the file is finished. A second Ctrl-C while the outputs are being finished raises
``FinishingBrokenOff`` at once, so that the run can say what the break cost; a copy of the first that comes
within ``SAME_STOP_S`` of it (``timeout -s INT`` sends two) is the same stop. Without ``stop_signals()`` (the library in
someone else's program) signals keep their usual handlers and ``frame_handoff()`` changes nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
# A repeat of the stop signal just received, this soon after it, is the same stop, not a second one. One stop
# can arrive twice: coreutils' ``timeout -s INT`` signals the program and then its process group, and a
# wrapper that passes a terminal's Ctrl-C on to its child (which the terminal signalled too) does the same,
# so the copies come microseconds apart (milliseconds when the main thread is busy in C code before
# Python's handler runs). A person who means "stop now" presses again after seeing that the first press
# was taken, which takes longer than a visual reaction (about 0.25 s at the quickest), and keyboard
# auto-repeat waits 0.25 s or more (often 0.5 s) before it repeats a held key. Measured from the stop taken,
# so a stream of repeats (a held key) still counts as twice once the window has passed.
SAME_STOP_S = 0.25


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, taken like Ctrl-C: the outputs are finished, then the exit code is 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class FinishingBrokenOff(KeyboardInterrupt):
    """A Ctrl-C after the first stop (``first``, its signal number): finishing the outputs was broken off (the video
    may lack its last second)."""

    def __init__(self, first: int = signal.SIGINT):
        super().__init__(signal.Signals(first).name)
        self.first = first


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


def _ignore(signum, frame) -> None:
    """A handler that does nothing."""


def run_ended() -> None:
    """The run has ended (its outputs finished, its exit code decided): a Ctrl-C from here on, while the summary is
    printed and the program ends, changes nothing, until stop_signals() restores the handler after the run (or, if
    the program ends, leaves Ctrl-C ignored). Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _ignore)  # not SIG_IGN, which a signal caught but not yet handled would report


@contextmanager
def stop_signals(program_ends: bool = False) -> Iterator[list[int]]:
    """Within the block, Ctrl-C raises KeyboardInterrupt and SIGTERM / SIGHUP raise Stopped in the main
    thread, after any frame being handed to the sinks. SIGTERM and SIGHUP act once, so that a repeat does
    not break off finishing the outputs (SIGKILL still does; the outputs stay playable); a Ctrl-C after any
    first stop raises FinishingBrokenOff, unless it is a copy of a first Ctrl-C, within SAME_STOP_S of it
    (``timeout -s INT`` sends two). A signal ignored when the block begins (``nohup``) is left ignored. Yields the
    numbers of the signals received, in order (for code that sees only a plain KeyboardInterrupt: Ray turns any it
    meets into one).

    At the end the handlers before it are restored; with ``program_ends`` (the block is the program's run,
    which ends with it) Ctrl-C is left ignored instead: Python's shutdown would otherwise end the program by
    SIGINT, not its exit code. Nothing is changed while Python shuts down (a block left unfinished by a stop
    at its very end is finished then): a handler set then crashes the interpreter at the next signal."""
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    last = {}  # signal number: when it was last taken as a stop (time.monotonic())

    def stop(signum, frame):
        now = time.monotonic()
        if signum in last and now - last[signum] < SAME_STOP_S:
            return  # a copy of the stop just taken
        last[signum] = now
        if signum in STOP_SIGNALS:
            for number in STOP_SIGNALS:
                signal.signal(number, signal.SIG_IGN)
            interruption = Stopped(signum)
        else:
            interruption = FinishingBrokenOff(stopped[0]) if stopped else KeyboardInterrupt()
        stopped.append(signum)
        if not _state.inside or (_state.breakable and isinstance(interruption, FinishingBrokenOff)):
            raise interruption
        if _state.held is None:
            _state.held = interruption

    # a signal ignored by whoever started the program stays so (nohup ignores SIGHUP, a script's background job SIGINT)
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, *STOP_SIGNALS)
                if signal.getsignal(number) != signal.SIG_IGN}
    try:
        yield stopped
    finally:
        if not sys.is_finalizing():
            _restore(previous, last, program_ends)


def _restore(previous: dict, last: dict, program_ends: bool) -> None:
    """stop_signals()' end: put back the ``previous`` handlers (Ctrl-C's ignored if the ``program_ends``), once
    the copies of the last stops taken (``last``) can no longer come."""
    if program_ends:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous = {number: handler for number, handler in previous.items() if number != signal.SIGINT}
    if last and (copies_until := max(last.values()) + SAME_STOP_S) > time.monotonic():
        # a stop ended the block sooner than its copy may come: the copy must not meet the handlers restored
        # (Python's would end the program with a KeyboardInterrupt instead of its exit code)
        for number in previous:
            signal.signal(number, _ignore)  # not SIG_IGN, which a signal caught but not yet handled would report
        time.sleep(max(0.0, copies_until - time.monotonic()))
    for number, handler in previous.items():
        signal.signal(number, handler)
