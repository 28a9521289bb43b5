"""Photos: reading any image Pillow can open as upright BGR, a photo as a one-frame source, writing images."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from realtime.errors import OutputError, SourceError, one_line
from realtime.io.files import check_input_file, check_output_path, write_atomically
from realtime.types import DEFAULT_FPS, Frame, VideoInfo

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".avif"})
IMAGE_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
WEBP_MAX_SIDE = 16383  # the WebP format's limit on width and height


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, upright per its EXIF orientation.

    Transparency is composited onto white, grayscale and 16-bit images become 8-bit BGR.
    Images larger than Pillow's MAX_IMAGE_PIXELS are refused before they are decoded.
    An animated image (GIF, WebP, multi-page TIFF) gives its first frame.
    """
    return read_image_and_frame_count(path)[0]


def read_image_and_frame_count(path: Path | str) -> tuple[np.ndarray, int]:
    """``read_image``, and how many frames the file holds (more than one: animated)."""
    path = Path(path)
    check_input_file(path, "image")
    try:
        with warnings.catch_warnings():  # the size is checked below, with one clear line instead of a warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and image.width * image.height > limit:
                raise SourceError(
                    f"image {path}: {image.width}x{image.height} pixels is more than the {limit} allowed "
                    "(possible decompression bomb)"
                )
            return pil_to_bgr(ImageOps.exif_transpose(image)), getattr(image, "n_frames", 1)
    except Image.DecompressionBombError as error:
        raise SourceError(f"image {path}: too many pixels (possible decompression bomb)") from error
    except UnidentifiedImageError as error:
        raise SourceError(f"image {path}: not an image file this program can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SourceError(f"image {path}: cannot decode it ({one_line(error)})") from error


def _wide_to_gray(image: Image.Image) -> np.ndarray:
    """8-bit gray levels of a 16-bit, 32-bit integer or floating-point gray image, by the range its
    samples use: 0..1 (floating point), 0..255, else 0..65535; beyond that, its own maximum."""
    wide = np.nan_to_num(np.asarray(image, dtype=np.float64)).clip(0, None)
    top = float(wide.max(initial=0))
    if image.mode == "F" and top <= 1.0:
        full_scale = 1.0
    elif image.mode in ("I", "F") and top <= 255:
        full_scale = 255.0
    else:
        full_scale = max(top, 65535.0)
    return np.rint(wide * (255.0 / full_scale)).astype(np.uint8)


def pil_to_bgr(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> C-contiguous (H, W, 3) uint8 BGR."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return cv2.cvtColor(_wide_to_gray(image), cv2.COLOR_GRAY2BGR)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("1", "L"):
        return cv2.cvtColor(np.asarray(image.convert("L")), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


class ImageSource:
    """A single image file as a one-frame source (an animated one's first frame; ``frames_in_file``
    says how many it holds)."""

    live = False
    audio_path = None

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._image, self.frames_in_file = read_image_and_frame_count(self.path)
        height, width = self._image.shape[:2]
        self.info = VideoInfo(width, height, DEFAULT_FPS, 1, str(self.path))

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self._image)

    def close(self) -> None:
        """Nothing to release; present so every source can be closed the same way."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, without decoding it; None if it is not one Pillow reads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def check_image_fits(path: Path, width: int, height: int) -> None:
    """OutputError when the format ``path``'s suffix names cannot hold an image that size (WebP: 16383 px)."""
    if path.suffix.lower() == ".webp" and max(width, height) > WEBP_MAX_SIDE:
        raise OutputError(f"{path}: WebP holds images up to {WEBP_MAX_SIDE} px a side, this one is {width}x{height}; "
                          "use .png or .jpg", path)


def write_image(path: Path | str, image_bgr: np.ndarray) -> Path:
    """Write a BGR image atomically, in the format its suffix names. Returns the path."""
    path = check_output_path(path, IMAGE_OUTPUT_SUFFIXES)
    check_image_fits(path, image_bgr.shape[1], image_bgr.shape[0])
    try:
        ok, data = cv2.imencode(path.suffix.lower(), image_bgr)
    except cv2.error as error:
        raise OutputError(f"{path}: cannot encode the image ({one_line(error)})", path) from error
    if not ok:
        raise OutputError(f"{path}: cannot encode the image", path)
    write_atomically(path, data.tobytes())
    return path
