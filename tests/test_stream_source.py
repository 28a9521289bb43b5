"""Network cameras: a real live MPEG-TS stream of a ../shared clip over UDP on loopback, analysed by
``python -m realtime --camera udp://...`` and by StreamSource, with pauses, losses and dead URLs.

Every test that opens a socket runs in a loopback-only network namespace (tests/netns.py).
"""

from __future__ import annotations

import csv
import http.server
import itertools
import logging
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from benchmarks.stream_sender import send
from realtime.cli import main
from realtime.errors import SourceError
from realtime.io.stream import LATENCY_MAX_MS, LatencyMeter, StreamSource, check_stream_url, redacted
from realtime.pipeline import EmotionAnalyzer
from realtime.sources import open_source, parse_source
from realtime.summary import RunSummary
from realtime.types import AnalyzedFrame, Frame, FrameResult
from tests.conftest import PROJECT_ROOT
from tests.netns import loopback_only
from tests.test_faces_over_time import write_edited_clip

CLIP = "single_face.mp4"  # 640x360, 30 fps, one face throughout
RUN_TIMEOUT_S = 180  # bounds every command-line run (a hang fails the test); not a speed requirement


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def sender(clip: Path, url: str, *options: str):
    """A live stream of ``clip`` to ``url`` (benchmarks/stream_sender.py in its own process), once its first frames
    are out (on a busy machine the process takes seconds to start). A reader opened then joins at the next key
    frame, a second on: send it a few seconds at least."""
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.stream_sender", str(clip), url, *options],
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not select.select([process.stdout], [], [], 0.5)[0]:
            assert process.poll() is None and time.monotonic() < deadline, "the stream sender never started sending"
        assert process.stdout.readline().startswith(b"sending "), process.communicate()[1]
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


@contextmanager
def sender_in_this_process(clip: Path, url: str, **options):
    """``send()`` in a thread of this process, for the caller to start: it sends at once (a new process takes
    seconds to start on a busy machine); stopped at the end of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=send, args=(clip, url), kwargs={**options, "stop": stop}, daemon=True)
    try:
        yield thread
    finally:
        stop.set()
        if thread.ident is not None:
            thread.join(timeout=30)


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime", *argv], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def udp_port_bound(port: int) -> bool:
    """Whether a socket of this network namespace is bound to UDP ``port`` (a reader waiting for a stream)."""
    tables = [Path(name).read_text().splitlines()[1:] for name in ("/proc/net/udp", "/proc/net/udp6")
              if Path(name).exists()]
    return any(line.split()[1].endswith(f":{port:04X}") for table in tables for line in table)


def start_cli(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "realtime", *argv], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_recording(output: Path, run: subprocess.Popen) -> None:
    """Wait until the run has opened the stream and written the first data of the video ``output``."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (output.is_file() and output.stat().st_size > 0):
        assert run.poll() is None, run.communicate()[1]
        assert time.monotonic() < deadline, "the recording never started"
        time.sleep(0.05)


