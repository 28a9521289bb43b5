"""Local cameras (OpenCV): always the newest frame, a grabber thread drops stale ones."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from realtime.errors import SourceError
from realtime.types import Frame, VideoInfo

CAMERA_PROBE_INDICES = range(10)
CAMERA_FRAME_TIMEOUT_S = 5.0


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
    """

    live = True
    audio_path = None

    def __init__(self, index: int):
        self.index = index
        self.path = None
        with _quiet_opencv():
            self._capture = cv2.VideoCapture(index)
            ok, image = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok or image is None:
            self._capture.release()
            others = [i for i in available_cameras() if i != index]
            hint = f"cameras that open: {', '.join(map(str, others))}" if others else "no camera found"
            raise SourceError(f"camera {index}: cannot open it or read a frame ({hint})")
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._start = time.monotonic()
        height, width = image.shape[:2]
        self.info = VideoInfo(width, height, self._capture.get(cv2.CAP_PROP_FPS), None, f"camera {index}")
        self._condition = threading.Condition()
        self._latest: tuple[np.ndarray, float] | None = (image, 0.0)
        self._grabbed = 1  # frames read from the camera so far
        self._running = True
        self._thread = threading.Thread(target=self._grab, name=f"camera {index}", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        """Background thread: read frames as fast as the camera delivers, keep only the newest."""
        while self._running:
            ok, image = self._capture.read()
            with self._condition:
                if not ok:
                    self._running = False
                else:
                    self._latest = (image, time.monotonic() - self._start)
                    self._grabbed += 1
                self._condition.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        seen = 0
        index = 0
        while True:
            with self._condition:
                if not self._condition.wait_for(
                    lambda: self._grabbed > seen or not self._running, timeout=CAMERA_FRAME_TIMEOUT_S
                ):
                    raise SourceError(f"camera {self.index}: no frame for {CAMERA_FRAME_TIMEOUT_S:.0f} s")
                if self._grabbed == seen:  # stopped: the camera went away or close() was called
                    return
                seen = self._grabbed
                image, timestamp = self._latest
            yield Frame(index, timestamp, image)
            index += 1

    def close(self) -> None:
        """Stop the grabber thread and release the camera."""
        with self._condition:
            self._running = False
            self._condition.notify_all()
        self._thread.join(timeout=CAMERA_FRAME_TIMEOUT_S)
        self._capture.release()

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

