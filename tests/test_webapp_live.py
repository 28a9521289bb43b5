"""The Live camera's session logic (webapp/live.py) without a browser: real frames of a ../shared clip
in, annotated frames, chart data, latency and the session's CSV out; and the WebRTC configuration."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from realtime.rows import RESULT_COLUMNS
from webapp import live
from webapp.analysis import AnalysisOptions


def clip_frames(path, count: int) -> list[av.VideoFrame]:
    """The first ``count`` frames of a clip as yuv420p VideoFrames with pts, as WebRTC delivers them."""
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == count:
                break
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            copy.pts, copy.time_base = index * 3000, Fraction(1, 90000)
            frames.append(copy)
    return frames


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_session_annotates_frames_and_gives_its_csv_when_it_stops(media, tiny_model, private_tmp):
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    frames = clip_frames(media / "single_face.mp4", 20)
    outputs = [session.recv(frame) for frame in frames[:10]]
    outputs += asyncio.run(session.recv_queued(frames[10:13]))  # a backlog: only the newest is analysed
    assert len(outputs) == 11
    for frame, output in zip([*frames[:10], frames[12]], outputs):
        assert (output.width, output.height, output.pts, output.time_base) == (640, 360, frame.pts, frame.time_base)
    changed = np.abs(outputs[0].to_ndarray(format="bgr24").astype(int) - frames[0].to_ndarray(format="bgr24")) > 100
    assert changed.any(axis=2).sum() > 300  # the face's box and label were drawn
    running = session.snapshot()
    assert running.frames == 11 and not running.finished and running.csv is None
    assert list(running.faces["face"]) == [1] and running.faces["frames seen"][0] == 11
    assert set(running.timeline["face"]) == {"face 1"} and len(running.timeline) == 11
    assert running.latency_ms is not None and 0 < running.latency_ms[0] <= running.latency_ms[1]
    assert len(list(private_tmp.iterdir())) == 1  # the session's private folder, while it runs

    session.on_ended()
    session.on_ended()  # streamlit-webrtc and the page both end it: the second call does nothing
    done = session.snapshot()
    assert done.finished and done.frames == 11
    rows = list(csv.DictReader(io.StringIO(done.csv.decode())))
    assert len(rows) == 11 and {row["face_id"] for row in rows} == {"1"}
    assert {row["source"] for row in rows} == {live.SOURCE_NAME}
    assert [int(row["frame"]) for row in rows] == list(range(11))
    assert list(private_tmp.iterdir()) == []  # deleted once the CSV is in memory
    late = frames[13]
    assert session.recv(late) is late  # a frame still in flight after the stop passes through untouched
    assert session.snapshot().frames == 11


def test_settings_changed_while_the_camera_streams_apply_from_the_next_frame_keeping_the_ids(media, tiny_model):
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    frames = clip_frames(media / "single_face.mp4", 12)
    for frame in frames[:4]:
        session.recv(frame)
    session.update_options(AnalysisOptions("short", 0.5, 0.0))  # smoothing off: each frame's own label
    session.recv(frames[4])
    session.update_options(AnalysisOptions("short", 0.99, 0.0))  # only faces scored 0.99 and more
    for frame in frames[5:12]:
        session.recv(frame)
    session.on_ended()
    done = session.snapshot()
    assert done.error is None and done.frames == 12  # every frame analysed, none failed
    rows = list(csv.DictReader(io.StringIO(done.csv.decode())))
    assert {row["face_id"] for row in rows} == {"1"}  # the face kept its id
    assert [int(row["frame"]) for row in rows] == list(range(5))  # no face scores 0.99 in this clip
    unsmoothed = rows[4]
    emotions = [column for column in unsmoothed if column not in RESULT_COLUMNS]
    assert len(emotions) == 7 and unsmoothed["label"] == max(emotions, key=lambda name: float(unsmoothed[name]))
    assert session.options == AnalysisOptions("short", 0.99, 0.0)


def test_the_chart_keeps_only_the_recent_past(media, tiny_model, monkeypatch):
    monkeypatch.setattr(live, "CHART_SECONDS", 0.05)
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    for frame in clip_frames(media / "single_face.mp4", 4):
        session.recv(frame)
        time.sleep(0.1)  # frames further apart than the chart's span
    snapshot = session.snapshot()
    assert snapshot.frames == 4 and snapshot.faces["frames seen"][0] == 4  # the summary keeps everything
    assert len(snapshot.timeline) == 1  # the chart only the newest
    session.on_ended()


def test_each_strip_of_the_chart_lasts_until_the_faces_next_frame(media, tiny_model):
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    for pause, frame in zip([0.1, 0.1, live.STRIP_MAX_SECONDS + 0.2, 0.0], clip_frames(media / "single_face.mp4", 4)):
        session.recv(frame)
        time.sleep(pause)
    timeline = session.snapshot().timeline
    assert len(timeline) == 4
    assert list(timeline["until"][:2]) == list(timeline["time"][1:3])  # dropped frames leave no holes
    assert timeline["until"][2] < timeline["time"][3]  # but a face gone for longer does
    session.on_ended()


def test_memory_stays_bounded_while_the_csv_keeps_every_row(media, tiny_model, monkeypatch):
    monkeypatch.setattr(live, "CHART_MAX_ROWS", 3)
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    for frame in clip_frames(media / "single_face.mp4", 8):
        session.recv(frame)
    assert len(session.snapshot().timeline) == 3  # the chart's rows are capped
    session.on_ended()
    assert session.snapshot().csv.decode().count("\n") == 1 + 8  # the results are on disk, all of them


def test_a_session_without_faces_gives_a_csv_with_the_header_only(tiny_model):
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    session.recv(frame)
    snapshot = session.snapshot()
    assert snapshot.frames == 1 and snapshot.timeline.empty and snapshot.faces.empty
    session.on_ended()
    assert session.snapshot().csv.decode().count("\n") == 1


def test_the_first_frame_is_at_time_zero(media, tiny_model):
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    for frame in clip_frames(media / "single_face.mp4", 3):
        session.recv(frame)
    session.on_ended()
    times = [float(row["time"]) for row in csv.DictReader(io.StringIO(session.snapshot().csv.decode()))]
    assert len(times) == 3 and times[0] == 0.0 and times == sorted(times)


def test_a_session_stopped_before_any_frame_says_so(tiny_model):
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    assert session.snapshot().status == "Waiting for the first frame..."
    session.on_ended()
    snapshot = session.snapshot()
    assert snapshot.finished and snapshot.frames == 0 and snapshot.csv is None
    assert snapshot.status == "The camera stopped before any frame was analysed: press START to try again."



def test_a_session_whose_analysis_fails_says_why_and_passes_the_frames_on(tmp_path, private_tmp):
    """The model gone since the page loaded: every frame raised in recv, and the page said after 10 s that no frame
    reached the server, blaming the browser's connection."""
    session = live.LiveSession(tmp_path / "gone.onnx", AnalysisOptions("short", 0.5, 0.6))
    frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="bgr24")
    assert session.recv(frame) is frame and session.recv(frame) is frame
    snapshot = session.snapshot()
    assert snapshot.finished and snapshot.frames == 0 and snapshot.csv is None
    assert snapshot.status.startswith("The analysis stopped: ") and "gone.onnx" in snapshot.status
    session.on_ended()
    assert list(private_tmp.iterdir()) == []


