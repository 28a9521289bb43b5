"""The web app's live camera: the browser's webcam over WebRTC (streamlit-webrtc), analysed frame by
frame with the command line's pipeline, annotated frames sent back.

A ``LiveSession`` is one camera stream of one browser session (streamlit-webrtc makes one per
connection through its processor factory): its own analyzer (short-range detector, its own
tracking and smoothing), a CSV of its results in a private temporary folder (read into memory and
deleted when the stream stops), the dominant emotion of each face, the last ``CHART_SECONDS`` of
each face's emotion for the live chart, and the capture-to-annotated latency. Memory stays flat
however long the stream runs. Nothing here imports Streamlit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import av
import pandas as pd

from realtime.annotator import EmotionAnnotator
from realtime.errors import EmotionTracerError, one_line
from realtime.io.results_file import ResultsWriter
from realtime.io.stream import LatencyMeter
from realtime.pipeline import EmotionAnalyzer
from realtime.rows import face_rows
from realtime.summary import RunSummary
from realtime.types import DEFAULT_FPS, Frame
from webapp.analysis import AnalysisOptions, face_timeline

ICE_SERVERS_ENV = "EMOTION_TRACER_ICE_SERVERS"  # JSON list of RTCIceServer dicts, for remote use
SOURCE_NAME = "live camera"
CHART_SECONDS = 30  # the live chart shows this much of the recent past
CHART_MAX_ROWS = 20_000  # bound on the rows kept for it (many faces at a high frame rate)
STRIP_MAX_SECONDS = 1.0  # a face unseen for longer leaves a gap in its strip
NO_FRAME_HINT_S = 10.0  # a session without a frame this long after START says why that may be


def rtc_configuration() -> dict:
    """The WebRTC configuration: no STUN/TURN server unless ``$EMOTION_TRACER_ICE_SERVERS`` names some.

    Without servers, the browser and the server connect directly (same machine or LAN); across the
    Internet, give a TURN server, e.g. ``[{"urls": ["turn:turn.example.org:3478"], "username": "u",
    "credential": "p"}]``. Raises ValueError (one line) when the variable is not such a list.
    """
    text = os.environ.get(ICE_SERVERS_ENV, "").strip()
    if not text:
        return {"iceServers": []}
    try:
        servers = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{ICE_SERVERS_ENV} is not valid JSON ({error})") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise ValueError(f'{ICE_SERVERS_ENV} must be a JSON list like [{{"urls": ["stun:host:3478"]}}]')
    return {"iceServers": servers}


@dataclass
class LiveSnapshot:
    """What the page shows of a live session at one moment."""

    frames: int
    faces: pd.DataFrame  # one row per tracked face: id, frames seen, dominant emotion, share
    timeline: pd.DataFrame  # the last CHART_SECONDS of each face's emotion (face_timeline's columns)
    latency_ms: tuple[float, float] | None  # (p50, p95) from frame arrival to annotated frame, once measured
    csv: bytes | None  # the session's results, once the stream has stopped
    finished: bool
    waited_seconds: float = 0.0  # since START, while no frame has come
    error: str | None = None  # why the analysis stopped before the stream did (the frames before it are kept)

    @property
    def status(self) -> str | None:
        """What the page says while no frame has been analysed (None once one has)."""
        if self.frames:
            return None
        if self.error is not None:
            return f"The analysis stopped: {self.error}"
        if self.finished:
            return "The camera stopped before any frame was analysed: press START to try again."
        if self.waited_seconds >= NO_FRAME_HINT_S:
            return (f"No frame has come in {self.waited_seconds:.0f} s: the camera's video is not reaching this "
                    "server. Check that the browser may use the camera; a browser on another network may need a "
                    f"TURN server to connect ({ICE_SERVERS_ENV}, README: Web app).")
        return "Waiting for the first frame..."


def _strips(rows: list[dict]) -> pd.DataFrame:
    """``face_timeline`` of the rows, each face's strip lasting until its next analysed frame (frames
    are dropped when the analysis is slower than the camera), unless the face was gone longer than
    STRIP_MAX_SECONDS."""
    timeline = face_timeline(rows, 1.0 / DEFAULT_FPS)
    following = timeline.groupby("face")["time"].shift(-1)
    timeline["until"] = following.where(following - timeline["time"] <= STRIP_MAX_SECONDS, timeline["until"])
    return timeline


class LiveSession:
    """One browser camera stream: ``recv`` annotates each frame, ``on_ended`` finishes the results.

    Frames are taken newest first (``recv_queued`` drops the ones that queued up while the last was
    analysed), so a slow server never falls behind the camera.
    """

    def __init__(self, model_path: Path | str, options: AnalysisOptions):
        self.model_path = Path(model_path)
        self.options = options
        self._lock = threading.Lock()
        self._analyzer: EmotionAnalyzer | None = None
        self._annotator = EmotionAnnotator()
        self._folder: Path | None = None
        self._results: ResultsWriter | None = None
        self._summary = RunSummary()
        self._recent: deque[dict] = deque(maxlen=CHART_MAX_ROWS)
        self._origin = 0.0
        self._latency = LatencyMeter(0.0)
        self._frames = 0
        self._csv: bytes | None = None
        self._finished = False
        self._error: str | None = None
        self._created = time.monotonic()  # START was pressed

    def _start(self, origin: float) -> None:
        """First frame (received at ``origin``, the session's time 0): the analyzer and the private results file."""
        self._analyzer = EmotionAnalyzer(self.model_path, detector_range=self.options.detector_range,
                                         min_confidence=self.options.min_confidence,
                                         smoothing=self.options.smoothing)
        self._folder = Path(tempfile.mkdtemp(prefix="emotion-tracer-live-"))
        self._results = ResultsWriter(self._folder / "faces.csv", self._analyzer.classes)
        self._origin = origin

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Analyse one frame from the browser and return it annotated (as it came once stopped)."""
        received = time.monotonic()
        image = frame.to_ndarray(format="bgr24")
        with self._lock:
            if self._finished:
                return frame
            try:
                if self._analyzer is None:
                    self._start(received)
                result = self._analyzer.track(Frame(self._frames, received - self._origin, image), SOURCE_NAME)
                annotated = self._annotator.annotate(image, result)
                self._results.write(result)
            except Exception as error:  # (the model gone, a full disk): said on the page, the results so far kept
                self._error = one_line(error) if isinstance(error, EmotionTracerError) else \
                    f"{type(error).__name__}: {one_line(error)}"
                self._finish()
                return frame
            self._summary.add(result, SOURCE_NAME, time.monotonic() - received)
            self._recent.extend(face_rows(result))
            self._frames += 1
            self._latency.add(1000 * (time.monotonic() - received))
        output = av.VideoFrame.from_ndarray(annotated, format="bgr24")
        output.pts, output.time_base = frame.pts, frame.time_base
        return output

    def update_options(self, options: AnalysisOptions) -> None:
        """The page's settings changed while the camera streams: the detection confidence and the smoothing
        apply from the next frame on, the faces keeping their ids (the detector stays the short range)."""
        with self._lock:
            if options == self.options:
                return
            self.options = options
            if self._analyzer is not None and not self._finished:
                self._analyzer.configure(min_confidence=options.min_confidence, smoothing=options.smoothing)

    async def recv_queued(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """streamlit-webrtc's batch hook: only the newest of the frames that queued up is analysed."""
        return [self.recv(frames[-1])]

    def on_ended(self) -> None:
        """The stream stopped: finish the CSV (kept in memory), delete the folder, free the analyzer.

        Called by streamlit-webrtc and by the page; the second call does nothing."""
        with self._lock:
            if not self._finished:
                self._finish()

    def _finish(self) -> None:
        """Finish the CSV (kept in memory, as far as it could be written), delete the folder, free the analyzer."""
        self._finished = True
        if self._results is not None:
            with suppress(OSError, EmotionTracerError):  # a full disk: the rows written before it
                self._results.close()
            with suppress(OSError):
                self._csv = self._results.path.read_bytes()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        if self._analyzer is not None:
            self._analyzer.close()

    def snapshot(self) -> LiveSnapshot:
        """The session's state now (thread-safe)."""
        with self._lock:
            rows = list(self._recent)
            faces = []
            for face in self._summary.tracked.values():
                label, share = face.dominant
                faces.append({"face": face.face_id, "frames seen": face.frames, "dominant emotion": label,
                              "share of its frames": f"{share:.0%}"})
            latency = (self._latency.percentile(50), self._latency.percentile(95)) if self._frames else None
            frames, csv, finished, error = self._frames, self._csv, self._finished, self._error
            waited = 0.0 if frames else time.monotonic() - self._created
        if rows:
            newest = rows[-1]["time"]
            rows = [row for row in rows if row["time"] >= newest - CHART_SECONDS]
        return LiveSnapshot(
            frames=frames,
            faces=pd.DataFrame(faces, columns=["face", "frames seen", "dominant emotion", "share of its frames"]),
            timeline=_strips(rows),
            latency_ms=latency, csv=csv, finished=finished, waited_seconds=waited, error=error)
