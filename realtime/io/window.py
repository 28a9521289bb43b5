"""The on-screen window (OpenCV): shows annotated frames with the processing rate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from realtime.annotator import draw_fps
from realtime.errors import OutputError, one_line
from realtime.types import AnalyzedFrame


def display_available() -> bool:
    """Whether a window can be shown: on Linux that needs DISPLAY set (and, for a local display, its socket)."""
    if not sys.platform.startswith("linux"):
        return True
    display = os.environ.get("DISPLAY", "")
    if display.startswith(":"):  # local X server: Qt aborts the process if it is not there
        return Path(f"/tmp/.X11-unix/X{display[1:].split('.')[0]}").exists()
    return bool(display)


class DisplayWindow:
    """An OpenCV window; `show()` returns False once the user presses q or Esc or closes the window."""

    def __init__(self, title: str = "Emotion Tracer"):
        self.title = title
        self._open = False

    def __enter__(self) -> DisplayWindow:
        if not display_available():
            raise OutputError("cannot open a window: no display (DISPLAY is not set); write to a file instead")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as error:
            raise OutputError(f"cannot open a window ({one_line(error)})") from error
        self._open = True
        return self

    def show(self, image: np.ndarray) -> bool:
        """Show `image`; False when the user asked to stop (q, Esc or the window closed)."""
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def write_frame(self, analyzed: AnalyzedFrame) -> bool:
        """Sink: show the annotated frame with the processing rate; False when the user asked to stop."""
        if analyzed.annotated is None:
            raise ValueError("the window needs annotated frames (give the frame loop an annotator)")
        return self.show(draw_fps(analyzed.annotated, analyzed.fps))

    def close(self) -> None:
        """Close the window."""
        if self._open:
            self._open = False
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)

    def __exit__(self, *exc) -> None:
        self.close()