def test_a_session_that_gets_no_frame_says_why_that_may_be(tiny_model, monkeypatch):
    """START pressed but no frame comes (the browser cannot reach the server's WebRTC): after NO_FRAME_HINT_S the
    page says what to check, where it waited without end."""
    monkeypatch.setattr(live, "NO_FRAME_HINT_S", 0.3)
    session = live.LiveSession(tiny_model, AnalysisOptions("short", 0.5, 0.6))
    assert session.snapshot().status == "Waiting for the first frame..."
    time.sleep(0.4)
    snapshot = session.snapshot()
    assert snapshot.waited_seconds >= 0.3
    assert snapshot.status.startswith(f"No frame has come in {snapshot.waited_seconds:.0f} s: the camera's video is "
                                      "not reaching this server.")  # (the seconds: 1 on a busy machine)
    assert live.ICE_SERVERS_ENV in snapshot.status

def test_rtc_configuration_has_no_servers_unless_configured(monkeypatch):
    monkeypatch.delenv(live.ICE_SERVERS_ENV, raising=False)
    assert live.rtc_configuration() == {"iceServers": []}
    turn = '[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]'
    monkeypatch.setenv(live.ICE_SERVERS_ENV, turn)
    assert live.rtc_configuration()["iceServers"][0]["urls"] == ["turn:turn.example.org:3478"]
    for bad, message in [("stun:x", "not valid JSON"), ('{"urls": "stun:x"}', "must be a JSON list"),
                         ('[{"url": "stun:x"}]', "must be a JSON list")]:
        monkeypatch.setenv(live.ICE_SERVERS_ENV, bad)
        with pytest.raises(ValueError, match=message):
            live.rtc_configuration()
