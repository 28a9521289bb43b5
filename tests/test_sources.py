"""Frame sources: parsing, image reading edge cases, video decoding, camera errors."""

from __future__ import annotations

import gc
import io
import math
import os
import struct
import threading
import time
import warnings
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from realtime.demo import sample_photo_bgr
from realtime.errors import SourceError
from realtime.io import images
from realtime.io.camera import CameraSource
from realtime.io.images import MAX_PHOTO_PIXELS, ImageSource, read_image
from realtime.io.video import VideoFileSource
from realtime.sources import list_media, media_kind, open_source, parse_source
from realtime.types import DEFAULT_FPS, VideoInfo


def make_clip(
    path: Path,
    frames: int = 12,
    size: tuple[int, int] = (70, 48),  # 70 * 3 bytes is not a multiple of 32: decoded rows are padded
    fps: Fraction | int = 25,
    audio: str | None = None,
    rotation: int | None = None,
) -> Path:
    """Write a small test clip: frame i is a solid grey of level 20 * i; optional sine audio track.

    `audio` is an encoder name ("aac", "pcm_s16le"); the container follows the path's suffix.
    """
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = container.add_stream(audio, rate=44100, layout="stereo")
        for index in range(frames):
            image = np.full((height, width, 3), (20 * index) % 256, np.uint8)
            image[:, : width // 8] = 255  # a white bar on the left shows orientation
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(video.encode(None))
        if sound is not None:
            samples = round(44100 * frames / float(fps))
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            if audio == "aac":
                frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
            else:
                pcm = (wave * 32767).astype(np.int16)
                interleaved = np.stack([pcm, pcm], axis=1).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 44100, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def minimal_png(path: Path, width: int, height: int) -> Path:
    """A PNG header that claims a size but holds no pixel data (a decompression bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


# --- parsing -------------------------------------------------------------------------------------


def test_parse_source_digits_are_cameras_and_the_rest_paths():
    assert parse_source("0") == 0
    assert parse_source(" 12 ") == 12
    assert parse_source("clip.mp4") == Path("clip.mp4")
    assert parse_source("~/clip.mp4") == Path.home() / "clip.mp4"
    with pytest.raises(SourceError):
        parse_source("  ")


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), None])
def test_video_info_replaces_unusable_fps(fps):
    assert VideoInfo(4, 4, fps, None, "x").fps == DEFAULT_FPS


def test_parse_source_takes_a_file_or_folder_that_is_there_as_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "2024").mkdir()  # a folder of the year's photos, not camera 2024
    (tmp_path / "trail.jpg ").write_bytes(b"x")  # a name ending in a space
    assert parse_source("2024") == Path("2024") and parse_source("7") == 7
    assert parse_source("trail.jpg ") == Path("trail.jpg ") and parse_source(" clip.mp4 ") == Path("clip.mp4")


def test_video_info_keeps_fractional_fps():
    assert VideoInfo(4, 4, 30000 / 1001, None, "x").fps == pytest.approx(29.97, abs=1e-3)


# --- images --------------------------------------------------------------------------------------


def test_read_image_composites_transparency_onto_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # invisible red
    rgba[0, 1] = (0, 0, 255, 255)  # opaque blue
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
    assert image[0, 0].tolist() == [255, 255, 255]
    assert image[0, 1].tolist() == [255, 0, 0]  # BGR
    assert abs(int(image[0, 2, 0]) - 127) <= 2


def test_read_image_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png")[0, 0].tolist() == [255, 255, 255]


def test_read_image_grayscale_becomes_bgr(tmp_path):
    Image.fromarray(np.full((5, 7), 100, np.uint8), "L").save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (5, 7, 3)
    assert (image == 100).all()


def test_read_image_scales_16_bit_to_8_bit(tmp_path):
    wide = np.array([[0, 128 * 257, 65535]], np.uint16)
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png")[0, :, 0].tolist() == [0, 128, 255]


def test_read_image_scales_10_12_and_14_bit_data_held_in_16_bit_samples_to_8_bit(tmp_path):
    """Machine-vision and scientific cameras save 12-bit data in 16-bit PNGs and TIFFs: it came out nearly black."""
    for bits in (10, 12, 14):
        top = 2 ** bits - 1
        Image.fromarray(np.array([[0, round(top * 128 / 255), top]], np.uint16)).save(tmp_path / f"deep{bits}.png")
        assert read_image(tmp_path / f"deep{bits}.png")[0, :, 0].tolist() == [0, 128, 255], bits
    face = cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 16  # 12-bit data
    Image.fromarray(face).save(tmp_path / "face12.tif")
    assert np.abs(read_image(tmp_path / "face12.tif")[:, :, 0].astype(int) - face // 16).max() <= 1


def test_read_image_scales_32_bit_and_floating_point_images_by_the_range_they_use(tmp_path):
    """Scientific and camera-raw TIFFs: 32-bit integers holding 0..255 and floats holding 0..1 were black."""
    for values, mode in (([0, 128, 255], "I"), ([0.0, 128 / 255, 1.0], "F"), ([0, 128 * 257, 65535], "I"),
                         ([0.0, 128.0, 255.0], "F")):
        Image.fromarray(np.array([values], np.int32 if mode == "I" else np.float32), mode).save(tmp_path / "wide.tif")
        with Image.open(tmp_path / "wide.tif") as saved:
            assert saved.mode == mode
        assert read_image(tmp_path / "wide.tif")[0, :, 0].tolist() == [0, 128, 255], (values, mode)


def test_a_cut_short_bmp_says_its_top_is_blank_as_its_rows_are_stored_from_the_bottom(tmp_path):
    """It said "blurred where its data is missing" of a BMP whose top half was black."""
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB)).save(buffer, "BMP")
    whole = bytearray(buffer.getvalue())
    (tmp_path / "cut.bmp").write_bytes(whole[: len(whole) // 2])
    assert images.read_photo_file(tmp_path / "cut.bmp").issues[0].endswith(": its top 50% is blank, the rest was analysed")
    height, offset = struct.unpack_from("<i", whole, 22)[0], struct.unpack_from("<I", whole, 10)[0]
    row = (len(whole) - offset) // height
    top_down = whole[:offset] + b"".join(whole[offset + row * index:offset + row * (index + 1)]
                                         for index in reversed(range(height)))
    struct.pack_into("<i", top_down, 22, -height)  # rows stored from the top
    (tmp_path / "top_down.bmp").write_bytes(top_down)
    assert np.array_equal(read_image(tmp_path / "top_down.bmp"), sample_photo_bgr())
    (tmp_path / "cut_top_down.bmp").write_bytes(top_down[: len(top_down) // 2])
    assert images.read_photo_file(tmp_path / "cut_top_down.bmp").issues[0].endswith(
        ": its bottom 50% is blank, the rest was analysed")


@pytest.mark.parametrize("kind, top_left_origin, blank", [("TGA", False, "top"), ("TGA", True, "bottom"),
                                                        ("PPM", None, "bottom")])
def test_a_cut_short_tga_or_netpbm_photo_is_analysed_as_far_as_it_goes_its_blank_end_named(tmp_path, kind,
                                                                                         top_left_origin, blank):
    """A cut-short TGA (rows stored from the bottom up, as most are) was said to be blurred; a cut-short PGM (ORL's
    faces) was refused (Pillow maps a file of raw pixels, and fails on a short one)."""
    picture = Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB))
    for mode, suffix in (("RGB", kind.lower()), ("L", "pgm" if kind == "PPM" else kind.lower())):
        buffer = io.BytesIO()
        options = {} if top_left_origin is None else {"orientation": 1 if top_left_origin else -1}
        picture.convert(mode).save(buffer, kind, **options)
        cut = tmp_path / f"cut_{mode}.{suffix}"
        cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        photo = images.read_photo_file(cut)
        assert photo.issues[0].endswith(f": its {blank} 50% is blank, the rest was analysed"), photo.issues


@pytest.mark.parametrize("kind", ["GIF", "PNG"])
def test_an_animation_cut_short_is_read_by_its_first_frame(tmp_path, kind):
    """Counting an animation's frames by going through them left a cut-short GIF or APNG refused, or on a later
    frame (review of the page count)."""
    frames = [Image.new("RGB", (64, 48), (40 * index, 200 - 30 * index, 131)) for index in range(6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, kind, save_all=True, append_images=frames[1:], duration=100, loop=0)
    cut = tmp_path / f"cut.{kind.lower()}"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 6 // 10])
    photo = images.read_photo_file(cut)
    assert photo.image[24, 32].tolist() == [131, 200, 0]  # the first frame (BGR)


def test_the_first_page_of_a_tiff_of_many_pages_is_turned_upright_once(tmp_path):
    """A scan stored turned, with its EXIF orientation, was read sideways when the file had a second page (its turn
    applied twice, after its pages were counted)."""
    upright = Image.fromarray(cv2.cvtColor(cv2.resize(sample_photo_bgr(), (96, 64)), cv2.COLOR_BGR2RGB))
    orientation = Image.Exif()
    orientation[ExifTags.Base.Orientation] = 6  # turn 90 degrees clockwise to show
    for pages in (1, 2):
        upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / f"{pages}.tif", exif=orientation, save_all=True,
                                                          append_images=[Image.new("RGB", (32, 32))][:pages - 1])
        assert read_image(tmp_path / f"{pages}.tif").shape == (64, 96, 3), pages


def display_p3_profile() -> bytes:
    """An ICC profile of Display P3 (a phone's photos): its primaries (D50-adapted), gamma 2.2."""
    def number(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + number(x) + number(y) + number(z)

    gamma = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256)) + bytes(2)
    name = b"Display P3 test\0"
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(78)),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
            (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)), (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
            (b"rTRC", gamma), (b"gTRC", gamma), (b"bTRC", gamma)]
    table, data, start = b"", b"", 128 + 4 + 12 * len(tags)
    for signature, tag in tags:
        tag += bytes(-len(tag) % 4)
        table += signature + struct.pack(">II", start + len(data), len(tag))
        data += tag
    body = struct.pack(">I", len(tags)) + table + data
    header = (struct.pack(">I", 128 + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12)
              + b"acspAPPL" + bytes(24) + number(0.9642) + number(1.0) + number(0.8249) + b"lcms" + bytes(44))
    return header + body


