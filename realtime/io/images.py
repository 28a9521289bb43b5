"""Photos: reading any image Pillow can open as upright BGR, a photo as a one-frame source, writing images."""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from realtime.errors import OutputError, SourceError, one_line
from realtime.io.files import check_input_file, check_output_path, ffmpeg_file, file_head, heif_still, write_atomically
from realtime.io.video import VIDEO_SUFFIXES, has_track
from realtime.types import DEFAULT_FPS, Frame, VideoInfo

# Photos, by suffix (folders are sorted by it): Netpbm (PGM, PPM: the ORL and Extended Yale B face data sets) and TGA too
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".avif", ".pgm", ".ppm",
                            ".pbm", ".pnm", ".tga"})
CORRUPT_JPEG = "corrupt JPEG data"  # why a JPEG that decodes to its end is damaged (_jpeg_data_corrupt)
IMAGE_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
WEBP_MAX_SIDE = 16383  # the WebP format's limit on width and height
# The most pixels a photo may have, checked before it is decoded (against decompression bombs: small files
# that decode to huge images). Pillow's own default, 89.5 megapixels, refuses the 108 and 200 megapixel photos
# of today's phones; 250 megapixels takes them (a 200 MP photo is 16320x12240). A decoded photo costs 3 bytes
# a pixel, held in a few copies at once: reading a 200 MP photo peaks at about 2 GB of memory, analysing and
# annotating it (the command line) at about 4.5 GB. None: no limit. A limit set in Pillow's
# Image.MAX_IMAGE_PIXELS (other than its default; None: no limit) is honoured instead.
MAX_PHOTO_PIXELS: int | None = 250_000_000
FRAMES_COUNTED = 1000  # an animated image's frames (a TIFF's pages) are counted up to this many, for its note
PILLOW_DEFAULT_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's Image.MAX_IMAGE_PIXELS unless changed

_pillow_limit_lock = threading.Lock()
_pillow_limit_readers = 0
_pillow_limit_raised = False  # whether the readers raised Pillow's limit from its default to MAX_PHOTO_PIXELS


def photo_pixel_limit() -> int | None:
    """The most pixels a photo read here may have: MAX_PHOTO_PIXELS, or Pillow's Image.MAX_IMAGE_PIXELS where
    it was changed from its default (None: no limit)."""
    pillow = Image.MAX_IMAGE_PIXELS
    unchanged = pillow == PILLOW_DEFAULT_PIXELS or (_pillow_limit_raised and pillow == MAX_PHOTO_PIXELS)  # by a read
    return MAX_PHOTO_PIXELS if unchanged else pillow


@contextmanager
def _photo_pixel_limit() -> Iterator[None]:
    """Pillow's own checks against decompression bombs at MAX_PHOTO_PIXELS, not its default, while a photo is
    read here (it would refuse one over twice its default before ``read_image`` could say so in one clear
    line). Pillow's limit is process-wide: it is raised while any photo is being read and put back after
    the last one; one set by the program is left as it is."""
    global _pillow_limit_readers, _pillow_limit_raised
    with _pillow_limit_lock:
        if _pillow_limit_readers == 0 and Image.MAX_IMAGE_PIXELS == PILLOW_DEFAULT_PIXELS:
            Image.MAX_IMAGE_PIXELS, _pillow_limit_raised = MAX_PHOTO_PIXELS, True
        _pillow_limit_readers += 1
    try:
        yield
    finally:
        with _pillow_limit_lock:
            _pillow_limit_readers -= 1
            if _pillow_limit_readers == 0 and _pillow_limit_raised:
                if Image.MAX_IMAGE_PIXELS == MAX_PHOTO_PIXELS:  # not set by the program meanwhile
                    Image.MAX_IMAGE_PIXELS = PILLOW_DEFAULT_PIXELS
                _pillow_limit_raised = False


