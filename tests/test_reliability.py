"""Fault injection on real media, encoders and processes: what was analysed is kept (README: "What happens
when something goes wrong").

Signals go to a real ``python -m realtime``; damaged, cut-short and variable-frame-rate videos are
made here from ../shared/media; the full disk is a real 512 KB tmpfs (skipped where mounting is not
allowed); the stalling camera stands in for cv2.VideoCapture only.
"""

from __future__ import annotations

import csv
import errno
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import realtime.cli
import realtime.io.video
import realtime.sources
from realtime.cli import OUTPUT_FOLDER_MARK as MARK
from realtime.cli import main
from realtime.errors import OutputError
from realtime.io.camera import CameraSource
from realtime.io.images import read_image
from realtime.io.video import VideoFileSource
from tests.conftest import PROJECT_ROOT, SHARED_MEDIA
from tests.test_sources import ClosedCapture, FakeCapture

# fault -> exit code, as in the README's table of faults (None: the process is killed, no code)
EXIT_CODES = {
    "SIGTERM": 143, "SIGHUP": 129, "SIGKILL": None, "damaged stretch": 3, "cut short": 3, "camera stall": 3,
    "folder file fails part way": 3, "disk full": 1, "unwritable output": 2,
}
TIME_BASE = Fraction(1, 15360)


def source_frames(loops: int = 1) -> list[np.ndarray]:
    """The frames of the shared single_face.mp4 (72, 640x360), ``loops`` times over."""
    with av.open(str(SHARED_MEDIA / "single_face.mp4")) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return frames * loops