def test_a_photo_with_a_colour_profile_is_read_in_srgb_as_a_viewer_shows_it(tmp_path):
    """A phone's Display P3 photo was read as if its numbers were sRGB: colours off by up to 10 levels."""
    profile = display_p3_profile()
    original = Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB))
    p3 = ImageCms.profileToProfile(original, ImageCms.createProfile("sRGB"), ImageCms.ImageCmsProfile(
        io.BytesIO(profile)), outputMode="RGB")
    p3.save(tmp_path / "p3.png", icc_profile=profile)
    as_stored = np.abs(np.asarray(p3, int)[:, :, ::-1] - sample_photo_bgr())
    assert np.percentile(as_stored, 95) >= 8  # what reading it as sRGB gave
    read = np.abs(read_image(tmp_path / "p3.png").astype(int) - sample_photo_bgr())
    assert np.percentile(read, 95) <= 2 and np.median(read) <= 1
    rgba = p3.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(512) < 100, 0, 255).astype(np.uint8)[None].repeat(512, 0)))
    rgba.save(tmp_path / "p3_cut_out.png", icc_profile=profile)
    cut_out = read_image(tmp_path / "p3_cut_out.png")
    assert (cut_out[:, :100] == 255).all()  # transparency onto white, as without a profile
    assert np.percentile(np.abs(cut_out[:, 100:].astype(int) - sample_photo_bgr()[:, 100:]), 95) <= 2
    p3.save(tmp_path / "p3_keyed.png", icc_profile=profile, transparency=tuple(np.asarray(p3)[0, 0].tolist()))
    assert (read_image(tmp_path / "p3_keyed.png")[0, 0] == 255).all()  # its key colour transparent: onto white
    p3.save(tmp_path / "damaged_profile.png", icc_profile=profile[:200])  # a profile cut short: the pixels as stored
    assert np.array_equal(read_image(tmp_path / "damaged_profile.png")[:, :, ::-1], np.asarray(p3))