@dataclass
class PhotoFile:
    """A photo file as read: its image (BGR, upright), how many frames the file holds (more than one:
    animated) and what was lost reading it, a line each (damage, a cut-short file, unreadable EXIF data)."""

    image: np.ndarray
    frames_in_file: int = 1
    issues: tuple[str, ...] = ()


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, upright per its EXIF orientation (``read_photo_file``,
    without what was lost)."""
    return read_photo_file(path).image


def read_photo_file(path: Path | str, name: str | None = None) -> PhotoFile:
    """Read an image file as (H, W, 3) uint8 BGR, upright per its EXIF orientation.

    Transparency is composited onto white, grayscale and 16-bit images become 8-bit BGR.
    Images of more than ``photo_pixel_limit()`` pixels (MAX_PHOTO_PIXELS, 250 megapixels) are refused before
    they are decoded.
    An animated image (GIF, WebP, multi-page TIFF) gives its first frame.
    A damaged or cut-short file is decoded as far as it goes (the rest of the picture blank or blurred), and
    EXIF data that cannot be read is left out (the photo as stored); ``issues`` say so, naming the file
    ``name`` (default: ``path``).
    """
    path = Path(path)
    check_input_file(path, "image")
    name = name or str(path)
    limit = photo_pixel_limit()
    try:
        with _photo_pixel_limit():
            try:
                with _strict_decoding():
                    return _decode_photo(path, name, limit)
            except _DamagedData as damage:
                with _tolerant_decoding():
                    return _decode_photo(path, name, limit, damage=str(damage))
    except _DamagedData as damage:  # not even as far as it goes
        raise SourceError(f"image {path}: cannot decode it ({damage})") from damage
    except Image.DecompressionBombError as error:  # over twice the limit, said by Pillow as it opened the file
        if limit is None:  # no limit here, so Pillow had none either but for a race: in its own words
            raise SourceError(f"image {path}: {one_line(error)}") from error
        raise SourceError(_too_many_pixels(path, f"over {2 * limit:,} pixels", limit)) from error
    except UnidentifiedImageError as error:
        if heif_still(path) not in (None, b"avif", b"avis"):  # (a damaged AVIF is one this program reads)
            raise SourceError(f"image {path}: a HEIC/HEIF photo (an iPhone's usual format), which this program cannot "
                              "decode: convert it to JPEG or PNG (an iPhone saves JPEG with Settings > Camera > Formats "
                              "> Most Compatible)") from error
        video_name = path.suffix.lower() in VIDEO_SUFFIXES
        if looks_like_a_video(path) or (video_name and has_track(path, "video")):
            named = "" if video_name else f" (named {path.suffix or 'without a suffix'})"
            raise SourceError(f"image {path}: a video{named}, not a photo: analyse it with --video (in "
                              "Python: EmotionAnalyzer.stream())") from error
        what = "neither a photo nor a video" if video_name else "not an image file"
        raise SourceError(f"image {path}: {what} this program can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SourceError(f"image {path}: cannot decode it ({one_line(error)})") from error


class _DamagedData(Exception):
    """A photo's pixel data failed to decode (its header did not): damaged or cut short."""