def video_times(path: Path) -> tuple[tuple[int, int], list[float]]:
    """(width, height) and the presentation time of every frame of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return (stream.width, stream.height), [float(frame.time) for frame in container.decode(stream)]


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


# --- addresses and the latency meter (no sockets) ----------------------------------------------------


def test_stream_urls_are_told_from_cameras_and_files():
    assert parse_source("rtsp://cam.local:554/live") == "rtsp://cam.local:554/live"
    assert parse_source("0") == 0
    assert parse_source("clip.mp4") == Path("clip.mp4")
    assert check_stream_url(" udp://127.0.0.1:5000 ") == "udp://127.0.0.1:5000"
    assert check_stream_url("udp://:5000") == "udp://:5000"  # listen on a port, any sender
    assert check_stream_url("RTSP://Cam.local/Live") == "rtsp://Cam.local/Live"  # FFmpeg knows "rtsp" only
    for bad, reason in [("ftp://host/x", "unsupported scheme ftp://"), ("rtsp://host:99999/x", "port"),
                        ("http:///path", "no host")]:
        with pytest.raises(SourceError, match=reason):
            check_stream_url(bad)
    with pytest.raises(SourceError, match="a stream URL is a camera, not a video"):
        open_source("rtsp://cam.local/live", "video")


def test_passwords_never_appear_in_messages(capsys):
    assert redacted("rtsp://admin:hunter2@10.0.0.7:554/s1") == "rtsp://admin:***@10.0.0.7:554/s1"
    assert redacted("http://10.0.0.7/mjpeg") == "http://10.0.0.7/mjpeg"
    assert redacted("rtsp://admin:hunter2@10.0.0.7:99999/s1") == "rtsp://admin:***@10.0.0.7:99999/s1"
    assert redacted("http://10.0.0.7/live?user=admin&Password=hunter2&channel=1") == \
        "http://10.0.0.7/live?user=admin&Password=***&channel=1"
    with pytest.raises(SourceError) as error:
        check_stream_url("gopher://admin:hunter2@10.0.0.7/")
    assert "hunter2" not in str(error.value)
    with pytest.raises(SourceError, match=r"rtsp://admin:\*\*\*@10.0.0.7:99999/s1: the port is not a number"):
        check_stream_url("rtsp://admin:hunter2@10.0.0.7:99999/s1")
    # given where a file goes, or with a bad port on the command line: one line, no password
    for argv in (["--video", "rtsp://admin:hunter2@10.0.0.7/s1"], ["--image", "rtsp://admin:hunter2@10.0.0.7/s1"],
                 ["--camera", "rtsp://admin:hunter2@10.0.0.7:99999/s1"], ["rtsp://admin:hunter2@10.0.0.7:99999/s1"]):
        try:
            code = main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "hunter2" not in err and "admin:***@10.0.0.7" in err, err
        assert "_camera" not in err and "ValueError" not in err


def test_latency_meter_percentiles_and_flat_memory():
    meter = LatencyMeter(clock_origin=0.0)
    size = meter.counts.nbytes
    for milliseconds in [*range(1, 101), 10 * LATENCY_MAX_MS]:  # 1..100 ms, then one far too late
        meter.add(milliseconds - 0.5)
    assert meter.frames == 101
    assert meter.percentile(50) == 51
    assert meter.percentile(95) == 96
    assert meter.percentile(100) == LATENCY_MAX_MS + 1  # clipped into the last bin, not a bigger array
    assert meter.counts.nbytes == size
    assert meter.format() == "latency from capture to annotated frame: p50 51 ms, p95 96 ms over 101 frames"
    with pytest.raises(ValueError):
        LatencyMeter(0.0).percentile(50)
    # a frame the stream held over a pause (out 5 s later at the end of a stream) is counted apart: p95 was 5000 ms
    held = Frame(101, -1e6, np.zeros((2, 2, 3), np.uint8), held=True)
    meter.write_frame(AnalyzedFrame(held, FrameResult(101, -1e6, []), None, 30.0, 0.01, True))
    assert meter.frames == 101 and meter.percentile(95) == 96
    assert meter.format().endswith("over 101 frames (1 held by the stream over a pause left out)")


def test_the_summary_leaves_outages_out_of_frames_per_second():
    summary = RunSummary()
    for index in range(60):  # 2 s of frames at 30 frames/s, the frame after the outage waited 3 s more
        summary.add(FrameResult(index, index / 30), "udp://127.0.0.1:5000", seconds=1 / 30 + 3.0 * (index == 30))
    assert summary.fps == pytest.approx(60 / 5.0)
    summary.add_outages(1, 3.0)  # what the stream counted
    assert summary.fps == pytest.approx(30.0)
    assert summary.format().splitlines()[0] == ("60 frames, 0 face detections in 0 frames, 30.0 frames/s while "
                                                "frames came (none came for 3.0 s in 1 outage)")


def test_frames_out_in_a_burst_after_a_hiccup_are_stamped_in_order_and_never_after_they_came(monkeypatch):
    """A 5 frames/s MPEG-TS stream: a 0.11 s hiccup, then three frames at once. The first two were held; no
    stamp is later than the frame's arrival, and the stamps go forward."""
    clock = [0.0]
    monkeypatch.setattr("realtime.io.stream.time", types.SimpleNamespace(monotonic=lambda: clock[0]))  # its clock only
    source = object.__new__(StreamSource)
    source.clock_origin = 0.0
    container = types.SimpleNamespace(format=types.SimpleNamespace(name="mpegts"))
    arrivals, pts = [0.0, 0.2, 0.51, 0.52, 0.53, 0.8, 1.0], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]

    def frames():
        for arrival, seconds in zip(arrivals, pts):
            clock[0] = arrival
            yield types.SimpleNamespace(time=seconds)

    stamps = [stamp for _, stamp, _ in source._stamped(container, frames(), None)]
    assert all(stamp <= arrival + 1e-9 for stamp, arrival in zip(stamps, arrivals))
    assert stamps == sorted(stamps) and stamps[2] == pytest.approx(0.4)


