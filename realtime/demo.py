"""A built-in demo clip, so `--demo` works without a camera or any media file.

The clip is a slow pan and zoom over scikit-image's astronaut photograph (Eileen Collins), the
one face picture that an installed package ships.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from realtime.types import Frame, VideoInfo

DEMO_SIZE = (640, 360)  # width, height
DEMO_FPS = 30.0
DEMO_SECONDS = 4.0
DEMO_NAME = "demo: scikit-image astronaut photo"
_FACE_CENTER = (226.0, 120.0)  # in the 512 x 512 photo
_CLOSEST_CROP_WIDTH = 300.0  # crop width at the tightest zoom (the photo is 512 wide)


def sample_photo_bgr() -> np.ndarray:
    """The face photo scikit-image ships (its astronaut), as BGR: input for the demo clip and example photo."""
    from skimage.data import astronaut

    return cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)


def demo_frames(
    size: tuple[int, int] = DEMO_SIZE, fps: float = DEMO_FPS, seconds: float = DEMO_SECONDS
) -> Iterator[Frame]:
    """Frames of the demo clip: zoom in on the face and back out, with a gentle sideways sway."""
    photo = sample_photo_bgr()
    photo_height, photo_width = photo.shape[:2]
    width, height = size
    n_frames = round(fps * seconds)
    for index in range(n_frames):
        phase = index / max(n_frames - 1, 1)
        closeness = math.sin(math.pi * phase) ** 2  # 0 at both ends, 1 in the middle
        crop_width = photo_width - (photo_width - _CLOSEST_CROP_WIDTH) * closeness
        crop_height = crop_width * height / width
        center_x = photo_width / 2 + (_FACE_CENTER[0] - photo_width / 2) * closeness
        center_x += 0.06 * crop_width * math.sin(2 * math.pi * phase)
        center_y = crop_height / 2 + (_FACE_CENTER[1] - crop_height / 2) * closeness
        left = min(max(center_x - crop_width / 2, 0.0), photo_width - crop_width)
        top = min(max(center_y - crop_height / 2, 0.0), photo_height - crop_height)
        scale = width / crop_width
        transform = np.float32([[scale, 0, -scale * left], [0, scale, -scale * top]])
        image = cv2.warpAffine(photo, transform, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yield Frame(index, index / fps, image)


class DemoSource:
    """The demo clip with the same interface as VideoFileSource (`.info`, iterate Frames, `with`)."""

    live = False
    audio_path = None

    def __init__(self, size: tuple[int, int] = DEMO_SIZE, fps: float = DEMO_FPS, seconds: float = DEMO_SECONDS):
        self._args = (size, fps, seconds)
        self.info = VideoInfo(size[0], size[1], fps, round(fps * seconds), DEMO_NAME)

    def __iter__(self) -> Iterator[Frame]:
        return demo_frames(*self._args)

    def close(self) -> None:
        """Nothing to release; present so every source can be closed the same way."""

    def __enter__(self) -> DemoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def demo_source() -> DemoSource:
    """The source behind `--demo`: a 4 s, 640x360, 30 fps clip built from the astronaut photo."""
    return DemoSource()
