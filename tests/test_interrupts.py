"""Stop signals wait for a frame's hand-off to the sinks (real signals sent to this process and to the command
line's)."""

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import av
import pytest

from realtime.cli import OUTPUT_FOLDER_MARK
from realtime.interrupts import SAME_STOP_S, FinishingBrokenOff, Stopped, frame_handoff, stop_signals
from realtime.io.files import KeptOutput

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
        time.sleep(2 * SAME_STOP_S)  # sooner, a Ctrl-C after a Ctrl-C would be a copy of it
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
        with pytest.raises(FinishingBrokenOff) as stop:
            with output:
                pass
    assert output.steps == ["last fragment"]
    assert stop.value.first == signal.SIGTERM  # what the run reports and exits with (143): it was "Ctrl-C twice"


def test_without_stop_signals_a_handoff_leaves_ctrl_c_as_python_has_it():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt):
            with frame_handoff():
                send_to_self(signal.SIGINT)
                pytest.fail("Python's own SIGINT handler raises at once")
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_copy_of_a_first_ctrl_c_is_the_same_stop():
    """``timeout -s INT`` signals the program, then its process group: one stop, twice within microseconds."""
    output = TwoStepFile(signal.SIGINT, signal.SIGINT)
    with stop_signals() as stops:
        with pytest.raises(KeyboardInterrupt) as stop:
            with output:
                pass
    assert not isinstance(stop.value, FinishingBrokenOff)
    assert output.steps == ["last fragment", "index"] and stops == [signal.SIGINT]


def test_a_ctrl_c_well_after_the_first_still_breaks_off_finishing():
    with stop_signals():
        with pytest.raises(KeyboardInterrupt) as stop:
            send_to_self(signal.SIGINT)
        assert not isinstance(stop.value, FinishingBrokenOff)
        time.sleep(4 * SAME_STOP_S)  # a person pressing again
        output = TwoStepFile(signal.SIGINT)
        with pytest.raises(FinishingBrokenOff):
            with output:
                pass
    assert output.steps == ["last fragment"]


def test_a_run_that_ends_the_program_leaves_ctrl_c_ignored_and_the_rest_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with stop_signals(program_ends=True):
            pass
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == before[1]
    finally:
        signal.signal(signal.SIGINT, before[0])


def interrupted_folder_run(folder: Path, out: Path, model: Path, second_ctrl_c) -> tuple[subprocess.Popen, str, str]:
    """Run the command line on ``folder``, Ctrl-C it once its first file is written, then call
    ``second_ctrl_c(process)``; returns the ended process, its stdout and its stderr."""
    results = out.parent / f"{out.name}.csv"
    process = subprocess.Popen([sys.executable, "-m", "realtime", str(folder), "-o", str(out), "-r", str(results),
                                "--model", str(model)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "clip00.mp4").exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)  # clip00 finished: the run is under way
        assert process.poll() is None, "the run ended before it could be interrupted"
        os.kill(process.pid, signal.SIGINT)
        second_ctrl_c(process)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process, stdout, stderr