def test_read_image_applies_exif_orientation(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)  # left half red (RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rotated.jpg")
    assert image.shape == (40, 20, 3)  # portrait after rotation
    top, bottom = image[:15].mean(axis=(0, 1)), image[25:].mean(axis=(0, 1))
    assert top[2] > 200 and top[0] < 50  # the red half is now on top (BGR: red is channel 2)
    assert bottom.max() < 50


def test_read_image_refuses_decompression_bombs(tmp_path):
    bomb = minimal_png(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(SourceError, match="decompression bomb"):
        read_image(bomb)


def test_an_image_over_the_pixel_limit_is_refused_without_a_library_warning(tmp_path):
    large = minimal_png(tmp_path / "large.png", 20_000, 15_000)  # 300 MP: over MAX_PHOTO_PIXELS, under twice it
    assert MAX_PHOTO_PIXELS < 20_000 * 15_000 < 2 * MAX_PHOTO_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SourceError, match="20000x15000 pixels, more than the 250,000,000"):
            read_image(large)
        assert media_kind(minimal_png(tmp_path / "large_without_suffix", 20_000, 15_000)) == "image"
        assert media_kind(minimal_png(tmp_path / "bomb_without_suffix", 100_000, 100_000)) == "image"
    assert [str(warning.message) for warning in caught] == []