@pytest.mark.parametrize("argv, message", [
    (["--camera", "ftp://host/x"], "unsupported scheme ftp://"),
    (["--camera", "camera-one"], "camera must be an index like 0 or a stream URL"),
    (["--camera", "udp://127.0.0.1:5000", "--open-timeout", "0"], "not a positive number of seconds"),
    (["--camera", "udp://127.0.0.1:5000", "--reconnect-for", "soon"], "not a number of seconds"),
    (["--demo", "--reconnect-for", "5"], "applies to a camera only"),
    (["--camera", "0", "--open-timeout", "5"], "applies to a network camera only"),
])
def test_bad_stream_options_give_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)  # options checked after parsing return the code
    except SystemExit as exit_info:  # the parser's own errors exit
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


# --- real streams on loopback ---------------------------------------------------------------------------


@loopback_only
def test_camera_url_analyses_and_records_a_live_udp_stream(media, tiny_model, tmp_path):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    output, results = tmp_path / "live.mp4", tmp_path / "live.csv"
    with sender(media / CLIP, url, "--frames", "3000"):
        run = run_cli("--camera", url, "--output", str(output), "--results", str(results), "--max-frames", "45",
                      "--model", str(tiny_model))
    assert run.returncode == 0, run.stderr
    assert "45 frames" in run.stdout
    assert "latency from capture to annotated frame: p50 " in run.stdout and " ms over 45 frames" in run.stdout
    size, times = video_times(output)
    assert size == (640, 360) and len(times) == 45
    rows = csv_rows(results)
    assert {row["face_id"] for row in rows} == {"1"}  # one face, tracked throughout
    stamps = sorted({float(row["time"]) for row in rows})
    assert len(stamps) >= 40 and all(b > a for a, b in zip(stamps, stamps[1:]))  # capture times, increasing
    assert stamps[-1] - stamps[0] >= 1.0  # ~1.5 s of a stream sent in real time, not a burst