def encode(target: Path, frames: list[np.ndarray], times: list[float], gop: int = 10, audio: bool = True) -> Path:
    """An H.264 MP4 (index in front) of ``frames`` shown at ``times``, keyframe every ``gop`` frames,
    with the shared clip's audio re-encoded to AAC when ``audio``."""
    height, width = frames[0].shape[:2]
    with av.open(str(target), "w", options={"movflags": "+faststart"}) as output, \
            av.open(str(SHARED_MEDIA / "single_face.mp4")) as source:
        video = output.add_stream("libx264", rate=30, options={"preset": "ultrafast", "g": str(gop)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = TIME_BASE
        sound = output.add_stream("aac", rate=source.streams.audio[0].codec_context.sample_rate,
                                  layout="stereo") if audio else None
        for image, seconds in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(seconds / TIME_BASE), TIME_BASE
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if sound is not None:
            for frame in source.decode(audio=0):
                frame.pts = None
                output.mux(sound.encode(frame))
            output.mux(sound.encode(None))
    return target


def clip(target: Path, loops: int = 1, audio: bool = True) -> Path:
    frames = source_frames(loops)
    return encode(target, frames, [index / 30 for index in range(len(frames))], audio=audio)


def played(path: Path) -> list[float]:
    """The time of every frame a player decodes from ``path``, to its end (raises if it cannot)."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


@pytest.fixture(scope="module")
def long_clip(media, tmp_path_factory) -> Path:
    """576 frames (19.2 s) of the shared face clip, no audio: long enough to be stopped part way."""
    return clip(tmp_path_factory.mktemp("long") / "long.mp4", loops=8, audio=False)


def start_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "realtime", *args], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; fail if the run ends first (not a speed requirement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def has_rows(path: Path) -> bool:
    return path.exists() and len(rows(path)) >= 5


def has_fragment(path: Path) -> bool:
    try:
        return len(played(path)) >= 30
    except (av.FFmpegError, OSError):
        return False


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_stop_signals_finish_the_outputs_like_ctrl_c(long_clip, tiny_model, tmp_path, name):
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    process = start_run("--video", str(long_clip), "-o", str(out), "-r", str(results), "--model", str(tiny_model))
    try:
        wait_for(lambda: has_rows(results), process, "rows in the results file")
        process.send_signal(getattr(signal, name))
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_CODES[name], stderr
    assert f"interrupted ({name})" in stderr and "Traceback" not in stderr
    frames = int(re.match(r"(\d+) frames", stdout).group(1))  # the summary
    assert 5 <= frames < 576
    times = played(out)  # a finished file: plays to its end, every analysed frame in it
    assert len(times) == frames and times == pytest.approx([index / 30 for index in range(frames)], abs=1e-3)
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == frames  # a normal MP4 with its index again
    assert [int(row["frame"]) for row in rows(results)] == list(range(frames))  # one face in every frame
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.csv"]


@pytest.mark.parametrize("name", ["SIGHUP", "SIGINT"])
def test_a_signal_ignored_by_whoever_started_the_run_stays_ignored(long_clip, tiny_model, tmp_path, name):
    """``nohup python -m realtime ... &`` and a log-out: the run stopped at the hang-up (exit 129), where nohup had
    set it to be ignored; likewise Ctrl-C for a script's background job."""
    number = getattr(signal, name)
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "realtime", "--video", str(long_clip), "-o", str(out), "-r", str(results), "--model",
         str(tiny_model)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(number, signal.SIG_IGN))  # as nohup
    try:
        wait_for(lambda: has_rows(results), process, "rows in the results file")
        process.send_signal(number)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "interrupted" not in stderr and stdout.startswith("576 frames")
    assert len(played(out)) == 576


def test_kill_9_leaves_a_playable_video_and_the_rows_at_the_final_paths(long_clip, tiny_model, tmp_path):
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    process = start_run("--video", str(long_clip), "-o", str(out), "-r", str(results), "--model", str(tiny_model))
    try:
        wait_for(lambda: has_rows(results) and has_fragment(out), process, "a first fragment and rows")
        process.kill()
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    times = played(out)  # plays from the start to its last complete fragment, without error
    assert len(times) >= 30 and times == pytest.approx([index / 30 for index in range(len(times))], abs=1e-3)
    frames = [int(row["frame"]) for row in rows(results)]  # whole rows only, none missing before the last
    assert len(frames) >= 5 and frames == list(range(len(frames)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.csv"]


def test_frames_the_decoder_hid_damage_in_are_skipped_as_lost(media, tmp_path):
    """4000 bytes zeroed in test.mp4: H.264's decoder conceals the damage (no error; PyAV flags the frame corrupt)
    and the frames after it up to the next keyframe are made from it. They were analysed as they came (their
    lower half green blocks, a label changed) with no word of the damage."""
    data = bytearray((media / "test.mp4").read_bytes())
    data[len(data) // 3:len(data) // 3 + 4000] = bytes(4000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with VideoFileSource(media / "test.mp4") as source:
        whole = {frame.index: frame.image for frame in source}
    with VideoFileSource(damaged) as source:
        kept = {frame.index: frame.image for frame in source}
    assert len(whole) == 115 and source.frames_lost == 115 - len(kept) > 0
    assert all(np.array_equal(image, whole[index]) for index, image in kept.items())  # none made from the damage
    [issue] = source.issues  # one stretch: from the damaged frame to the next keyframe
    assert re.fullmatch(r"video damaged\.mp4: damaged data from [\d.]+ s to [\d.]+ s skipped \(\d+ frames lost\)",
                        issue)
    with av.open(str(media / "test.mp4")) as container:  # random bytes in the last packet: its frame, a B-frame
        *_, last = [packet for packet in container.demux(video=0) if packet.size]
    data = bytearray((media / "test.mp4").read_bytes())
    data[last.pos + last.size // 3:last.pos + last.size - 4] = np.random.default_rng(1).integers(
        0, 256, last.size - last.size // 3 - 4, dtype=np.uint8).tobytes()
    damaged.write_bytes(bytes(data))
    with VideoFileSource(damaged) as source:
        kept = {frame.index: frame.image for frame in source}
    # only itself is lost (no frame is made from a B-frame); it said "frames end at 4.62 s but the file says 4.62 s"
    assert source.frames_lost == 115 - len(kept) == 1 and len(source.issues) == 1
    assert "damaged data from" in source.issues[0] and "(1 frame lost)" in source.issues[0]


def test_a_damaged_stretch_is_skipped_and_reported_once(media, tiny_model, tmp_path, capsys):
    data = bytearray(clip(tmp_path / "clean.mp4").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 10_000] = bytes(10_000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    assert main(["--video", str(damaged), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["damaged stretch"]
    captured = capsys.readouterr()
    [warning] = warnings(captured.err)
    lost = int(re.search(r"\((\d+) frames? lost\)", warning).group(1))
    assert "damaged data from" in warning and 1 <= lost <= 20  # the stretch up to the next keyframe
    times = played(out)
    assert len(times) == 72 - lost and f"{72 - lost} frames" in captured.out
    assert "incomplete (1 problem" in captured.out
    jumps = np.diff(times)
    assert jumps.max() == pytest.approx((lost + 1) / 30, abs=1e-3)  # the gap stays where it was
    assert [float(row["time"]) for row in rows(results)] == pytest.approx(times, abs=1e-3)
    with av.open(str(out)) as container:  # the audio is whole: it is not shifted by the gap
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(2.4, abs=0.1)


def test_a_cut_short_video_is_reported(media, tiny_model, tmp_path, capsys):
    data = clip(tmp_path / "whole.mp4").read_bytes()  # index in front: the file says 72 frames
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # a half-finished download
    out = tmp_path / "out.mp4"
    assert main(["--video", str(cut), "-o", str(out), "--model", str(tiny_model)]) == EXIT_CODES["cut short"]
    captured = capsys.readouterr()
    [warning] = warnings(captured.err)
    kept = len(played(out))
    assert 10 < kept < 72 and f"{kept} frames" in captured.out
    assert "cut short" in warning and f"({72 - kept} frames lost)" in warning and "says 2.40 s" in warning


def test_a_variable_frame_rate_keeps_its_frame_times(media, tiny_model, tmp_path):
    frames = source_frames()
    steps = np.random.default_rng(9).choice([1 / 60, 1 / 30, 1 / 12, 0.25], size=len(frames))
    times = list(np.concatenate([[0.0], np.cumsum(steps[:-1])]).round(4))
    vfr = encode(tmp_path / "vfr.mp4", frames, times)
    with VideoFileSource(vfr) as source:
        assert [frame.timestamp for frame in source] == pytest.approx(times, abs=1e-3)
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    assert main(["--video", str(vfr), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) == 0
    assert played(out) == pytest.approx(times, abs=1e-3)  # not re-timed to the average rate
    assert [float(row["time"]) for row in rows(results)] == pytest.approx(times, abs=1e-3)
    with av.open(str(out)) as container:  # the audio is there, starting with the video
        audio = container.streams.audio[0]
        assert float(audio.start_time * audio.time_base) == pytest.approx(0.0, abs=0.05)


class StallingCapture(FakeCapture):
    """A camera showing the shared face photo whose reads hang after ``frames`` frames, until released."""

    def __init__(self, index, frames):
        super().__init__(index)
        self.stall_after = frames
        self.released = threading.Event()
        self.image = read_image(SHARED_MEDIA / "single_face.jpg")[:360, :480].copy()

    def read(self):
        if self.produced >= self.stall_after:
            self.released.wait()
            return False, None
        time.sleep(0.02)
        self.produced += 1
        return True, self.image

    def release(self):
        self.released.set()


def test_a_camera_that_stalls_is_reopened_and_its_frames_keep_their_times(media, monkeypatch):
    captures = [StallingCapture(0, frames=10), StallingCapture(0, frames=10)]
    opened = iter([captures[0], ClosedCapture(0), captures[1]])  # the second attempt fails, the third works
    monkeypatch.setattr("realtime.io.camera.cv2.VideoCapture", lambda index: next(opened, ClosedCapture(0)))
    try:
        with CameraSource(0, frame_timeout=0.3, reconnect_for=2) as camera:
            frames = list(camera)
    finally:
        for capture in captures:
            capture.release()
    assert len(frames) >= 2 and [frame.index for frame in frames] == list(range(len(frames)))
    gap = max(np.diff([frame.timestamp for frame in frames]))
    assert gap >= 0.3 + 0.5  # the stall and a pause between attempts show as a gap, not sped up
    assert camera.outages == 1 and camera.silent_seconds >= 0.3 + 0.5  # left out of the summary's frames/s
    assert len(camera.issues) == 2
    assert "no frame for 0.3 s" in camera.issues[0] and "reopened it" in camera.issues[0]
    assert "did not open again within 2 s" in camera.issues[1]


def test_a_camera_stall_ends_the_run_with_the_recording_kept(media, tiny_model, tmp_path, monkeypatch, capsys):
    stalling = StallingCapture(0, frames=15)
    opened = iter([stalling])
    monkeypatch.setattr("realtime.io.camera.cv2.VideoCapture", lambda index: next(opened, ClosedCapture(0)))
    monkeypatch.setattr(realtime.sources, "CameraSource", functools.partial(CameraSource, frame_timeout=0.5))
    monkeypatch.delenv("DISPLAY", raising=False)
    out, results = tmp_path / "live.mp4", tmp_path / "live.csv"
    try:
        code = main(["--camera", "0", "-o", str(out), "-r", str(results), "--reconnect-for", "0.5",
                     "--model", str(tiny_model)])
    finally:
        stalling.release()
    assert code == EXIT_CODES["camera stall"]
    captured = capsys.readouterr()
    [warning] = warnings(captured.err)
    assert "camera 0: no frame for 0.5 s" in warning and "the recording ends there" in warning
    kept = len(played(out))
    assert 1 <= kept <= 15 and f"{kept} frame" in captured.out
    assert [int(row["frame"]) for row in rows(results)] == list(range(kept))  # one face in each


def test_a_folder_keeps_every_file_when_one_fails_part_way(media, tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    whole = clip(folder / "a.mp4").read_bytes()
    (folder / "b.mp4").write_bytes(whole[: len(whole) // 2])  # fails part way
    (folder / "c.mp4").write_bytes(whole)
    (folder / "d.mp4").write_bytes(b"not a video")  # fails before any frame
    out, results = tmp_path / "out", tmp_path / "all.csv"
    assert main([str(folder), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["folder file fails part way"]
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [MARK, "a.mp4", "b.mp4", "c.mp4"]
    kept = len(played(out / "b.mp4"))
    assert len(played(out / "a.mp4")) == len(played(out / "c.mp4")) == 72 and 10 < kept < 72
    by_file = {}
    for row in rows(results):
        by_file.setdefault(row["source"], []).append(int(row["frame"]))
    assert by_file == {"a.mp4": list(range(72)), "b.mp4": list(range(kept)), "c.mp4": list(range(72))}
    problems = captured.out.split("incomplete (2 problems; everything analysed is kept in the outputs):")[1]
    assert "b.mp4" in problems and "cut short" in problems and "skipped" in problems and "d.mp4" in problems
    assert len(warnings(captured.err)) == 2


def test_a_decoder_failure_part_way_keeps_that_files_frames_and_the_next_files(media, tiny_model, tmp_path,
                                                                              monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (folder / name).symlink_to(media / "single_face.mp4")
    upright, calls = realtime.io.video._upright, []

    def failing_at_frame_30_of_b(image, rotation):
        calls.append(None)
        if len(calls) == 72 + 30:  # files are decoded one after the other
            raise RuntimeError("simulated decoder failure")
        return upright(image, rotation)

    monkeypatch.setattr(realtime.io.video, "_upright", failing_at_frame_30_of_b)
    out, results = tmp_path / "out", tmp_path / "all.csv"
    assert main([str(folder), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["folder file fails part way"]
    captured = capsys.readouterr()
    [warning] = warnings(captured.err)
    assert warning.startswith("warning: b.mp4: stopped after 29 frames (video ") and "simulated" in warning
    assert [len(played(out / name)) for name in ("a.mp4", "b.mp4", "c.mp4")] == [72, 29, 72]
    counts = {}
    for row in rows(results):
        counts[row["source"]] = counts.get(row["source"], 0) + 1
    assert counts == {"a.mp4": 72, "b.mp4": 29, "c.mp4": 72}
    assert "incomplete (1 problem" in captured.out and "b.mp4: stopped after 29 frames" in captured.out


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KB tmpfs, or skip where mounting is not allowed."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_fails_the_run_and_keeps_what_was_written(long_clip, tiny_model, small_disk, tmp_path, capsys):
    out, results = small_disk / "out.mp4", tmp_path / "r.csv"
    assert main(["--video", str(long_clip), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["disk full"]
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "No space left on device" in error and "kept" in error
    assert warnings(captured.err) == []  # told once, by the error line
    frames = int(re.match(r"(\d+) frames", captured.out).group(1))  # the summary
    assert 0 < frames < 576
    times = played(out)  # what reached the disk plays
    assert 30 <= len(times) <= frames
    assert [int(row["frame"]) for row in rows(results)] == list(range(frames))
    # which second the video is kept to, and how much of the clip was never analysed (neither was said)
    assert f"the video is kept up to {(len(times)) / 30:.1f} s, its last complete second" in error
    stopped = re.search(r"long\.mp4: stopped by the error below at (\d+\.\d) s of 19\.2 s, after (\d+) frames "
                        r"analysed; the rest was not analysed", captured.out)
    assert stopped and abs(float(stopped[1]) - frames / 30) < 0.1 and int(stopped[2]) == frames


def fragments_end(path: Path) -> list[int]:
    """Where each fragment (moof + mdat) of a fragmented MP4 ends."""
    data, position, ends = path.read_bytes(), 0, []
    while position + 8 <= len(data):
        length, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        position += length
        if kind == b"mdat":
            ends.append(position)
    return ends


def test_a_disk_that_fills_as_the_video_is_closed_fails_the_run_and_keeps_it_playable(
        long_clip, tiny_model, small_disk, tmp_path, monkeypatch, capsys):
    """The last fragment is written as the file is closed, where PyAV does not pass on a write's error: the run
    said nothing (exit 0) and left a video whose end was cut off in the middle of a box."""
    argv = ["--video", str(long_clip), "--max-frames", "200", "--model", str(tiny_model), "--smooth", "0"]
    with monkeypatch.context() as patch:  # first the same video on a roomy disk, fragmented, to see its layout
        patch.setattr(realtime.io.video, "_rewrite_with_index_in_front", lambda path: OSError(errno.EIO, "kept"))
        assert main([*argv, "-o", str(tmp_path / "probe.mp4")]) == 0
    ends = fragments_end(tmp_path / "probe.mp4")
    size = (tmp_path / "probe.mp4").stat().st_size
    room = (ends[-2] // 4096 + 2) * 4096  # all but the last fragment (tmpfs counts whole 4 KB pages)
    assert room < size, "the last fragment is too small for this test"
    (small_disk / "filler").write_bytes(bytes(shutil.disk_usage(small_disk).free - room))
    capsys.readouterr()
    out = small_disk / "out.mp4"
    assert main([*argv, "-o", str(out)]) == EXIT_CODES["disk full"]
    error = capsys.readouterr().err.strip().splitlines()[-1]
    kept = played(out)
    assert 0 < len(kept) < 200  # plays to its end: the last fragment, cut off, is gone
    assert error == (f"error: {out}: writing failed (No space left on device); the video is kept up to "
                     f"{len(kept) / 30:.1f} s, its last complete second")
    assert out.stat().st_size in ends


def media_folder(folder: Path, files: dict[str, Path]) -> Path:
    """``folder`` holding a link named each key of ``files`` to its value."""
    folder.mkdir()
    for name, target in files.items():
        (folder / name).symlink_to(target)
    return folder


def test_a_folder_goes_on_after_one_files_output_finds_the_disk_full(media, tiny_model, small_disk, tmp_path,
                                                                    capsys):
    folder = media_folder(tmp_path / "in", {"a.mp4": media / "single_face.mp4",  # ~250 KB annotated
                                            "b.png": media / "Image_with_alpha.png",  # ~2 MB annotated: no room
                                            "c.jpg": media / "justin.jpg"})  # ~40 KB annotated
    results = tmp_path / "all.csv"
    assert main([str(folder), "-o", str(small_disk), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["folder file fails part way"]
    captured = capsys.readouterr()
    [warning] = warnings(captured.err)  # one line, and no error
    assert warning.startswith(f"warning: b.png: {small_disk / 'b.png'}: cannot write it (No space left on device); "
                              "nothing of it was written (1 frame analysed, their rows are in the results file)")
    assert "error" not in captured.err
    assert sorted(p.name for p in small_disk.iterdir()) == [MARK, "a.mp4", "c.jpg"]  # no partial file of b.png
    assert len(played(small_disk / "a.mp4")) == 72 and read_image(small_disk / "c.jpg") is not None
    assert {row["source"] for row in rows(results)} == {"a.mp4", "b.png", "c.jpg"}
    assert captured.out.startswith("74 frames")
    assert "incomplete (1 problem; 1 output could not be written whole, each line says what is kept; " \
           "everything else analysed is kept):\n  b.png: " in captured.out


def test_a_folder_stops_when_a_second_file_in_a_row_finds_the_disk_full(media, long_clip, tiny_model, small_disk,
                                                                       tmp_path, capsys):
    folder = media_folder(tmp_path / "in", {"a.jpg": media / "justin.jpg", "b.mp4": long_clip,
                                            "c.mp4": long_clip, "d.jpg": media / "justin.jpg"})
    results = tmp_path / "all.csv"
    assert main([str(folder), "-o", str(small_disk), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["disk full"]
    captured = capsys.readouterr()
    b_line, c_line = warnings(captured.err)  # each failure told once, what it keeps included
    assert re.match(rf"warning: b\.mp4: {re.escape(str(small_disk / 'b.mp4'))}: writing failed \(No space left on "
                    r"device\); the video is kept up to \d+\.\d s, its last complete second \(\d+ frames analysed, their "
                    r"rows are in the results file; it stopped at \d+\.\d s of 19\.2 s, the rest was not analysed\)$",
                    b_line)
    assert c_line.startswith(f"warning: c.mp4: {small_disk / 'c.mp4'}: writing failed (No space left on device); "
                             "no second of it could be kept")
    assert captured.err.strip().splitlines()[-1] == (f"error: {small_disk}: no space left for a second file in a "
                                                     "row, so the run stops (1 more file not analysed)")
    assert "incomplete (2 problems; 2 outputs could not be written whole" in captured.out
    analysed = int(re.search(r"\((\d+) frames analysed", b_line).group(1))
    assert 30 <= len(played(small_disk / "b.mp4")) < analysed < 576  # plays to its end, up to the failure
    # c.mp4 kept no second, so it is not left behind (nothing half-written); d.jpg was not analysed
    assert sorted(p.name for p in small_disk.iterdir()) == [MARK, "a.jpg", "b.mp4"]
    assert [row["source"] for row in rows(results)][:1 + analysed] == ["a.jpg"] + ["b.mp4"] * analysed
    assert "d.jpg" not in {row["source"] for row in rows(results)}


def test_a_video_whose_final_rewrite_finds_the_disk_full_counts_as_a_full_disk(media, tiny_model, small_disk,
                                                                              tmp_path, capsys):
    frames = source_frames(loops=3)[:170]  # ~380 KB annotated: it fits in 512 KB, a copy of it beside it does not
    a_video = encode(tmp_path / "a.mp4", frames, [index / 30 for index in range(len(frames))], audio=False)
    folder = media_folder(tmp_path / "in", {"a.mp4": a_video,
                                            "b.png": media / "Image_with_alpha.png",  # ~2 MB annotated: no room
                                            "c.jpg": media / "justin.jpg"})  # ~40 KB annotated: room enough
    results = tmp_path / "all.csv"
    assert main([str(folder), "-o", str(small_disk), "-r", str(results), "--model", str(tiny_model)]) \
        == EXIT_CODES["disk full"]
    captured = capsys.readouterr()
    a_line, b_line = warnings(captured.err)  # the rewrite's failure is told, once
    assert a_line == (f"warning: a.mp4: {small_disk / 'a.mp4'}: rewriting it with its index in front failed (No space "
                      "left on device); the video is kept whole, in the fragmented form it was written in, which plays "
                      "as well (170 frames analysed, their rows are in the results file)")
    assert b_line.startswith(f"warning: b.png: {small_disk / 'b.png'}: cannot write it (No space left on device); ")
    assert captured.err.strip().splitlines()[-1] == (f"error: {small_disk}: no space left for a second file in a "
                                                     "row, so the run stops (1 more file not analysed)")
    assert "incomplete (2 problems; 1 output could not be written whole" in captured.out  # a.mp4 is whole
    assert sorted(p.name for p in small_disk.iterdir()) == [MARK, "a.mp4"]  # no partial copy left beside it
    assert len(played(small_disk / "a.mp4")) == 170 and b"moof" in (small_disk / "a.mp4").read_bytes()
    assert [row["source"] for row in rows(results)] == ["a.mp4"] * 170 + ["b.png"]


@pytest.mark.parametrize("case", ["folder, another error", "one video, no space"])
def test_a_final_rewrite_failing_otherwise_or_in_a_one_file_run_leaves_the_video_fragmented_with_a_warning(
        media, tiny_model, tmp_path, monkeypatch, capsys, case):
    """Whole, and it plays: no problem for the summary, but said (it was not, and README says the video is rewritten
    with its index in front)."""
    reason = errno.EIO if case.startswith("folder") else errno.ENOSPC
    monkeypatch.setattr(realtime.io.video, "_rewrite_with_index_in_front",
                        lambda path: OSError(reason, os.strerror(reason)))  # the fragmented file stays
    if case.startswith("folder"):
        folder = media_folder(tmp_path / "in", {"a.mp4": media / "single_face.mp4", "b.mp4": media / "test.mp4"})
        argv, videos = [str(folder), "-o", str(tmp_path / "out")], [tmp_path / "out" / "a.mp4", tmp_path / "out" / "b.mp4"]
    else:
        argv, videos = [str(media / "single_face.mp4"), "-o", str(tmp_path / "a.mp4")], [tmp_path / "a.mp4"]
    assert main([*argv, "--model", str(tiny_model)]) == 0  # the video is whole; no full disk to tell of
    captured = capsys.readouterr()
    assert warnings(captured.err) == [
        f"warning: {video}: rewriting it with its index in front failed ({os.strerror(reason)}); the video is kept "
        "whole, in the fragmented form it was written in, which plays as well" for video in videos]
    assert "incomplete" not in captured.out
    for video in videos:
        assert len(played(video)) > 0 and b"moof" in video.read_bytes()


def test_an_output_failing_otherwise_between_two_full_disks_does_not_show_room(media, tiny_model, small_disk,
                                                                               tmp_path, monkeypatch, capsys):
    write_image = realtime.cli.write_image

    def io_error_for_b(path, image):  # nothing of b.jpg is written, for another reason than a full disk
        if path.name == "b.jpg":
            raise OutputError(f"{path}: cannot write it (Input/output error); nothing of it was written", path) \
                from OSError(errno.EIO, "Input/output error")
        write_image(path, image)

    monkeypatch.setattr(realtime.cli, "write_image", io_error_for_b)
    folder = media_folder(tmp_path / "in", {"a.png": media / "Image_with_alpha.png", "b.jpg": media / "justin.jpg",
                                            "c.png": media / "Image_with_alpha.png", "d.jpg": media / "justin.jpg"})
    assert main([str(folder), "-o", str(small_disk), "--model", str(tiny_model)]) == EXIT_CODES["disk full"]
    captured = capsys.readouterr()
    assert [line.split(":")[1].strip() for line in warnings(captured.err)] == ["a.png", "b.jpg", "c.png"]
    assert captured.err.strip().splitlines()[-1] == (f"error: {small_disk}: no space left for a second file in a "
                                                     "row, so the run stops (1 more file not analysed)")
    assert [p.name for p in small_disk.iterdir()] == [MARK]  # d.jpg not analysed


def test_a_stop_as_a_files_output_fails_still_ends_the_folder_run(long_clip, tiny_model, small_disk, tmp_path,
                                                                 monkeypatch, capsys):
    raise_if_failed = realtime.io.video.H264VideoWriter._raise_if_failed

    def sigterm_meanwhile(writer, *args):  # a SIGTERM that comes as a frame meets the failed video writer
        if writer._error is not None:
            signal.raise_signal(signal.SIGTERM)
        raise_if_failed(writer, *args)

    monkeypatch.setattr(realtime.io.video.H264VideoWriter, "_raise_if_failed", sigterm_meanwhile)
    folder = media_folder(tmp_path / "in", {"a.mp4": long_clip, "b.mp4": long_clip})
    assert main([str(folder), "-o", str(small_disk), "--model", str(tiny_model)]) == EXIT_CODES["SIGTERM"]
    captured = capsys.readouterr()
    assert "interrupted (SIGTERM)" in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in small_disk.iterdir()) == [MARK, "a.mp4"]  # b.mp4 was not begun
    assert len(played(small_disk / "a.mp4")) >= 30


@pytest.mark.parametrize("case", ["video", "results", "folder"])
def test_an_unwritable_output_is_refused_before_any_work(media, tiny_model, tmp_path, case, capsys):
    source, target = str(media / "single_face.mp4"), "/proc/emotion_tracer_out"
    argv = {"video": [source, "-o", f"{target}.mp4"], "results": [source, "-r", f"{target}.csv"],
            "folder": [str(tmp_path), "-o", f"{target}/"]}[case]  # /proc accepts no new folder either
    (tmp_path / "a.mp4").symlink_to(media / "single_face.mp4")
    assert main([*argv, "--model", str(tiny_model)]) == EXIT_CODES["unwritable output"]
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {target}") and "cannot" in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_the_exit_codes_are_in_the_help_and_the_fault_table_matches_the_tests():
    help_text = subprocess.run([sys.executable, "-m", "realtime", "--help"], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, timeout=60).stdout
    for code in ("0 ", "1 ", "2 ", "3 ", "130", "143", "129"):
        assert f"\n  {code}" in help_text or f"; {code} by" in help_text, code
    table = (PROJECT_ROOT / "README.md").read_text()
    documented = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and cells[0] in EXIT_CODES:
            documented[cells[0]] = None if cells[4] == "none (killed)" else int(cells[4])
    assert documented == EXIT_CODES


def test_a_decoder_failure_part_way_with_sampling_counts_the_frames_analysed(media, tiny_model, tmp_path,
                                                                              monkeypatch, capsys):
    upright, calls = realtime.io.video._upright, []

    def failing_at_frame_30(image, matrix):
        calls.append(None)
        if len(calls) == 30:
            raise RuntimeError("simulated decoder failure")
        return upright(image, matrix)

    monkeypatch.setattr(realtime.io.video, "_upright", failing_at_frame_30)
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    assert main([str(media / "single_face.mp4"), "-o", str(out), "-r", str(results), "--sample-fps", "5",
                 "--model", str(tiny_model)]) == EXIT_CODES["folder file fails part way"]
    analysed = len(rows(results))  # one face in every frame
    assert 5 <= analysed <= 7 and len(played(out)) == analysed
    assert f"stopped after {analysed} frames (video " in capsys.readouterr().out  # it said 29, the source's frames