def test_an_icon_holding_a_png_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path):
    """Pillow decodes an icon's PNG as it opens the file: a 1.7 MB ICO of 21000x21000 took 1.9 GB before the
    refusal, in the command line and the web app."""
    png = minimal_png(tmp_path / "inner.png", 20_000, 15_000).read_bytes()
    directory = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22)
    for name in ("big.ico", "big.png"):  # (named as a PNG too: Pillow goes by the content)
        (tmp_path / name).write_bytes(directory + png)
        with pytest.raises(SourceError, match="20000x15000 pixels, more than the 250,000,000"):
            read_image(tmp_path / name)
        assert images.image_size(tmp_path / name) == (20_000, 15_000)
    dib = struct.pack("<IiiHHIIiiII", 40, 10_000, 2 * 30_000, 1, 8, 1, 0, 2835, 2835, 256, 0)  # a bitmap's, 10000x30000
    directory = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 8, len(dib), 22)
    (tmp_path / "bitmap.ico").write_bytes(directory + dib)  # (its directory says 256x256)
    assert images.image_size(tmp_path / "bitmap.ico") == (10_000, 30_000)
    with pytest.raises(SourceError, match="10000x30000 pixels, more than the 250,000,000"):
        read_image(tmp_path / "bitmap.ico")
    Image.new("RGBA", (64, 64), (200, 100, 50, 255)).save(tmp_path / "small.ico", sizes=[(16, 16), (64, 64)])
    Image.new("RGB", (48, 48), (200, 100, 50)).save(tmp_path / "bmp.ico", bitmap_format="bmp", sizes=[(48, 48)])
    assert images.image_size(tmp_path / "bmp.ico") == (48, 48) and read_image(tmp_path / "bmp.ico").shape == (48, 48, 3)
    assert read_image(tmp_path / "small.ico").shape == (64, 64, 3) and images.image_size(tmp_path / "small.ico") == (64, 64)


def test_read_image_honours_a_lowered_pixel_limit(tmp_path, monkeypatch):
    Image.new("RGB", (50, 50)).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(SourceError, match="small.png"):
        read_image(tmp_path / "small.png")


def test_read_image_rejects_missing_empty_folder_and_garbage(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "garbage.jpg").write_text("this is not a picture")
    (tmp_path / "folder.jpg").mkdir()
    cases = [("missing.jpg", "no such file"), ("empty.jpg", "empty"), ("garbage.jpg", "not an image"),
             ("folder.jpg", "not a file")]
    for name, reason in cases:
        with pytest.raises(SourceError, match=reason) as error:
            read_image(tmp_path / name)
        assert name in str(error.value) and "\n" not in str(error.value)