class MjpegServer:
    """An HTTP MJPEG camera (multipart/x-mixed-replace JPEGs, as most IP cameras serve) of a clip, in a thread."""

    def __init__(self, clip: Path, fps: float = 30.0, head_delay: float = 0.0, answer_delay: float = 0.0):
        with av.open(str(clip)) as container:
            jpegs = [cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"))[1].tobytes()
                     for frame in container.decode(video=0)]
        stopping = self.stopping = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                stopping.wait(answer_delay)  # a camera that takes its time to start sending
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not stopping.is_set():
                        jpeg = jpegs[index % len(jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        index += 1
                        time.sleep(1 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def do_HEAD(self):  # a camera slow to answer what it is (head_delay), or one that never does
                stopping.wait(head_delay)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@loopback_only
def test_camera_url_reads_an_http_mjpeg_camera(media, tiny_model, tmp_path):
    results = tmp_path / "mjpeg.csv"
    with MjpegServer(media / CLIP) as camera:
        run = run_cli("--camera", camera.url, "--results", str(results), "--max-frames", "20",
                      "--model", str(tiny_model))
    assert run.returncode == 0, run.stderr
    assert "20 frames" in run.stdout and "over 20 frames" in run.stdout
    rows = csv_rows(results)
    assert len({row["frame"] for row in rows}) >= 15  # the face is found in (nearly) every frame
    assert {row["source"] for row in rows} == {camera.url}


@loopback_only
def test_a_camera_that_does_not_answer_what_it_is_still_opens_within_its_timeout(tmp_path):
    """The check whether an address is a file on a web server (HEAD) used up the open timeout: a camera that
    answered it late, or never, failed to open ("no answer within 0.1 s")."""
    from realtime.demo import demo_source
    from realtime.io.video import H264VideoWriter

    with demo_source() as demo, H264VideoWriter(tmp_path / "demo.mp4", demo.info) as writer:
        for frame in list(demo)[:30]:
            writer.write(frame.image, frame.timestamp)
    with MjpegServer(tmp_path / "demo.mp4", head_delay=60, answer_delay=0.5) as camera:
        with StreamSource(camera.url, open_timeout=3) as source:
            assert not source.served_file and len(list(itertools.islice(source, 5))) == 5


@loopback_only
def test_a_two_second_pause_in_the_stream_does_not_end_the_run(media, tiny_model, tmp_path):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    output, results = tmp_path / "paused.mp4", tmp_path / "paused.csv"
    with sender(media / CLIP, url, "--frames", "3000") as stream:
        run = start_cli("--camera", url, "--output", str(output), "--results", str(results), "--max-frames", "90",
                        "--model", str(tiny_model))
        wait_for_recording(output, run)
        time.sleep(0.5)
        stream.send_signal(signal.SIGSTOP)  # the network goes quiet for 2 s
        time.sleep(2.0)
        stream.send_signal(signal.SIGCONT)
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, stderr
    assert "90 frames" in stdout and "lost" not in stderr
    assert re.search(r"frames/s while frames came \(none came for [\d.]+ s in 1 outage\)", stdout), stdout
    assert re.search(r"over \d+ frames \([12] held by the stream over a pause left out\)", stdout), stdout
    _, times = video_times(output)
    assert len(times) == 90
    gaps = np.diff(times)
    assert gaps.max() >= 1.5  # the pause stays in the recording (frames keep their capture times)
    assert np.sum(gaps >= 1.5) == 1


def read_through_a_pause(source: StreamSource, stream: subprocess.Popen, pause_s: float) -> list[float]:
    """Timestamps of ``source``'s frames: 30 of them, a pause of ``stream`` (SIGSTOP) for ``pause_s`` seconds
    while the reader waits, then 30 more."""
    stamps: list[float] = []
    resume = threading.Timer(pause_s, stream.send_signal, [signal.SIGCONT])
    try:
        for frame in source:
            stamps.append(frame.timestamp)
            if len(stamps) == 30:
                stream.send_signal(signal.SIGSTOP)
                resume.start()
            if len(stamps) == 60:
                break
    finally:
        resume.cancel()
    return stamps


@loopback_only
def test_a_pause_is_counted_as_an_outage_apart_from_the_frames(media):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "3000") as stream, StreamSource(url, open_timeout=20) as source:
        stamps = read_through_a_pause(source, stream, 2.0)
    gaps = np.diff(stamps)
    assert np.sum(gaps >= 1.0) == 1 and source.issues == []  # waited out, not reopened
    # one outage, as long as the pause the frames' times show: the run's frames/s leaves it out
    assert source.outages == 1 and source.silent_seconds == pytest.approx(gaps.max(), abs=0.5)


@loopback_only
def test_the_frame_mpeg_ts_holds_over_a_pause_keeps_its_capture_time(media):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "3000") as stream, \
            StreamSource(url, open_timeout=20, reconnect_for=30, read_timeout=1.5) as source:
        stamps = read_through_a_pause(source, stream, 3.0)
    # The frame sent last before the pause comes out at the read timeout (the demuxer held it until then);
    # stamped then, it would split the pause in two gaps. Its pts step puts it after the frame before.
    gaps = np.diff(stamps)
    assert np.sum(gaps >= 1.0) == 1, [(i, round(g, 3)) for i, g in enumerate(gaps) if g > 0.1]
    assert gaps[np.argmax(gaps) - 1] < 0.5
    [outage] = source.issues
    assert "; reopened it " in outage
    assert source.outages == 1  # the held frame ends a wait, not the outage


@loopback_only
def test_a_stream_lost_for_good_ends_the_run_and_keeps_the_recording(media, tiny_model, tmp_path):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    output, results = tmp_path / "lost.mp4", tmp_path / "lost.csv"
    with sender(media / CLIP, url, "--frames", "3000") as stream:
        run = start_cli("--camera", url, "--output", str(output), "--results", str(results), "--reconnect-for", "2",
                        "--model", str(tiny_model))
        wait_for_recording(output, run)
        time.sleep(1.0)
        stream.kill()  # the camera goes away for good
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    assert run.returncode == 3, stderr  # done with a problem: the camera was lost
    assert "warning: stream " + url + " lost" in stderr and "what was received is kept" in stderr
    assert "1 face" in stdout or "face  frames" in stdout
    _, times = video_times(output)
    assert len(times) >= 10
    assert len({row["frame"] for row in csv_rows(results)}) == len(times)


@loopback_only
def test_a_lost_stream_is_reopened_when_it_comes_back(media, caplog):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    frames = []
    with caplog.at_level(logging.WARNING, logger="emotion_tracer.stream"):
        with sender(media / CLIP, url, "--frames", "120") as first:
            source = StreamSource(url, open_timeout=20, reconnect_for=30, read_timeout=1.5)
            first.wait(timeout=30)
        time.sleep(3.0)  # the camera is away for longer than the read timeout
        with source, sender(media / CLIP, url, "--frames", "3000"):  # the camera is back
            for frame in source:
                frames.append(frame)
                if frame.timestamp > frames[0].timestamp + 3 and len(frames) >= 40:
                    break
    [outage] = source.issues  # the outage, reported (the command line's exit code 3)
    assert outage.startswith(f"stream {url}: lost (no data for 1.5 s) after ") and "; reopened it " in outage
    assert any("reopening" in message for message in caplog.messages)
    assert any("reopened" in message for message in caplog.messages)
    gaps = np.diff([frame.timestamp for frame in frames])
    assert gaps.max() >= 1.0  # the outage, then frames again
    assert [frame.index for frame in frames] == list(range(len(frames)))
    assert all(frame.image.shape == (360, 640, 3) for frame in frames)


@loopback_only
def test_a_stream_whose_data_stops_decoding_is_reopened(media):
    """The camera at the address changes codec (H.264, then MPEG-2) with no silence between: the data keeps coming
    but decodes to no frame, so after the read timeout the stream counts as lost and is reopened in its new codec
    (it waited until the reader gave up, and kept its thread and socket after close())."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    frames = []
    with sender(media / CLIP, url, "--frames", "3000") as first, StreamSource(url, open_timeout=20, reconnect_for=30,
                                                                          read_timeout=1.5) as source, \
            sender_in_this_process(media / CLIP, url, max_frames=3000, codec="mpeg2") as second:
        deadline = time.monotonic() + 120
        for frame in source:
            frames.append(frame)
            if len(frames) == 20:
                first.kill()  # from here on only the MPEG-2 sender's data comes
                second.start()
                switched = frame.timestamp
            if len(frames) > 20 and frame.timestamp > switched + 3 or time.monotonic() > deadline:
                break
        issues = source.issues
    assert frames[-1].timestamp > switched + 3, issues  # frames again, in the new codec
    [outage] = issues
    assert "lost (data but no frame decoded for 1.5 s)" in outage and "; reopened it " in outage


@loopback_only
def test_a_stream_that_comes_back_undecodable_is_given_up_once(media):
    """The camera comes back in another codec, joined after its only key frame: it opens but gives no frame, so
    each try fails, and the outage is given up after reconnect_for, one line (it was 'reopened' at every try and
    never given up)."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "3000") as first, \
            StreamSource(url, open_timeout=5, reconnect_for=6, read_timeout=1.5) as source, \
            sender_in_this_process(media / CLIP, url, max_frames=3000, codec="mpeg2", keyframe_interval=100000) as second:
        frames = []
        deadline = time.monotonic() + 120
        for frame in source:
            frames.append(frame)
            if len(frames) == 20:
                first.kill()
                second.start()  # its only key frame goes out at once, before the stream counts as lost
            assert time.monotonic() < deadline
    [line] = source.issues
    assert "and not back within 6 s (last try: no video frame within " in line
    assert "data came, but no frame decoded from it" in line


@loopback_only
def test_the_open_timeout_holds_when_data_comes_but_no_frame_decodes(media):
    """A stream joined between key frames (none for the rest of its run) gives data but no frame: opening
    stops at --open-timeout (it waited while the data lasted)."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "3000", "--keyframe-interval", "100000"):  # its key frame is out
        started = time.monotonic()
        with pytest.raises(SourceError, match="no video frame within 2 s"):
            StreamSource(url, open_timeout=2, read_timeout=1)
        assert time.monotonic() - started < 60  # it did not wait while the data lasted (100 s)


@loopback_only
def test_a_lost_stream_is_said_lost_when_its_last_frame_was_sent_and_tried_once(media):
    """The line of a stream lost for good counts from its last frame's capture time, not from when MPEG-TS let
    it out (at the read timeout); and a stream whose loss shows only after --reconnect-for is still tried once."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "120"), \
            StreamSource(url, open_timeout=20, reconnect_for=1, read_timeout=1.5) as source:
        deadline = time.monotonic() + 60
        frames = []
        for frame in source:  # ends when the stream is given up
            frames.append(frame)
            assert time.monotonic() < deadline
    [line] = source.issues
    lost_after = float(re.search(r"lost \(no data for 1.5 s\) after ([\d.]+) s", line)[1])
    assert lost_after == pytest.approx(frames[-1].timestamp, abs=0.3)  # it said the held frames' arrival, +1.5 s
    assert "not back within 1 s (last try: " in line


@loopback_only
def test_a_stream_stopped_while_it_is_reopened_says_so(media):
    """Stopped (Ctrl-C) while a lost stream is being reopened: the outage is among its issues, before close() and
    after (it was left out of the summary)."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "120") as stream:
        source = StreamSource(url, open_timeout=20, reconnect_for=60, read_timeout=1.5)
        stream.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not source.issues:
        assert time.monotonic() < deadline, "the loss was never noticed"
        time.sleep(0.1)
    [line] = source.issues
    assert re.fullmatch(rf"stream {url}: lost \(no data for 1.5 s\) after [\d.]+ s; still being reopened when the "
                        r"run stopped, [\d.]+ s after its last frame; what was received is kept", line)
    source.close()
    assert [issue.split("; still")[0] for issue in source.issues] == [line.split("; still")[0]]


@loopback_only
def test_a_ctrl_c_while_a_stopped_run_waits_for_a_lost_stream_breaks_off_nothing(media, tiny_model, tmp_path):
    """SIGTERM while a lost stream is being reopened, then Ctrl-C while the run waits for the stream's reader to
    end (its outputs are finished by then): the run ends as SIGTERM asked, its outputs finished, and the outage
    is listed (it said "Ctrl-C twice: finishing the outputs was broken off" and exited 130)."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    output, log = tmp_path / "out.mp4", tmp_path / "stderr.txt"
    with sender(media / CLIP, url, "--frames", "3000") as stream, open(log, "w") as errors:
        run = subprocess.Popen([sys.executable, "-m", "realtime", "--camera", url, "--output", str(output),
                                "--reconnect-for", "60", "--model", str(tiny_model)],
                               cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        wait_for_recording(output, run)
        time.sleep(1.0)
        stream.kill()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while "reopening it" not in log.read_text():
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)
        run.send_signal(signal.SIGTERM)
        time.sleep(2.0)
        run.send_signal(signal.SIGINT)
        run.wait(timeout=RUN_TIMEOUT_S)
    stderr = log.read_text()
    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted (SIGTERM): outputs written so far are finished and kept" in stderr
    assert "twice" not in stderr and "still being reopened when the run stopped" in stderr
    # the wait for the reader is said (there were 6 s of silence), with how to cut it short
    assert re.search(rf"note: stream {url}: waiting up to \d s for its reader to let go \(Ctrl-C again stops at "
                     r"once\)", stderr), stderr
    _, times = video_times(output)
    assert len(times) >= 10


@loopback_only
def test_a_slow_reader_always_gets_the_newest_frame(media):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    with sender(media / CLIP, url, "--frames", "3000"), StreamSource(url, open_timeout=20) as source:
        stamps, newest_before = [], []
        frames = iter(source)
        for _ in range(12):
            newest_before.append(source._latest[1])  # the capture time of the newest frame received so far
            stamps.append(next(frames).timestamp)
            time.sleep(0.2)  # a consumer far slower than the 30 fps stream
    # A queue would hand out the frames after the last one taken, each older than the newest already there.
    assert all(stamp >= newest for stamp, newest in zip(stamps, newest_before))
    assert all(np.diff(stamps) > 0)  # and never a frame twice
    assert stamps[-1] - stamps[0] > 11 / 30  # frames were skipped: a queue's twelve would span 11 / 30 s


@loopback_only
def test_a_url_that_never_answers_gives_one_line_and_exit_2(tiny_model, tmp_path):
    silent = f"udp://127.0.0.1:{free_udp_port()}"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"tcp://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
    for url in (silent, refused):
        output, results = tmp_path / "none.mp4", tmp_path / "none.csv"
        run = run_cli("--camera", url, "--open-timeout", "2", "--output", str(output), "--results", str(results),
                      "--model", str(tiny_model))
        assert run.returncode == 2
        assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"error: stream {url}: "), run.stderr
        assert run.stdout == ""
        assert list(tmp_path.iterdir()) == []