def _decode_photo(path: Path, name: str, limit: int | None, damage: str | None = None) -> PhotoFile:
    """Open, check the size of, decode and turn upright one photo; _DamagedData when its pixels fail to decode.

    ``damage``: why they failed before: they are now decoded as far as they go (under ``_tolerant_decoding``),
    and the photo is refused if less than 1% of its picture decodes.
    """
    icon = _icon_size(path)  # (Pillow decodes an icon as it opens it)
    if limit is not None and icon is not None and icon[0] * icon[1] > limit:
        raise SourceError(_too_many_pixels(path, f"{icon[0]}x{icon[1]} pixels", limit))
    with quiet_pillow():  # the size is checked below, with one clear line
        # (retried from a copy in memory: Pillow maps a file of raw pixels, a PGM's, and a short one fails whole)
        image = Image.open(path if damage is None else io.BytesIO(path.read_bytes()))
    with image:
        if limit is not None and image.width * image.height > limit:
            raise SourceError(_too_many_pixels(path, f"{image.width}x{image.height} pixels", limit))
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise _DamagedData(one_line(error)) from error
        if damage is None and image.format in ("JPEG", "MPO") and _jpeg_data_corrupt(path):
            raise _DamagedData(CORRUPT_JPEG)  # libjpeg only warns of it, and Pillow says nothing
        frames = _frames_counted(image)
        issues = ()
        try:
            with quiet_pillow():  # on EXIF data it reads in part: what it read is used
                turn = EXIF_TURNS.get(image.getexif().get(ExifTags.Base.Orientation, 1))
        except Exception as error:  # EXIF parsing fails in many ways (struct, TIFF header, key errors)
            turn = None
            issues += (f"image {name}: its EXIF data cannot be read ({one_line(error)}): analysed as stored, "
                       "without its orientation",)
        upright = image
        if turn is not None:
            upright = image.transpose(turn)
            image.close()  # its pixels: not two copies of a huge photo
        bgr = pil_to_bgr(upright)
        if damage is not None:
            # where a cut-short file's picture is missing: its bottom, or its top where rows are stored bottom up
            end = "top" if _rows_from_the_bottom(path, image.format) else "bottom"
            blank = _blank_share(bgr[::-1] if end == "top" else bgr)
            if blank > 0.99:
                raise SourceError(f"image {path}: cannot decode it ({damage}; too little of the picture decodes)")
            blank_end = f"its {end} {blank:.0%} is blank" if blank >= 0.005 else ""
            if damage == CORRUPT_JPEG:  # decoded to its end, but wrong from the damage on
                lost = f"analysed as it decodes (garbled where its data is damaged{'; ' * bool(blank_end)}{blank_end})"
            else:
                lost = (f"{blank_end}, the rest was analysed" if blank_end
                        else "analysed as far as it decodes (blurred where its data is missing)")
            issues = (f"image {name}: damaged or cut short ({damage}): {lost}", *issues)
        return PhotoFile(bgr, frames, issues)


