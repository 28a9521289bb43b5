"""Local cameras (OpenCV): always the newest frame, a grabber thread drops stale ones; stalls are retried."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from realtime.errors import SourceError
from realtime.io.stream import OUTAGE_S
from realtime.types import Frame, VideoInfo

CAMERA_PROBE_INDICES = range(10)
CAMERA_FRAME_TIMEOUT_S = 5.0  # a camera that gives no frame for this long has stalled
CAMERA_RECONNECT_S = 10.0  # how long a stalled or lost camera is reopened before the run ends
RECONNECT_PAUSE_S = 0.5  # between attempts to reopen it


def available_cameras(indices=CAMERA_PROBE_INDICES) -> list[int]:
    """Camera indices that open (quick probe, OpenCV's warnings silenced)."""
    found = []
    with _quiet_opencv():
        for index in indices:
            if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
                continue
            capture = cv2.VideoCapture(index)
            if capture.isOpened():
                found.append(index)
            capture.release()
    return found


@contextmanager
def _quiet_opencv():
    """Silence OpenCV's log (it warns on stderr for every camera index that does not open)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # 0 = silent
    try:
        yield
    finally:
        cv2.setLogLevel(level)


class CameraSource:
    """A live camera. A grabber thread keeps only the newest frame, so a slow consumer never lags:
    each iteration returns the latest frame and stale ones are dropped. Timestamps are seconds on a
    monotonic clock since the source opened; indices count the frames handed out.

    A camera that stalls (no frame for ``frame_timeout`` seconds) or stops delivering is reopened,
    again and again for up to ``reconnect_for`` seconds; meanwhile nothing is recorded, and the
    frames after it keep their real times. Each outage adds a line to ``issues``; a camera that
    does not come back ends the iteration normally, so everything recorded so far is kept. ``outages``
    counts the waits for a frame that took a reopening or longer than OUTAGE_S (and two frame steps), and
    ``silent_seconds`` is their sum: time the consumer spent waiting for the camera, not analysing.
    """

    live = True
    audio_path = None

    def __init__(self, index: int, frame_timeout: float = CAMERA_FRAME_TIMEOUT_S,
                 reconnect_for: float = CAMERA_RECONNECT_S):
        self.index = index
        self.path = None
        self.frame_timeout = frame_timeout
        self.reconnect_for = reconnect_for
        self.issues: list[str] = []
        self.outages = 0
        self.silent_seconds = 0.0
        capture, image = self._open()
        if capture is None:
            others = [i for i in available_cameras() if i != index]
            hint = f"cameras that open: {', '.join(map(str, others))}" if others else "no camera found"
            raise SourceError(f"camera {index}: cannot open it or read a frame ({hint})")
        self._start = time.monotonic()
        self.clock_origin = self._start  # the monotonic clock's reading at timestamp 0
        height, width = image.shape[:2]
        self.info = VideoInfo(width, height, capture.get(cv2.CAP_PROP_FPS), None, f"camera {index}")
        self._condition = threading.Condition()
        self._latest: tuple[np.ndarray, float] = (image, 0.0)
        self._grabbed = 1  # frames read from the camera so far
        self._failed = False  # the current capture stopped delivering
        self._closed = False
        self._generation = 0  # bumped for each capture; a grabber of an older one stops
        self._thread = self._start_grabber(capture)

    def _open(self) -> tuple[cv2.VideoCapture | None, np.ndarray | None]:
        """A capture that delivered a first frame, and that frame; (None, None) when it does not open."""
        with _quiet_opencv():
            capture = cv2.VideoCapture(self.index)
            ok, image = capture.read() if capture.isOpened() else (False, None)
        if not ok or image is None:
            capture.release()
            return None, None
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture, image

    def _start_grabber(self, capture: cv2.VideoCapture) -> threading.Thread:
        self._generation += 1
        thread = threading.Thread(target=self._grab, args=(capture, self._generation),
                                  name=f"camera {self.index}", daemon=True)
        thread.start()
        return thread

    def _grab(self, capture: cv2.VideoCapture, generation: int) -> None:
        """Background thread: read frames as fast as the camera delivers, keep only the newest.

        Ends, releasing its capture, when the camera fails, the source closes or a newer capture
        replaced it (a stalled read returns late, if ever).
        """
        try:
            while True:
                ok, image = capture.read()
                with self._condition:
                    if self._closed or generation != self._generation:
                        return
                    if not ok or image is None:
                        self._failed = True
                        self._condition.notify_all()
                        return
                    self._latest = (image, time.monotonic() - self._start)
                    self._grabbed += 1
                    self._condition.notify_all()
        finally:
            capture.release()

    def __iter__(self) -> Iterator[Frame]:
        seen = 0
        index = 0
        outage = max(OUTAGE_S, 2 / self.info.fps)
        asked, reopened = None, False  # when the wait for the next frame began; whether it took a reopening
        while True:
            asked = time.monotonic() if asked is None else asked
            with self._condition:
                self._condition.wait_for(lambda: self._grabbed > seen or self._failed or self._closed,  # noqa: B023 (waited on at once)
                                         timeout=self.frame_timeout)
                if self._closed:
                    return
                fresh = self._grabbed > seen
                if fresh:
                    seen = self._grabbed
                    image, timestamp = self._latest
                else:
                    reason = "stopped delivering frames" if self._failed else \
                        f"no frame for {self.frame_timeout:g} s"
                    self._generation += 1  # the stalled grabber, if it ever wakes, stops
            if fresh:
                waited = time.monotonic() - asked
                if reopened or waited > outage:
                    self.outages += 1
                    self.silent_seconds += waited
                asked, reopened = None, False
                yield Frame(index, timestamp, image)
                index += 1
            elif not self._reconnect(reason):
                return
            else:
                reopened = True

    def _reconnect(self, reason: str) -> bool:
        """Reopen the camera for up to ``reconnect_for`` s; False (and an issue) when it does not come back."""
        lost_at = time.monotonic()
        last_frame = self._latest[1]
        while True:
            capture, image = self._open()
            now = time.monotonic()
            if capture is not None:
                with self._condition:
                    if self._closed:
                        capture.release()
                        return False
                    self._latest = (image, now - self._start)
                    self._grabbed += 1
                    self._failed = False
                    self._thread = self._start_grabber(capture)
                self.issues.append(f"camera {self.index}: {reason} after {last_frame:.1f} s; reopened it "
                                   f"{now - lost_at:.1f} s later (nothing recorded in between)")
                return True
            if now - lost_at >= self.reconnect_for or self._closed:
                self.issues.append(f"camera {self.index}: {reason} after {last_frame:.1f} s; it did not open "
                                   f"again within {self.reconnect_for:g} s, so the recording ends there")
                return False
            time.sleep(min(RECONNECT_PAUSE_S, max(0.0, self.reconnect_for - (now - lost_at))))

    def close(self) -> None:
        """Stop the grabber thread, which releases the camera (a grabber stuck in a stalled read is left)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=RECONNECT_PAUSE_S)

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