@loopback_only
def test_ctrl_c_while_a_stream_is_opening_stops_at_once(tiny_model, tmp_path):
    port = free_udp_port()
    run = start_cli("--camera", f"udp://127.0.0.1:{port}", "--open-timeout", "60", "--output",
                    str(tmp_path / "none.mp4"), "--model", str(tiny_model))
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not udp_port_bound(port):  # the analyzer is loaded and the stream is being opened
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1]
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    # taken at once: not held back until the opening gives up ("error: ... no answer within 60 s", exit 2)
    assert run.returncode == 130, stderr
    assert "interrupted (Ctrl-C)" in stderr and "no answer" not in stderr


@contextmanager
def served_folder(folder: Path):
    """An HTTP server on 127.0.0.1 for the files of ``folder``; yields its address."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@loopback_only
def test_every_frame_of_a_video_file_on_a_web_server_is_read_at_its_time(tmp_path):
    """A served file was read as a live stream: only the newest frame each time the analysis asked (7 of 120), at
    its arrival time; and its first key frame was dropped, so a clip of 20 frames gave none at all."""
    from realtime.demo import demo_source
    from realtime.io.video import H264VideoWriter

    with demo_source() as demo, H264VideoWriter(tmp_path / "demo.mp4", demo.info) as writer:  # 120 frames, 30 fps
        for frame in demo:
            writer.write(frame.image, frame.timestamp)
    with av.open(str(tmp_path / "demo.mp4")) as source, av.open(str(tmp_path / "short.mp4"), "w") as target:
        stream = target.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for frame in list(source.decode(video=0))[:20]:
            target.mux(stream.encode(frame.reformat(256, 256, "yuv420p")))
        target.mux(stream.encode())
    with served_folder(tmp_path) as address:
        with StreamSource(f"{address}/demo.mp4") as source:
            times = []
            for frame in source:
                times.append(frame.timestamp)
                time.sleep(0.02)  # an analysis slower than the file comes: no frame is skipped
            assert source.finite and source.issues == []
        assert times == pytest.approx([index / 30 for index in range(120)], abs=1e-6)
        with StreamSource(f"{address}/short.mp4") as source:
            assert len(list(source)) == 20


@loopback_only
def test_a_served_mp4_that_needs_byte_ranges_and_a_served_text_are_told_apart(media, tiny_model, tmp_path):
    """single_face.mp4 (its index at its end) from python -m http.server gave "no video frame (Input/output error)";
    a text file was analysed as a video of its characters (exit 0)."""
    shutil.copy(media / CLIP, tmp_path / "clip.mp4")
    (tmp_path / "notes.txt").write_text("a shopping list\n" * 40)
    with served_folder(tmp_path) as address:
        clip = run_cli("--camera", f"{address}/clip.mp4", "--model", str(tiny_model))
        text = run_cli("--camera", f"{address}/notes.txt", "--model", str(tiny_model))
    assert clip.returncode == 2 and clip.stderr.strip().endswith(
        "; this web server serves no parts of files (byte ranges), which an MP4 or MOV with its index at its end "
        "needs: download it and give the file, or serve it from a server that does"), clip.stderr
    assert (text.returncode, text.stderr.strip()) == (2, f"error: stream {address}/notes.txt: has no video (it is text)")


@loopback_only
def test_a_cut_in_a_video_file_on_a_web_server_gives_a_new_id(media, tiny_model, tmp_path):
    """A served file was analysed as a live stream, whose scene cuts go unseen: the man after the cut took over
    the first face's id."""
    write_edited_clip(media, tmp_path / "edited.ts")  # (http.server serves no byte ranges: an MP4 needs them)
    with served_folder(tmp_path) as address, EmotionAnalyzer(tiny_model) as analyzer:
        results = list(analyzer.stream(f"{address}/edited.ts"))
    ids = [{face.face_id for face in result.faces} for result in results]
    assert len(ids) == 60 and set().union(*ids[:30]) == {1}
    assert ids[30] == {2} and set().union(*ids[30:]) == {2}
    assert {result.source for result in results} == {f"{address}/edited.ts"}  # named by its address