def test_a_damaged_avif_is_not_called_a_heic_photo(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    whole = tmp_path / "whole.avif"
    Image.new("RGB", (64, 48), (90, 120, 30)).save(whole)
    damaged = tmp_path / "damaged.avif"
    damaged.write_bytes(whole.read_bytes()[:40])
    with pytest.raises(SourceError) as refused:
        read_image(damaged)
    assert "HEIC" not in str(refused.value)
    assert media_kind(damaged) == "image"


def test_read_image_on_real_photos(media):
    assert read_image(media / "Image_with_alpha.png").ndim == 3
    gray = read_image(media / "BWPictureHuman.jpg")
    assert gray.shape[2] == 3 and gray.dtype == np.uint8


def test_image_source_yields_one_frame(tmp_path):
    Image.new("RGB", (9, 7), (10, 20, 30)).save(tmp_path / "one.png")
    with open_source(str(tmp_path / "one.png")) as source:
        assert isinstance(source, ImageSource)
        frames = list(source)
    assert source.info == VideoInfo(9, 7, DEFAULT_FPS, 1, str(tmp_path / "one.png"))
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].timestamp == 0.0
    assert frames[0].image[0, 0].tolist() == [30, 20, 10]


# --- media kinds and folders --------------------------------------------------------------------


def test_media_kind_by_suffix_and_by_content(tmp_path):
    assert media_kind(Path("a.JPG")) == "image"
    assert media_kind(Path("a.mov")) == "video"
    Image.new("RGB", (2, 2)).save(tmp_path / "photo", format="PNG")
    assert media_kind(tmp_path / "photo") == "image"
    (tmp_path / "clip").write_bytes(b"\x00" * 64)
    assert media_kind(tmp_path / "clip") == "video"


