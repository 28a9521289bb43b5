"""Stop signals wait for a frame's hand-off to the sinks (real signals sent to this process)."""

import signal
import threading

import pytest

from realtime.interrupts import FinishingBrokenOff, Stopped, frame_handoff, stop_signals
from realtime.io.files import KeptOutput


def send_to_self(signum: int) -> None:
    """Send ``signum`` to this (the main) thread; its Python handler runs within the next few bytecodes.

    Sent to the process instead, the kernel may hand it to another thread (onnxruntime's, TensorFlow's), which
    on a busy machine may not run its C handler before the loop below has ended."""
    signal.pthread_kill(threading.main_thread().ident, signum)
    for _ in range(10_000):
        pass


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Stopped),
                                            (signal.SIGHUP, Stopped)])
def test_a_stop_during_a_frame_handoff_is_raised_when_every_sink_has_the_frame(signum, raised):
    sinks_done = []
    with stop_signals():
        with pytest.raises(raised) as stop:
            with frame_handoff():
                sinks_done.append("summary")
                send_to_self(signum)
                sinks_done.append("results")
                sinks_done.append("video")
    assert sinks_done == ["summary", "results", "video"]
    assert getattr(stop.value, "signum", signal.SIGINT) == signum


def test_a_stop_between_frames_is_raised_at_once_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    after_the_signal = []
    with stop_signals():
        with pytest.raises(Stopped):
            send_to_self(signal.SIGTERM)
            after_the_signal.append("ran")
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # a repeat does not break off finishing
    assert after_the_signal == []
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_after_a_first_stop_says_that_finishing_was_broken_off(first):
    with stop_signals():
        with pytest.raises(KeyboardInterrupt) as stop:
            send_to_self(first)
        assert not isinstance(stop.value, FinishingBrokenOff)
        with pytest.raises(FinishingBrokenOff):  # e.g. while the video's last fragment is being written
            send_to_self(signal.SIGINT)


class TwoStepFile(KeptOutput):
    """A file sink whose finishing takes two steps (as a video's last fragment, then its index), with
    ``signals`` arriving between them."""

    def __init__(self, *signals: int):
        self.signals, self.steps = signals, []

    def close(self) -> None:
        self.steps.append("last fragment")
        for signum in self.signals:
            send_to_self(signum)
        self.steps.append("index")


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Stopped)])
def test_a_stop_while_an_output_is_finished_waits_until_it_is_whole(signum, raised):
    """The run's frames are all written and the video is being finished when the stop comes."""
    output = TwoStepFile(signum)
    with stop_signals():
        with pytest.raises(raised):
            with output:
                pass
    assert output.steps == ["last fragment", "index"]


def test_a_second_ctrl_c_while_an_output_is_finished_breaks_it_off_at_once():
    output = TwoStepFile(signal.SIGTERM, signal.SIGINT)
    with stop_signals():
        with pytest.raises(FinishingBrokenOff):
            with output:
                pass
    assert output.steps == ["last fragment"]


def test_without_stop_signals_a_handoff_leaves_ctrl_c_as_python_has_it():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt):
            with frame_handoff():
                send_to_self(signal.SIGINT)
                pytest.fail("Python's own SIGINT handler raises at once")
    finally:
        signal.signal(signal.SIGINT, previous)