def _icon_size(path: Path) -> tuple[int, int] | None:
    """The size of the largest picture of an ICO or CUR file, read from the headers of the PNGs and bitmaps it
    holds (or its directory), without decoding any (None if it is no icon file): an icon's picture may be of any
    size whatever its directory says, and Pillow decodes it as it opens the file."""
    try:
        with open(path, "rb") as file:
            head = file.read(6)
            if len(head) < 6 or head[:4] not in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
                return None
            entries = [file.read(16) for _ in range(int.from_bytes(head[4:6], "little"))]
            sizes = []
            for entry in entries:
                if len(entry) < 16:
                    break
                file.seek(int.from_bytes(entry[12:16], "little"))
                head = file.read(24)
                if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                    sizes.append((int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")))
                elif len(head) >= 12 and int.from_bytes(head[:4], "little") >= 40:  # a bitmap's info header, whose
                    sizes.append((abs(int.from_bytes(head[4:8], "little", signed=True)),  # height counts its mask too
                                  abs(int.from_bytes(head[8:12], "little", signed=True)) // 2))
                else:
                    sizes.append((entry[0] or 256, entry[1] or 256))  # (0: 256)
    except OSError:
        return None
    return max(sizes, key=lambda size: size[0] * size[1]) if sizes else None


def _frames_counted(image: Image.Image) -> int:
    """The frames (pages) a file holds: a TIFF's counted up to FRAMES_COUNTED + 1 (Pillow's count of its pages
    takes time growing with their square: minutes for 300,000), other formats' as Pillow counts them (from
    their headers, without decoding). The first frame is left current, and loaded."""
    with quiet_pillow():  # (a page it cannot count past: the first is read all the same)
        if image.format != "TIFF":
            try:
                return getattr(image, "n_frames", 1)
            except (OSError, SyntaxError, ValueError, TypeError):
                return 1
        count = 1
        try:
            while count <= FRAMES_COUNTED:
                image.seek(count)
                count += 1
        except (EOFError, OSError, SyntaxError, ValueError, TypeError):
            pass  # its last page, or one that cannot be read: the count ends there
        finally:
            if image.tell() != 0:
                image.seek(0)
                image.load()  # (Pillow turns a TIFF upright as it loads it: its EXIF turn is then not applied again)
        return count


def frames_held(count: int) -> str:
    """How many frames a file holds, in words: "3 frames", or "more than 1,000 frames" past the count's end."""
    return f"{count:,} frames" if count <= FRAMES_COUNTED else f"more than {FRAMES_COUNTED:,} frames"


def _rows_from_the_bottom(path: Path, kind: str) -> bool:
    """Whether a BMP or TGA file stores its rows from the bottom up, as most do (a BMP whose info header gives a
    positive height; a TGA whose descriptor does not set the top-left origin), so that a cut-short one lacks its
    top."""
    try:
        with open(path, "rb") as file:
            head = file.read(26)
    except OSError:
        return False
    if kind == "BMP":
        return len(head) == 26 and not (int.from_bytes(head[14:18], "little") >= 40
                                        and int.from_bytes(head[22:26], "little", signed=True) < 0)
    return kind == "TGA" and len(head) >= 18 and not head[17] & 0x20


def _jpeg_data_corrupt(path: Path) -> bool:
    """Whether FFmpeg's decoder, told to fail on any error, finds a JPEG's compressed data corrupt (a damaged middle,
    which Pillow decodes into garbled or grey parts without a word)."""
    if _jpeg_frame_marker(path) not in (0xC0, 0xC1, 0xC2):  # FFmpeg decodes Huffman-coded JPEGs only, not arithmetic
        return False
    try:
        with av.open(ffmpeg_file(path), format="jpeg_pipe") as container:  # (image2 reads "a%d.jpg" as a pattern)
            stream = container.streams.video[0]
            stream.codec_context.options = {"err_detect": "explode"}
            for _ in container.decode(stream):
                pass
    except av.InvalidDataError:
        return True
    except (av.FFmpegError, IndexError, OSError, ValueError):
        return False  # FFmpeg cannot tell: Pillow's decoding stands
    return False


def _jpeg_frame_marker(path: Path) -> int | None:
    """The second byte of a JPEG's first SOFn marker (0xC0 baseline, 0xC2 progressive, 0xC9 arithmetic...), if found."""
    try:
        with open(path, "rb") as file:
            if file.read(2) != b"\xff\xd8":
                return None
            while (head := file.read(4)) and len(head) == 4 and head[0] == 0xFF:
                if 0xC0 <= head[1] <= 0xCF and head[1] not in (0xC4, 0xC8, 0xCC):
                    return head[1]
                if (length := int.from_bytes(head[2:], "big")) < 2:
                    return None
                file.seek(length - 2, 1)
    except OSError:
        return None
    return None


def _blank_share(image: np.ndarray) -> float:
    """The share of the picture's rows, from its bottom, all of the colour of its last pixel: where the missing
    data of a cut-short file leaves it blank (give a BMP upside down: its rows are stored from the bottom)."""
    height, last = image.shape[0], image[-1, -1]
    blank = 0
    while blank < height:  # a band of rows at a time: no copy of the whole of a huge photo
        band = image[max(0, height - blank - 64):height - blank]
        other = np.flatnonzero(~np.all(band == last, axis=(1, 2)))
        if len(other):
            return (blank + len(band) - 1 - other[-1]) / height
        blank += len(band)
    return 1.0


# EXIF orientation -> the turn or mirror that makes the photo upright (as Pillow's ImageOps.exif_transpose)
EXIF_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
_pillow_warnings_lock = threading.Lock()


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Pillow's warnings left unsaid for a short call (opening a file, reading its EXIF data): those of large
    images (this program checks their size itself, with one clear line) and of EXIF data read in part.
    ``warnings.catch_warnings`` is not thread-safe (a filter could stay on for good), so such calls take turns."""
    with _pillow_warnings_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        yield


_decoding = threading.Condition()
_strict_decoders = 0  # photos being decoded strictly (a damaged one raises) now
_tolerant_waiting = 0  # damaged photos waiting to be decoded as far as they go
_tolerant_decoder = False  # a damaged photo is being decoded as far as it goes (Pillow's LOAD_TRUNCATED_IMAGES)


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """A photo decoded as Pillow does by default: not while a damaged one is decoded as far as it goes (the
    setting that allows that is process-wide), nor while one waits to be (it would wait for good while photos
    keep coming)."""
    global _strict_decoders
    with _decoding:
        _decoding.wait_for(lambda: not _tolerant_decoder and not _tolerant_waiting)
        _strict_decoders += 1
    try:
        yield
    finally:
        with _decoding:
            _strict_decoders -= 1
            _decoding.notify_all()


@contextmanager
def _tolerant_decoding() -> Iterator[None]:
    """A damaged photo decoded as far as it goes (Pillow's process-wide LOAD_TRUNCATED_IMAGES on), once no
    other photo is being decoded here, and none starts meanwhile."""
    global _tolerant_decoder, _tolerant_waiting
    with _decoding:
        _tolerant_waiting += 1
        try:
            _decoding.wait_for(lambda: not _tolerant_decoder and _strict_decoders == 0)
        finally:
            _tolerant_waiting -= 1
            _decoding.notify_all()  # (if the wait was broken off, strict decoders wait on it no longer)
        _tolerant_decoder, before = True, ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        yield
    finally:
        with _decoding:
            ImageFile.LOAD_TRUNCATED_IMAGES = before
            _tolerant_decoder = False
            _decoding.notify_all()


def looks_like_a_video(path: Path) -> bool:
    """Whether the file starts as a video container does (MP4/MOV, Matroska/WebM, AVI, MPEG, FLV), whatever its
    name says."""
    head = file_head(path, 189)
    if heif_still(path) is not None:  # a HEIF/AVIF still photo is an ISO box file too
        return False
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") or head.startswith(b"\x1a\x45\xdf\xa3")
            or (head.startswith(b"RIFF") and head[8:12] == b"AVI ") or head.startswith((b"\x00\x00\x01\xba", b"FLV"))
            or (len(head) == 189 and head[0] == head[188] == 0x47))  # MPEG-TS: a sync byte every 188 bytes


def _too_many_pixels(path: Path, size: str, limit: int) -> str:
    """The line that refuses a photo of ``size`` over ``limit`` pixels."""
    return (f"image {path}: {size}, more than the {limit:,} ({limit / 1e6:g} megapixels) this program reads "
            "(a guard against decompression bombs: small files that decode to huge images)")


# The full scales of the sample depths that 16-bit and wider gray images hold (machine-vision and scientific
# cameras store 10, 12 or 14 bits in 16-bit samples; 8-bit data is saved in 32-bit TIFFs)
SAMPLE_FULL_SCALES = (255.0, 1023.0, 4095.0, 16383.0, 65535.0)


def _wide_to_gray(image: Image.Image) -> np.ndarray:
    """8-bit gray levels of a 16-bit, 32-bit integer or floating-point gray image, by the range its
    samples use: 0..1 (floating point), else the least of 8, 10, 12, 14 and 16 bits holding its maximum;
    beyond that, its own maximum."""
    wide = np.nan_to_num(np.asarray(image, dtype=np.float64)).clip(0, None)
    top = float(wide.max(initial=0))
    if image.mode == "F" and top <= 1.0:
        full_scale = 1.0
    else:
        full_scale = next((scale for scale in SAMPLE_FULL_SCALES if top <= scale), top)
    return np.rint(wide * (255.0 / full_scale)).astype(np.uint8)


def _as_srgb(image: Image.Image) -> Image.Image:
    """``image`` in sRGB where it carries an ICC colour profile of another colour space (a phone's Display P3, a
    camera's Adobe RGB, a printer's CMYK), as a colour-managed viewer shows it, its transparency kept; as it is
    otherwise (no profile, an sRGB one, one that cannot be used, gray or wide samples)."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "P"):
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if image.mode != "CMYK" and "srgb" in ImageCms.getProfileDescription(profile).lower():
            return image
        if image.mode == "P" or "transparency" in image.info:  # a palette, a key colour: as colours and alpha first
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        alpha = image.getchannel("A") if image.mode == "RGBA" else None
        converted = ImageCms.profileToProfile(image if alpha is None else image.convert("RGB"), profile,
                                              ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):  # a damaged or unfit profile: the pixels as stored
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def pil_to_bgr(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> C-contiguous (H, W, 3) uint8 BGR (in sRGB, where it carries a colour profile)."""
    if not image.width or not image.height:  # an image of no pixels (OpenCV's conversions refuse it): no face in it
        return np.zeros((image.height, image.width, 3), np.uint8)
    image = _as_srgb(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return cv2.cvtColor(_wide_to_gray(image), cv2.COLOR_GRAY2BGR)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = (image.convert("LA") if image.mode == "La" else image).convert("RGBA")  # Pillow: no La -> RGBA
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("1", "L"):
        return cv2.cvtColor(np.asarray(image.convert("L")), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), cv2.COLOR_RGB2BGR)


def bgr_image(image: np.ndarray | Image.Image) -> np.ndarray:
    """A (H, W, 3) uint8 BGR image from a BGR, BGRA or gray uint8 array or a PIL image (upright as a viewer shows
    it, as for a file's path); transparency is composited onto white, as for a file (a fourth channel of zeros
    is padding, not transparency). Anything else is refused."""
    if isinstance(image, Image.Image):
        return pil_to_bgr(ImageOps.exif_transpose(image))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an image: a uint8 numpy array (BGR), a PIL image or a file's path, not "
                        f"{type(image).__name__}")
    if image.dtype != np.uint8:
        hint = " (for values from 0 to 1: (image * 255).round().astype(np.uint8))" if image.dtype.kind == "f" else ""
        raise ValueError(f"expected a uint8 image, got {image.dtype}{hint}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        alpha = image[:, :, 3:]
        if alpha.size and alpha.min() < 255 and alpha.max() > 0:  # all 0: padding (BGRX, a screen grab), no alpha
            opacity = alpha.astype(np.float32) / 255.0
            return np.rint(image[:, :, :3] * opacity + 255.0 * (1.0 - opacity)).astype(np.uint8)
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected a (H, W, 3) BGR image, got shape {image.shape}")


class ImageSource:
    """A single image file as a one-frame source (an animated one's first frame; ``frames_in_file``
    says how many it holds; ``issues``, what was lost reading it, naming it ``name``, default its path)."""

    live = False
    audio_path = None

    def __init__(self, path: Path | str, name: str | None = None):
        self.path = Path(path)
        photo = read_photo_file(self.path, name)
        self._image, self.frames_in_file, self.issues = photo.image, photo.frames_in_file, list(photo.issues)
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
    """(width, height) from an image file's header, without decoding it; None if it is not one Pillow reads (or
    not a file: a named pipe would block the read)."""
    if not path.is_file():
        return None
    if (icon := _icon_size(path)) is not None:  # (Pillow decodes an icon as it opens it)
        return icon
    try:
        with _photo_pixel_limit(), quiet_pillow():
            with Image.open(path) as image:
                return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def annotated_photo_suffix(name: str | Path) -> str:
    """The suffix of an annotated copy of the photo ``name``: its own where that format can be written, else .png."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_OUTPUT_SUFFIXES else ".png"


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