def test_list_media_sorted_and_filtered(tmp_path):
    for name in ["b.png", "a.mp4", "notes.txt", "C.JPG", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mp4").mkdir()
    assert [p.name for p in list_media(tmp_path)] == ["C.JPG", "a.mp4", "b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images or videos"):
        list_media(tmp_path / "empty")
    with pytest.raises(SourceError, match="no such folder"):
        list_media(tmp_path / "missing")


def test_open_source_refuses_a_folder(tmp_path):
    with pytest.raises(SourceError, match="folder"):
        open_source(tmp_path)


# --- video files ---------------------------------------------------------------------------------


def test_video_file_source_info_frames_and_timestamps(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(70, 48), fps=25)
    with open_source(str(clip)) as source:
        assert isinstance(source, VideoFileSource)
        assert source.info == VideoInfo(70, 48, 25.0, 12, str(clip))
        assert source.audio_path is None
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert [f.timestamp for f in frames] == pytest.approx([i / 25 for i in range(12)], abs=1e-6)
    for index, frame in enumerate(frames):
        assert frame.image.shape == (48, 70, 3) and frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
        assert abs(float(frame.image[:, 20:].mean()) - (20 * index) % 256) < 4


def test_a_video_source_left_early_or_never_iterated_holds_no_thread_and_no_file(tmp_path):
    """A decoder thread that waits for a consumer gone for good kept the source, its file and itself alive."""
    clip = make_clip(tmp_path / "clip.mp4", frames=40)

    def decoders() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate() if thread.name == "decode clip.mp4"]

    def open_files() -> list[str]:
        return [name for name in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{name}") == str(clip)]

    for _ in range(3):
        source = open_source(str(clip))
        next(iter(source))  # one frame taken; the iterator is dropped at once
        del source
    for _ in range(3):
        source = open_source(str(clip))  # opened, never iterated nor closed
        del source
    source = open_source(str(clip))
    for _frame in source:
        break  # a loop left early
    gc.collect()
    assert decoders() == [] and open_files() == []
    del source


def test_video_file_source_applies_rotation_metadata(tmp_path):
    clip = make_clip(tmp_path / "turned.mp4", frames=3, size=(64, 32), rotation=90)
    with VideoFileSource(clip) as source:
        assert (source.info.width, source.info.height) == (32, 64)
        image = next(iter(source)).image
    assert image.shape == (64, 32, 3)
    assert image[-4:].mean() > 200 and image[:50].mean() < 100  # left bar turned counter-clockwise: now at the bottom


def test_video_file_source_stops_cleanly_when_closed_early(tmp_path):
    clip = make_clip(tmp_path / "long.mp4", frames=60)
    before = threading.active_count()
    with VideoFileSource(clip, queue_size=2) as source:
        for frame in source:
            if frame.index == 3:
                break
    assert threading.active_count() == before


def test_video_file_source_reports_audio(tmp_path):
    with VideoFileSource(make_clip(tmp_path / "sound.mp4", audio="aac")) as source:
        assert source.audio_path == source.path


def test_video_file_source_rejects_bad_files(tmp_path):
    (tmp_path / "garbage.mp4").write_text("not a video at all")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name, reason in [("garbage.mp4", "not a video"), ("empty.mp4", "empty"), ("missing.mp4", "no such file")]:
        with pytest.raises(SourceError, match=reason) as error:
            VideoFileSource(tmp_path / name)
        assert name in str(error.value) and "\n" not in str(error.value)


def test_an_mp4_with_b_frames_cut_short_counts_every_frame_it_lost(tmp_path):
    """An MP4 with its index first and B-frames, cut at several points (a broken download): the frames read and
    the frames said lost add up to the index's count (from the timestamps alone some cuts counted 6 too few)."""
    path = tmp_path / "whole.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        video = container.add_stream("libx264", rate=30, options={"preset": "veryfast", "bf": "3"})
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        for index in range(300):
            image = np.zeros((96, 160, 3), np.uint8)
            image[:, :, 0] = (np.arange(160)[None, :] * 2 + 5 * index) % 256
            image[20:40, (index * 3) % 140:(index * 3) % 140 + 20] = 255  # a square moving right
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(video.encode(None))
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    for share in (0.3, 0.37, 0.5, 0.62, 0.7):
        cut = tmp_path / "cut.mp4"
        cut.write_bytes(data[:int(len(data) * share)])
        with VideoFileSource(cut) as source:
            read = len(list(source))
        assert 0 < read < 300 and read + source.frames_lost == 300, share
        assert "it is cut short or damaged from there on" in source.issues[-1]


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_an_mp4_cut_short_before_its_index_is_called_cut_short_not_unreadable(tmp_path, suffix):
    clip = make_clip(tmp_path / f"whole{suffix}", frames=60)  # the index (moov) at the end, as cameras write it
    with VideoFileSource(clip) as source:
        assert len(list(source)) == 60
    data = clip.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    for cut in (len(data) // 2, data.find(b"moov") - 4):
        cut_short = tmp_path / f"cut{suffix}"
        cut_short.write_bytes(data[:cut])
        with pytest.raises(SourceError) as error:
            VideoFileSource(cut_short)
        assert str(error.value).startswith(f"video {cut_short}: cut short before its index")
    (tmp_path / "noise.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4)
    with pytest.raises(SourceError, match="not a video file"):  # an ftyp box, then no boxes at all
        VideoFileSource(tmp_path / "noise.mp4")


def test_a_video_none_of_whose_frames_decode_is_refused_in_one_plain_line(tmp_path):
    frames = [Image.new("RGB", (32, 24), (60 * index, 90, 160)) for index in range(3)]
    frames[0].save(tmp_path / "moving.webp", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(SourceError) as error:  # FFmpeg opens an animated WebP but decodes none of its frames
        VideoFileSource(tmp_path / "moving.webp")
    assert str(error.value) == f"video {tmp_path / 'moving.webp'}: has no frames it can decode"


def test_video_file_source_rejects_zero_frames(tmp_path):
    path = tmp_path / "zero.avi"  # AVI keeps a video track that has no frames (MP4 drops it)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    assert path.stat().st_size > 0
    with pytest.raises(SourceError, match="no frames"):
        VideoFileSource(path)


def test_video_file_source_rejects_audio_only_files(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(SourceError, match="no video track"):
        VideoFileSource(path)


def test_real_video_info_and_timestamps(media):
    with VideoFileSource(media / "single_face.mp4") as source:
        assert (source.info.width, source.info.height, source.info.total_frames) == (640, 360, 72)
        assert source.info.fps == pytest.approx(30.0)
        assert source.audio_path is not None
        times = [frame.timestamp for frame in source]
    assert len(times) == 72 and times[0] == 0.0
    assert all(b > a for a, b in zip(times, times[1:]))
    assert math.isclose(times[-1], 71 / 30, abs_tol=0.01)


# --- cameras -------------------------------------------------------------------------------------


def test_missing_camera_fails_with_a_clear_message():
    with pytest.raises(SourceError, match="camera 9") as error:
        open_source("9")
    assert "\n" not in str(error.value)


class FakeCapture:
    """Stands in for cv2.VideoCapture: frame k carries k in its pixels (see `counter`); stops after `frames` reads."""

    def __init__(self, index, frames=10_000):
        self.frames = frames
        self.produced = 0
        self.condition = threading.Condition()

    def isOpened(self):
        return True

    def read(self):
        time.sleep(0.001)
        with self.condition:
            if self.produced >= self.frames:
                return False, None
            image = np.full((6, 8, 3), (self.produced % 256, self.produced // 256, 0), np.uint8)
            self.produced += 1
            self.condition.notify_all()
            return True, image

    def get(self, prop):
        return 0.0  # webcams often report no frame rate

    def set(self, prop, value):
        return True

    def release(self):
        pass


def counter(frame) -> int:
    return int(frame.image[0, 0, 0]) + 256 * int(frame.image[0, 0, 1])


def test_camera_source_hands_out_the_newest_frame(monkeypatch):
    captures = []
    def open_capture(index):
        captures.append(FakeCapture(index))
        return captures[-1]

    monkeypatch.setattr("realtime.io.camera.cv2.VideoCapture", open_capture)
    with CameraSource(0) as camera:
        fake = captures[0]
        assert camera.info == VideoInfo(8, 6, DEFAULT_FPS, None, "camera 0")
        frames = iter(camera)
        first = next(frames)
        with fake.condition:  # let the camera deliver 8 more frames while we "work"
            assert fake.condition.wait_for(lambda: fake.produced >= counter(first) + 8, timeout=10)
        second = next(frames)
    assert (first.index, second.index) == (0, 1)
    # frame first+7 has been read, so first+6 at least has been stored; the next in line would be first+1
    assert counter(second) >= counter(first) + 6
    assert second.timestamp > first.timestamp >= 0


class ClosedCapture(FakeCapture):
    """A camera index that does not open (unplugged)."""

    def isOpened(self):
        return False


def test_camera_source_ends_when_the_camera_stops_and_does_not_come_back(monkeypatch):
    captures = iter([FakeCapture(0, frames=5)])
    monkeypatch.setattr("realtime.io.camera.cv2.VideoCapture", lambda index: next(captures, ClosedCapture(index)))
    with CameraSource(0, reconnect_for=0.3) as camera:
        values = [counter(frame) for frame in camera]
    assert 1 <= len(values) <= 5 and values == sorted(set(values)) and values[-1] == 4
    assert len(camera.issues) == 1 and "stopped delivering frames" in camera.issues[0]
    assert "did not open again within 0.3 s" in camera.issues[0]


def test_a_named_pipe_with_a_photo_name_is_not_read_to_see_what_it_is(tmp_path):
    """Telling a video named as a photo by its first bytes must not block on a pipe that no one writes to."""
    pipe = tmp_path / "waiting.jpg"
    os.mkfifo(pipe)
    kinds = []
    probe = threading.Thread(target=lambda: kinds.append(media_kind(pipe)), daemon=True)
    probe.start()
    probe.join(timeout=30)
    assert kinds == ["image"]  # and open_source() then says it is no file, as for any pipe
    with pytest.raises(SourceError, match="not a file"):
        open_source(pipe)


def test_a_damaged_photo_waiting_to_be_read_as_far_as_it_goes_is_not_kept_waiting_by_new_photos(tmp_path):
    whole = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 8 // 10])
    order, holding, release = [], threading.Event(), threading.Event()

    def hold_a_strict_decoding():  # a photo being read while the damaged one comes
        with images._strict_decoding():
            holding.set()
            release.wait(30)

    def read_the_damaged_photo():
        images.read_photo_file(tmp_path / "cut.jpg")
        order.append("damaged")

    def read_another_photo():
        with images._strict_decoding():
            order.append("another")

    holder, damaged = threading.Thread(target=hold_a_strict_decoding), threading.Thread(target=read_the_damaged_photo)
    holder.start()
    holding.wait(30)
    damaged.start()
    for _ in range(3000):  # until it waits for the photo being read (bounded: 30 s)
        if images._tolerant_waiting:
            break
        time.sleep(0.01)
    another = threading.Thread(target=read_another_photo)  # a photo that comes meanwhile: it went first, and more
    another.start()                                        # such photos kept the damaged one waiting for good
    another.join(0.2)
    release.set()
    for thread in (holder, damaged, another):
        thread.join(30)
    assert order == ["damaged", "another"]