def folder_of_clips(media: Path, tmp_path: Path) -> Path:
    """A folder of twelve short videos: long enough to be interrupted in the middle."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(12):
        (folder / f"clip{index:02}.mov").symlink_to(media / "noface_face.mov")
    return folder


@pytest.mark.parametrize("gap", [0, 0.02], ids=["back_to_back", "copy_after_the_handler_ran"])
def test_a_doubled_sigint_to_the_command_line_finishes_the_outputs_and_exits_130(gap, media, tiny_model, tmp_path):
    """Both copies sent at once (they may merge into one, as they mostly do for ``timeout -s INT``), or the copy
    a little later, once the first has been taken (as on a busy machine): one stop either way."""
    folder = folder_of_clips(media, tmp_path)
    sent_apart = []

    def copy_of_the_first(process):
        sent = time.monotonic()
        time.sleep(gap)
        os.kill(process.pid, signal.SIGINT)
        sent_apart.append(time.monotonic() - sent)

    for attempt in range(3):  # a busy machine can hold this test back past SAME_STOP_S: then it sent no copy
        out = tmp_path / f"out{attempt}"
        process, stdout, stderr = interrupted_folder_run(folder, out, tiny_model, copy_of_the_first)
        if sent_apart[-1] < SAME_STOP_S / 2:
            break
    assert sent_apart[-1] < SAME_STOP_S / 2, f"the two Ctrl-C were sent {sent_apart} s apart"
    assert process.returncode == 130, stderr
    assert "interrupted (Ctrl-C): outputs written so far are finished and kept" in stderr
    assert "twice" not in stderr and "Traceback" not in stderr
    assert "frames" in stdout  # the summary
    written = sorted(path.name for path in out.iterdir() if path.name != OUTPUT_FOLDER_MARK)
    assert "clip00.mp4" in written and all(not name.startswith(".") for name in written)  # no partial file
    for name in written:
        with av.open(str(out / name)) as container:  # every file, even the interrupted one, plays
            assert sum(1 for _ in container.decode(video=0)) > 0


def press_ctrl_c_from_the_summary_until_it_ends(process: subprocess.Popen) -> int:
    """Send SIGINT every 5 ms from the summary's frames/s line until ``process`` ends; returns how many were sent."""
    for line in process.stdout:
        if "frames/s" in line:  # the summary: the run has ended
            break
    presses, deadline = 0, time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
            presses += 1
        time.sleep(0.005)
    return presses


def test_ctrl_c_pressed_while_an_interrupted_run_exits_changes_nothing(media, tiny_model, tmp_path):
    """After the summary, Python shuts down; there it resets the Ctrl-C handler, and a press would kill the
    process by SIGINT (no exit code 130). Presses every 5 ms from the summary on reach every stage of the exit."""
    presses = []
    process, stdout, stderr = interrupted_folder_run(
        folder_of_clips(media, tmp_path), tmp_path / "out", tiny_model,
        lambda process: presses.append(press_ctrl_c_from_the_summary_until_it_ends(process)))
    assert presses[0] > 5  # the exit takes a while: it was pressed throughout
    assert process.returncode == 130, stderr
    assert "twice" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("attempt", range(3))
def test_ctrl_c_pressed_once_a_run_has_ended_changes_nothing(attempt, media, tiny_model, tmp_path):
    """A finished run pressed from its summary on: exit 0, no traceback (it was 130, or SIGINT, or a crash: a press
    while the run left its handlers made Python restore them during its shutdown, and the next press crashed it)."""
    process = subprocess.Popen([sys.executable, "-m", "realtime", str(media / "single_face.mp4"), "--max-frames", "5",
                                "-r", str(tmp_path / "r.csv"), "--model", str(tiny_model)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        presses = press_ctrl_c_from_the_summary_until_it_ends(process)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert presses > 5
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr


def test_a_ctrl_c_before_the_first_frame_says_so_and_shows_no_summary(media, tiny_model, tmp_path, monkeypatch,
                                                                       capsys):
    """A Ctrl-C as the video was opened was answered "outputs written so far are finished and kept" and a summary
    of "no faces found", with no video written."""
    import realtime.cli

    analysed = realtime.cli.process_source

    def ctrl_c_first(*args, **kwargs):
        send_to_self(signal.SIGINT)
        yield from analysed(*args, **kwargs)

    monkeypatch.setattr(realtime.cli, "process_source", ctrl_c_first)
    out = tmp_path / "out.mp4"
    assert realtime.cli.main(["--video", str(media / "single_face.mp4"), "-o", str(out), "--model",
                              str(tiny_model)]) == 130
    captured = capsys.readouterr()
    assert captured.err.strip() == "interrupted (Ctrl-C) before any frame was analysed" and captured.out == ""
    assert not out.exists()