@loopback_only
def test_faces_far_from_the_camera_in_a_video_file_on_a_web_server_are_found(media, tiny_model, tmp_path):
    """A served file got the camera's detector (short range, faces within ~2 m): single_face.mp4's face at a third
    of its size in a 640x360 frame was found in none of the 72 frames; a video file's detector finds it in each."""
    with av.open(str(media / CLIP)) as source, av.open(str(tmp_path / "far.ts"), "w") as target:
        stream = target.add_stream("mpeg2video", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for frame in source.decode(video=0):
            canvas = np.full((360, 640, 3), 90, np.uint8)
            canvas[200:320, 400:613] = cv2.resize(frame.to_ndarray(format="bgr24"), (213, 120))
            target.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24").reformat(format="yuv420p")))
        target.mux(stream.encode())
    results = tmp_path / "far.csv"
    with served_folder(tmp_path) as address:
        run = run_cli("--camera", f"{address}/far.ts", "--results", str(results), "--model", str(tiny_model))
    assert run.returncode == 0, run.stderr
    assert sorted(int(row["frame"]) for row in csv_rows(results)) == list(range(72))


@loopback_only
def test_a_video_file_served_over_http_is_read_once(media, tiny_model, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with av.open(str(media / CLIP)) as source, av.open(str(served / "clip.ts"), "w") as target:  # 72 frames
        stream = target.add_stream("mpeg2video", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for frame in source.decode(video=0):
            target.mux(stream.encode(frame.reformat(format="yuv420p")))
        target.mux(stream.encode())

    results = tmp_path / "served.csv"
    with served_folder(served) as address:
        run = run_cli("--camera", f"{address}/clip.ts", "--results", str(results), "--model", str(tiny_model))
    assert run.returncode == 0, run.stderr  # it ended with the file: no loss, no replay
    assert "reopen" not in run.stderr and "latency" not in run.stdout  # its frames are timed by the file
    rows = csv_rows(results)
    assert sorted({int(row["frame"]) for row in rows}) == list(range(72))  # each frame once, the face in each
    assert all(float(row["time"]) == pytest.approx(int(row["frame"]) / 30, abs=0.001) for row in rows)
