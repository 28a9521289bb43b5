"""The command line end to end: real media in, annotated video/images and results out, clean errors."""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

import realtime.classifier
import realtime.cli
import realtime.io.video
import realtime.pipeline
import realtime.sources
from realtime.annotator import photo_enlargement
from realtime.cli import OUTPUT_FOLDER_MARK as MARK
from realtime.cli import main
from realtime.demo import demo_source, sample_photo_bgr
from realtime.detector import FaceDetector
from realtime.errors import OutputError
from realtime.io.camera import CameraSource
from realtime.io.files import claim_output
from realtime.io.images import read_image
from realtime.io.video import H264VideoWriter
from realtime.types import Frame, VideoInfo
from tests.conftest import SHARED_MEDIA, cut_short_mp4, without_escaping_ctrl_c

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def video_facts(path: Path) -> tuple[int, int, int, float, str]:
    """(decoded frames, width, height, fps, codec) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(stream.average_rate), stream.codec_context.name


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def one_line_error(captured) -> str:
    """The only line on stderr: "error: ..."."""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def final_error(captured) -> str:
    """After a progress bar: the last stderr line is the only "error: ..." line, and no traceback."""
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1
    assert "Traceback" not in captured.err
    return lines[-1]


def test_video_to_annotated_video_and_csv(media, tiny_model, tmp_path, capsys):
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    code = main(["--video", str(media / "single_face.mp4"), "--output", str(out), "--results", str(results),
                 "--model", str(tiny_model)])
    assert code == 0
    assert video_facts(out) == (72, 640, 360, 30.0, "h264")
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1  # the source's audio is kept
    rows = read_csv(results)
    assert len(rows) == 72  # one face in every frame
    assert [int(row["frame"]) for row in rows] == list(range(72))
    assert {row["face_id"] for row in rows} == {"1"} and {row["source"] for row in rows} == {"single_face.mp4"}
    assert {"happy", "neutral", "sad"} <= set(rows[0])  # a probability column per class
    out_text = capsys.readouterr().out
    assert "72 frames" in out_text and "dominant emotion" in out_text
    assert out_text.endswith(f"saved: {out} (annotated video), {results} (results)\n")  # where it all went


def test_video_without_faces_gives_a_full_video_and_no_rows(media, tiny_model, tmp_path):
    out, results = tmp_path / "out.mp4", tmp_path / "r.jsonl"
    assert main(["--video", str(media / "no_face.mp4"), "-o", str(out), "-r", str(results),
                 "--model", str(tiny_model)]) == 0
    decodable = video_facts(media / "no_face.mp4")[0]  # 95: its header says 98, three frames do not decode
    assert video_facts(out)[:3] == (decodable, 960, 540)
    assert results.read_text() == ""


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_faceless_frame_rows_tell_frames_analysed_without_a_face_from_frames_not_analysed(suffix, tiny_model,
                                                                                          tmp_path, capsys):
    """A study counting how long a face was seen could not tell a frame without one from a frame not analysed."""
    face = cv2.resize(sample_photo_bgr(), (256, 256))
    blank = np.full_like(face, 128)
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "blank.png"), blank)
    cv2.imwrite(str(folder / "face.jpg"), face)
    with av.open(str(folder / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for image in [blank, blank, face, face, face, face]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    results = tmp_path / f"rows.{suffix}"
    assert main([str(folder), "-r", str(results), "--faceless-frame-rows", "--model", str(tiny_model)]) == 0
    rows = read_csv(results) if suffix == "csv" else [json.loads(line) for line in results.read_text().splitlines()]
    ids = [(row["source"], int(row["frame"]), str(row["face_id"] or "")) for row in rows]
    assert ids == [("blank.png", 0, ""), ("clip.mp4", 0, ""), ("clip.mp4", 1, ""),
                   *(("clip.mp4", frame, "1") for frame in range(2, 6)), ("face.jpg", 0, "1")]
    faceless = rows[0]
    assert faceless["label"] in ("", None) and (faceless["happy"] == "" if suffix == "csv" else
                                                faceless["probabilities"] is None)
    assert main([str(folder), "-r", str(results), "--model", str(tiny_model)]) == 0
    assert len(results.read_text().splitlines()) == 5 + (suffix == "csv")  # the faces' rows (and the header) only
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([str(folder), "--faceless-frame-rows", "--model", str(tiny_model)])
    assert "--faceless-frame-rows: rows of the results file, which --results names" in capsys.readouterr().err


def test_jsonl_rows_carry_probabilities(media, tiny_model, tmp_path):
    results = tmp_path / "r.jsonl"
    assert main(["--image", str(media / "multi_face.jpg"), "-r", str(results), "--model", str(tiny_model)]) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(row["face_id"] for row in rows) == [1, 2, 3, 4, 5]
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-2 for row in rows)


@pytest.mark.parametrize("name, faces", [("single_face.jpg", 1), ("couple.jpg", 2), ("Image_with_alpha.png", 1),
                                         ("BWPictureHuman.jpg", None), ("no-faces.jpg", 0)])
def test_photo_to_annotated_photo(media, tiny_model, tmp_path, name, faces):
    out, results = tmp_path / "annotated.png", tmp_path / "r.csv"
    assert main(["--image", str(media / name), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) == 0
    annotated = cv2.imread(str(out))
    original = cv2.imread(str(media / name))
    factor = photo_enlargement(original.shape)  # 1 but for a small photo (no-faces.jpg: 199x148), scaled up
    assert annotated.shape == (original.shape[0] * factor, original.shape[1] * factor, 3)
    if faces is not None:
        assert len(read_csv(results)) == faces


def tiff_of_pages(pages: int) -> bytes:
    """A TIFF of ``pages`` pages of one gray pixel each (a scanner's stack, or a file made to be slow)."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
               (278, 3, 1, 1), (279, 4, 1, 1)]  # 1x1, 8-bit, uncompressed, gray; its pixel at byte 8
    size = 2 + 12 * len(entries) + 4
    data = bytearray(b"II*\x00" + struct.pack("<I", 12) + b"\x80\x00\x00\x00")
    for page in range(pages):
        following = 12 + (page + 1) * size if page < pages - 1 else 0
        data += struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
        data += struct.pack("<I", following)
    return bytes(data)


def test_a_tiff_of_thousands_of_pages_is_read_at_once_its_pages_counted_up_to_a_thousand(tiny_model, tmp_path,
                                                                                        capsys):
    """Counting a TIFF's pages for the note took time growing with their square (11 s for 32,000, minutes for
    300,000), though only the first page is analysed."""
    (tmp_path / "scan.tif").write_bytes(tiff_of_pages(20000))
    assert main(["--image", str(tmp_path / "scan.tif"), "--model", str(tiny_model)]) == 0
    assert "scan.tif holds more than 1,000 frames; only the first is analysed" in capsys.readouterr().err
    (tmp_path / "few.tif").write_bytes(tiff_of_pages(1000))
    assert main(["--image", str(tmp_path / "few.tif"), "--model", str(tiny_model)]) == 0
    assert "few.tif holds 1,000 frames; only the first is analysed" in capsys.readouterr().err


def test_an_animated_image_given_as_a_photo_is_said_to_be_analysed_by_its_first_frame(tiny_model, tmp_path, capsys):
    frames = [Image.new("RGB", (64, 48), (40 * index, 90, 160)) for index in range(3)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "first.png"
    assert main(["--image", str(tmp_path / "moving.gif"), "-o", str(out), "--model", str(tiny_model)]) == 0
    assert "moving.gif holds 3 frames; only the first is analysed (--video analyses them all)" in capsys.readouterr().err
    assert cv2.imread(str(out)).shape == (48 * 5, 64 * 5, 3)  # its first frame, scaled up for a readable label
    frames[0].save(tmp_path / "pages.tiff", save_all=True, append_images=frames[1:])  # no video reads it
    assert main(["--image", str(tmp_path / "pages.tiff"), "-o", str(out), "--model", str(tiny_model)]) == 0
    assert "pages.tiff holds 3 frames; only the first is analysed\n" in capsys.readouterr().err
    frames[0].save(tmp_path / "still.gif")
    assert main(["--image", str(tmp_path / "still.gif"), "-o", str(out), "--model", str(tiny_model)]) == 0
    assert "note" not in capsys.readouterr().err


def test_a_gif_that_holds_its_last_frame_is_whole_and_its_video_holds_it_too(tiny_model, tmp_path, capsys):
    """GIF frames each have their own delay; a long last one (a pause before the loop) is not a cut-short file."""
    frames = [Image.new("RGB", (64, 48), (40 * index, 90, 160)) for index in range(3)]
    frames[0].save(tmp_path / "pause.gif", save_all=True, append_images=frames[1:], duration=[100, 100, 2000], loop=0)
    out = tmp_path / "pause.mp4"
    assert main([str(tmp_path / "pause.gif"), "-o", str(out), "--model", str(tiny_model)]) == 0
    assert "incomplete" not in capsys.readouterr().out
    with av.open(str(out)) as container:
        assert container.duration / av.time_base == pytest.approx(2.2, abs=0.01)
        assert [float(frame.time) for frame in container.decode(video=0)] == pytest.approx([0, 0.1, 0.2], abs=0.001)


def test_a_gif_of_10_ms_frames_plays_at_the_speed_browsers_show_it(tiny_model, tmp_path, capsys):
    """Delays of 10 ms or less are shown for 100 ms by browsers (as FFmpeg does for 0): the video of such a GIF
    lasted a tenth of the GIF as seen, and the page said "0.12 s"."""
    frames = [Image.new("RGB", (64, 48), (20 * index, 90, 160)) for index in range(12)]
    frames[0].save(tmp_path / "fast.gif", save_all=True, append_images=frames[1:], duration=[10] * 11 + [40], loop=0)
    out = tmp_path / "fast.mp4"
    assert main([str(tmp_path / "fast.gif"), "-o", str(out), "--model", str(tiny_model)]) == 0
    assert "incomplete" not in capsys.readouterr().out
    with av.open(str(out)) as container:
        assert container.duration / av.time_base == pytest.approx(1.14, abs=0.01)  # 11 x 0.1 s, and 40 ms
        assert [float(frame.time) for frame in container.decode(video=0)] == pytest.approx(
            [index / 10 for index in range(12)], abs=0.001)


def astronaut_jpeg(**options) -> bytes:
    """scikit-image's astronaut photo (one face, in its upper half) as JPEG bytes, saved with ``options``."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
def test_a_photo_cut_short_is_analysed_as_far_as_it_decodes_and_the_run_says_so(tiny_model, tmp_path, capsys,
                                                                                 progressive):
    whole = astronaut_jpeg(progressive=progressive)
    photo, out, results = tmp_path / "cut.jpg", tmp_path / "out.png", tmp_path / "r.csv"
    photo.write_bytes(whole[: len(whole) * 8 // 10])  # a download broken off: it was refused whole
    assert main([str(photo), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) == 3
    captured = capsys.readouterr()
    assert f"warning: image {photo}: damaged or cut short (image file is truncated" in captured.err
    lost = "analysed as far as it decodes (blurred where" if progressive else "its bottom 15% is blank, the rest was"
    assert lost in captured.err and "incomplete (1 problem" in captured.out
    assert len(read_csv(results)) == 1 and cv2.imread(str(out)).shape == (512, 512, 3)  # the face, in the part there
    png = tmp_path / "cut.png"
    png.write_bytes(cv2.imencode(".png", sample_photo_bgr())[1].tobytes()[:400])  # too little of the picture
    assert main([str(png), "--model", str(tiny_model)]) == 2
    assert one_line_error(capsys.readouterr()) == (f"error: image {png}: cannot decode it (image file is truncated; "
                                                   "too little of the picture decodes)")


# The demo photo at 48x48, arithmetic-coded (libjpeg-turbo's cjpeg -arithmetic -quality 60): a valid JPEG that Pillow
# decodes and FFmpeg cannot.
ARITHMETIC_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZGNywtQFdBRkxOUlNSMj5aYVpQ"
    "YEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT0//yQARCAAwADAD"
    "ASIAAhEBAxEB/8wACgAQEAUBEBEF/9oADAMBAAIRAxEAPwD+y+EOFnfbns6RoN1ZyY86mrIwljP1kC58CZ1V3Lk6vSOkq2N8JMYA+OJf0FFKPC2w"
    "ljIAmoEtXBBVFOA4cG9Hcoqf5qUh1SQiyzu9FTPVXATH2M92LJkPnsGLahe3BQ/IdCswv6+gzNhqY8+z0AsmIuCkqOFixHiustK44j3rjy/E3J5v"
    "ZsIOC4HT9r5CwsMv9xa7feHqbhv3vnZwS6Tok/GQkbA/9c0yi9jAhOrim/ar9M3+q4GjSuHvK8meMV2gsD6mcQ/j9POvT17+w0tib/RF159c1pgd"
    "0JBn3Kq3C3oU2gjuA3AnWEIXIXhKnLpAdaHnVQeZmvTzdlNrY9NAhM6ABW04+nnUz4DHhzW5Vasn7+HzLqM7ZGJJD/5O3N5rZZO8OTuPOAMIYyqe"
    "HsBqdmRnXD6zNnhDpJKcq86gCbf14UBezYaCglsZf46N148UiCB92oBM88T47gb8c1Q6HQXlR8EnYlLBlq7uwuf8lW+j2HbsNMI702nZus8Sqxv9"
    "CKk59NYYlSuWyJdrr0DK+wIHPUAXUoL90+6scdGh1+VUR2i71dMbzL2XD0gAO0W7J/7V94KJCYDUMPySSn+r4b3thRvmm86fFZjyxM9O98zAjQmP"
    "CtbUTJ3rHc9TU/KHGeR+e1oW+Kjv2hLVJRgYHoWdHoCQBPIeU8fVyLfgfwbmmx88bndW+SWqXWxowj+aCmNHw2hhWNrse1sjRV0jKZA3FldnHv8A"
    "qsej+BABGhDUplZg19YZ4/pkupTL7hjsCr4HReBSLeX2WfYoHfxFPMs7YkphJT8G3Y+XQssXe6JZVrkQIKaPHHsh0Sa3pF+jaGtPf6xJGA4U4QZB"
    "R63Lr5YJRnB/8fvYYYrpdecVhYY196242nvmYmoNf/IH6cE687LJM/70ohowOB1gUm2N56t1LWe16SHiniEw/9k="
)


def test_a_jpeg_damaged_in_the_middle_is_analysed_as_it_decodes_and_the_run_says_so(tiny_model, tmp_path, capsys):
    """Zeros over a third of the data: libjpeg only warns, Pillow decoded it without a word (exit 0, a garbled
    picture analysed as if whole)."""
    damaged = bytearray(astronaut_jpeg())
    damaged[len(damaged) // 3: len(damaged) // 3 + 3000] = bytes(3000)
    photo, results = tmp_path / "damaged.jpg", tmp_path / "r.csv"
    photo.write_bytes(bytes(damaged))
    assert main([str(photo), "-r", str(results), "--model", str(tiny_model)]) == 3
    captured = capsys.readouterr()
    assert (f"warning: image {photo}: damaged or cut short (corrupt JPEG data): analysed as it decodes (garbled where "
            "its data is damaged; its bottom 3% is blank)\n") in captured.err
    assert "incomplete (1 problem" in captured.out
    # whole photos: nothing said; they were called damaged when arithmetic-coded, or named like "b%03d.jpg" beside a
    # damaged "b001.jpg" (FFmpeg read the name as a pattern of file names, and decoded the other file)
    (tmp_path / "b001.jpg").write_bytes(bytes(damaged))
    (tmp_path / "b%03d.jpg").write_bytes(astronaut_jpeg())
    (tmp_path / "arithmetic.jpg").write_bytes(ARITHMETIC_JPEG)
    for whole in ("b%03d.jpg", "arithmetic.jpg"):
        assert main(["--image", str(tmp_path / whole), "--model", str(tiny_model)]) == 0
        assert "warning" not in capsys.readouterr().err


def test_a_photo_that_does_not_decode_even_as_far_as_it_goes_is_skipped_in_a_folder(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    garbled = bytearray(cv2.imencode(".webp", sample_photo_bgr())[1].tobytes())
    garbled[1000:1064] = bytes(64)
    (folder / "a.webp").write_bytes(bytes(garbled))
    (folder / "b.jpg").write_bytes(astronaut_jpeg())
    assert main([str(folder), "--model", str(tiny_model)]) == 3  # the run stopped there, with an internal error
    captured = capsys.readouterr()
    assert "warning: skipped image a.webp: cannot decode it (failed to read next frame)\n" in captured.err
    assert "1 frame, 1 face detection" in captured.out


def test_a_photo_whose_exif_data_cannot_be_read_is_analysed_as_stored(tiny_model, tmp_path, capsys):
    photo, out = tmp_path / "exif.jpg", tmp_path / "out.jpg"
    # no TIFF header (and dots per inch set, so that Pillow does not look for them in the EXIF data): it was refused
    photo.write_bytes(astronaut_jpeg(exif=b"Exif\x00\x00" + b"\x137" * 40, dpi=(72, 72)))
    assert main([str(photo), "-o", str(out), "--model", str(tiny_model)]) == 3
    captured = capsys.readouterr()
    assert f"warning: image {photo}: its EXIF data cannot be read (" in captured.err
    assert "analysed as stored, without its orientation" in captured.err and "UserWarning" not in captured.err
    assert cv2.imread(str(out)).shape == (512, 512, 3) and "1 face detection" in captured.out


def test_a_gif_of_one_frame_is_a_photo(tiny_model, tmp_path, capsys):
    Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB)).save(tmp_path / "still.gif")
    out = tmp_path / "still.png"  # a photo's output: it was refused (a GIF was taken for a video)
    assert main([str(tmp_path / "still.gif"), "-o", str(out), "--model", str(tiny_model)]) == 0
    assert cv2.imread(str(out)).shape == (512, 512, 3)
    assert realtime.sources.media_kind(tmp_path / "still.gif") == "image"
    frames = [Image.new("RGB", (64, 48), (40 * index, 90, 160)) for index in range(3)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert realtime.sources.media_kind(tmp_path / "moving.gif") == "video"


def test_folder_of_images_and_videos(media, tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("couple.jpg", "single_face.mp4", "no-faces.jpg"):
        (folder / name).symlink_to(media / name)
    (folder / "notes.txt").write_text("ignored")
    out, results = tmp_path / "out", tmp_path / "r.csv"
    assert main([str(folder), "-o", str(out), "-r", str(results), "--model", str(tiny_model),
                 "--max-frames", "10"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARK, "couple.jpg", "no-faces.jpg", "single_face.mp4"]
    assert video_facts(out / "single_face.mp4")[0] == 10
    rows = read_csv(results)
    assert sorted({row["source"] for row in rows}) == ["couple.jpg", "single_face.mp4"]
    out_text = capsys.readouterr().out
    assert "source" in out_text  # the summary names the file of each face
    assert out_text.endswith(f"saved: {out}/ (3 annotated files), {results} (results)\n")


def test_a_folder_of_netpbm_and_tga_photos_is_analysed_as_each_photo_is_alone(tiny_model, tmp_path, capsys):
    """Face data sets such as ORL and Extended Yale B are PGM files: a folder of them was "no images or videos"."""
    folder = tmp_path / "faces"
    folder.mkdir()
    face = Image.fromarray(cv2.cvtColor(sample_photo_bgr(), cv2.COLOR_BGR2RGB)).resize((256, 256))
    face.convert("L").save(folder / "s1_1.pgm")
    face.save(folder / "s1_2.ppm")
    face.save(folder / "s1_3.tga")
    out, results = tmp_path / "out", tmp_path / "r.csv"
    assert main([str(folder), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARK, "s1_1.png", "s1_2.png", "s1_3.png"]
    assert sorted(row["source"] for row in read_csv(results)) == ["s1_1.pgm", "s1_2.ppm", "s1_3.tga"]
    assert "unknown kind" not in capsys.readouterr().err


def test_an_unreadable_file_in_a_folder_is_skipped(media, tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").symlink_to(media / "justin.jpg")
    (folder / "b.mp4").write_bytes(b"not a video at all")
    assert main([str(folder), "--model", str(tiny_model)]) == 3  # partial success
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "b.mp4" in captured.err and "Traceback" not in captured.err
    assert "1 frame," in captured.out and "incomplete (1 problem" in captured.out
    assert "skipped video b.mp4: " in captured.out and str(folder) not in captured.out  # by its path in the folder
    assert main([str(folder / "b.mp4"), str(folder / "b.mp4")][:1] + ["--model", str(tiny_model)]) == 2
    capsys.readouterr()
    (folder / "a.jpg").unlink()
    (folder / "c.mp4").write_bytes(b"")
    assert main([str(folder), "--model", str(tiny_model)]) == 1  # no file could be read
    error = final_error(capsys.readouterr())
    assert error.startswith("error: nothing could be analysed: skipped video ") and error.endswith(
        "(and 1 more problem above)")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_name_that_is_not_utf8_is_escaped_in_the_results(suffix, tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    photo = cv2.imencode(".jpg", sample_photo_bgr())[1].tobytes()
    for name in (b"a.jpg", b"caf\xe9.jpg", b"z.jpg"):  # a Latin-1 name from an old archive, between two others
        with open(os.fsencode(folder) + b"/" + name, "wb") as file:
            file.write(photo)
    results, out = tmp_path / f"r{suffix}", tmp_path / "out"
    assert main([str(folder), "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) == 0
    text = results.read_text(encoding="utf-8")
    sources = ([row["source"] for row in read_csv(results)] if suffix == ".csv"
               else [json.loads(line)["source"] for line in text.splitlines()])
    assert sources == ["a.jpg", "caf\\udce9.jpg", "z.jpg"]  # as the summary shows it
    assert "caf\\udce9.jpg  1" in capsys.readouterr().out
    # outputs keep the names
    assert sorted(os.listdir(os.fsencode(out))) == [os.fsencode(MARK), b"a.jpg", b"caf\xe9.jpg", b"z.jpg"]


def test_demo_clip(tiny_model, tmp_path):
    out = tmp_path / "demo.mp4"
    assert main(["--demo", "-o", str(out), "--max-frames", "15", "--model", str(tiny_model), "--no-display"]) == 0
    assert video_facts(out)[:3] == (15, 640, 360)


def test_sample_fps_analyses_and_writes_that_many_frames_a_second(tiny_model, tmp_path, capsys):
    out, results = tmp_path / "demo.mp4", tmp_path / "demo.csv"
    assert main(["--demo", "--sample-fps", "5", "-o", str(out), "-r", str(results), "--model", str(tiny_model),
                 "--no-display"]) == 0
    rows = read_csv(results)
    # the demo: 120 frames at 30 a second; its last frame too, so that the video reaches the source's end
    assert [int(row["frame"]) for row in rows] == [*range(0, 120, 6), 119]
    assert [float(row["time"]) for row in rows] == pytest.approx([*(i / 5 for i in range(20)), 119 / 30], abs=1e-3)
    with av.open(str(out)) as container:  # each frame written at its own time: the clip lasts as long
        times = [frame.time for frame in container.decode(container.streams.video[0])]
        duration = container.duration / av.time_base
    assert times == pytest.approx([*(i / 5 for i in range(20)), 119 / 30], abs=1e-3)
    assert duration == pytest.approx(4.0, abs=0.05)
    assert capsys.readouterr().out.startswith("21 frames, 21 face detections in 21 frames")
    for wrong in ("0", "-2", "inf", "five"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--demo", "--sample-fps", wrong, "--model", str(tiny_model), "--no-display"])
        assert exit_info.value.code == 2
        error = final_error(capsys.readouterr())
        assert error.startswith("error: argument --sample-fps: ") and "frames a second" in error


def test_flip_tta_is_on_by_default_and_can_be_turned_off(media, tiny_model, tmp_path):
    runs = {}
    for name, options in (("default", []), ("flip", ["--flip-tta"]), ("no_flip", ["--no-flip-tta"])):
        results = tmp_path / f"{name}.csv"
        assert main(["--video", str(media / "test.mp4"), "--smooth", "0", "--detector", "short",
                     "--max-frames", "5", "-r", str(results), "--model", str(tiny_model), *options]) == 0
        runs[name] = [row["confidence"] for row in read_csv(results)]
    assert len(runs["default"]) == 5
    assert runs["default"] == runs["flip"]
    assert runs["no_flip"] != runs["flip"]  # the tiny model is not mirror-symmetric


def test_show_without_a_display_runs_headless(media, tiny_model, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    assert main(["--image", str(media / "justin.jpg"), "--show", "--model", str(tiny_model)]) == 0
    assert "no display" in capsys.readouterr().err


class FakeCamera(CameraSource):
    """A camera that delivers a photo 20 times, 0.1 s apart (as if frames were dropped), without hardware."""

    def __init__(self, index: int, reconnect_for: float):
        self.index = index
        self.issues = []
        self.image = read_image(SHARED_MEDIA / "single_face.jpg")[:360, :480].copy()
        self.info = VideoInfo(480, 360, 30.0, None, f"camera {index}")

    def __iter__(self):
        for index in range(20):
            yield Frame(index, index * 0.1, self.image)

    def close(self) -> None:
        pass


def test_camera_run_keeps_capture_times_and_uses_the_short_range_detector(media, tiny_model, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.setattr(realtime.sources, "CameraSource", FakeCamera)
    monkeypatch.delenv("DISPLAY", raising=False)
    ranges = []
    monkeypatch.setattr(realtime.pipeline, "FaceDetector",
                        lambda model_range, min_confidence: ranges.append(model_range) or FaceDetector(model_range))
    out, results = tmp_path / "live.mp4", tmp_path / "live.csv"
    assert main(["--camera", "0", "-o", str(out), "-r", str(results), "--model", str(tiny_model)]) == 0
    assert ranges == ["short"]
    assert "Ctrl-C" in capsys.readouterr().err
    frames, width, height, _, _ = video_facts(out)
    assert (frames, width, height) == (20, 480, 360)
    with av.open(str(out)) as container:  # 20 frames 0.1 s apart last 2 s, not 20/30 s
        assert float(container.duration / av.time_base) == pytest.approx(2.0, abs=0.1)
    rows = read_csv(results)
    assert len(rows) == 20 and {row["source"] for row in rows} == {"camera 0"}


@pytest.mark.parametrize("case", ["missing", "not_a_video", "empty", "output_folder_missing",
                                  "results_folder_missing", "bad_suffix", "bad_results_suffix", "output_is_input",
                                  "bad_camera", "missing_model", "not_a_model", "empty_folder", "folder_to_a_file",
                                  "video_is_a_folder", "results_is_a_folder", "not_an_image", "unwritable_folder",
                                  "output_is_a_broken_link", "too_large_for_webp", "unknown_file_to_a_photo",
                                  "output_name_too_long", "results_name_too_long", "folder_output_name_too_long",
                                  "output_folder_name_too_long"])
def test_bad_input_gives_one_line_and_no_output(case, tiny_model, tmp_path, capsys):
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    fake = tmp_path / "fake.mp4"
    fake.write_text("hello, I am not a video")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((60, 80, 3), 200, np.uint8))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "folder").mkdir()
    cv2.imwrite(str(tmp_path / "folder" / "photo.png"), np.full((60, 80, 3), 200, np.uint8))
    model = ["--model", str(tiny_model)]
    argv = {
        "missing": ["--video", str(tmp_path / "missing.mp4"), "-o", str(out), "-r", str(results), *model],
        "not_a_video": ["--video", str(fake), "-o", str(out), "-r", str(results), *model],
        "empty": [str(empty), "-o", str(out), "-r", str(results), *model],
        "output_folder_missing": ["--demo", "-o", str(tmp_path / "no" / "out.mp4"), "-r", str(results), *model],
        "results_folder_missing": ["--demo", "-o", str(out), "-r", str(tmp_path / "no" / "r.csv"), *model],
        "bad_suffix": ["--image", str(photo), "-o", str(out), "-r", str(results), *model],
        "bad_results_suffix": ["--demo", "-o", str(out), "-r", str(tmp_path / "r.xlsx"), *model],
        "output_is_input": ["--video", str(fake), "-o", str(fake), *model],
        "bad_camera": ["--camera", "99", "-o", str(out), "-r", str(results), *model],
        "missing_model": ["--demo", "-o", str(out), "-r", str(results), "--model", str(tmp_path / "none.onnx")],
        "not_a_model": ["--demo", "-o", str(out), "-r", str(results), "--model", str(fake)],
        "empty_folder": [str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), *model],
        "folder_to_a_file": [str(tmp_path / "folder"), "-o", str(tmp_path / "all.mp4"), *model],
        "video_is_a_folder": ["--video", str(tmp_path / "folder"), "-o", str(out), *model],
        "results_is_a_folder": ["--demo", "-r", str(tmp_path / "folder"), *model],
        "not_an_image": ["--image", str(tmp_path / "fake.jpg"), "-o", str(tmp_path / "out.png"), *model],
        "unwritable_folder": [str(tmp_path / "folder"), "-o", "/proc", *model],
        "output_is_a_broken_link": ["--image", str(photo), "-o", str(tmp_path / "link.png"), *model],
        "too_large_for_webp": ["--image", str(tmp_path / "panorama.png"), "-o", str(tmp_path / "out.webp"), *model],
        "unknown_file_to_a_photo": [str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out.jpg"), *model],
        "output_name_too_long": ["--image", str(photo), "-o", str(tmp_path / f"{'c' * 253}.png"), *model],
        "results_name_too_long": ["--demo", "-r", str(tmp_path / f"{'r' * 253}.csv"), *model],
        "folder_output_name_too_long": [str(tmp_path / "folder"), "-o", str(tmp_path / "annotated"), *model],
        "output_folder_name_too_long": ["--image", str(photo), "-o", str(tmp_path / ("d" * 300) / "out.png"), *model],
    }[case]
    if case == "folder_output_name_too_long":  # a 255-byte name whose output, .mp4, is one byte longer
        with av.open(str(tmp_path / "folder" / f"{'v' * 252}.ts"), "w") as container:
            stream = container.add_stream("mpeg2video", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), "bgr24")),
                           *stream.encode(None)]:
                container.mux(packet)
    if case == "unknown_file_to_a_photo":
        fake.rename(tmp_path / "notes.txt")
    if case == "too_large_for_webp":
        cv2.imwrite(str(tmp_path / "panorama.png"), np.zeros((2, 17000, 3), np.uint8))
    if case == "output_is_a_broken_link":
        (tmp_path / "link.png").symlink_to(tmp_path / "gone" / "out.png")
    if case == "not_an_image":
        fake.rename(tmp_path / "fake.jpg")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    error = one_line_error(capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even a temp file
    if case.endswith("is_a_folder"):
        assert "is a folder" in error and "list_media" not in error
    if case == "output_is_a_broken_link":
        assert error == f"error: {tmp_path / 'link.png'}: is a link to {tmp_path / 'gone' / 'out.png'}, which is not " \
                        "there; remove the link or choose another name"
    if case == "too_large_for_webp":  # known before the analysis, not after it
        assert "WebP holds images up to 16383 px a side, this one is 17000x2" in error
    if case.endswith("name_too_long"):  # it was a traceback (ENAMETOOLONG), or a folder run stopped part way
        assert "more than the 255 the file system takes; " in error and "Errno" not in error
    if case == "unknown_file_to_a_photo":  # it said "out.jpg: unsupported output type '.jpg'; use .mp4"
        assert error == f"error: {tmp_path / 'notes.txt'}: neither a photo nor a video this program can read"
    if case == "unwritable_folder":  # named by the folder, not by the file that tried it
        assert error.startswith("error: /proc: cannot write in it (")
    for library_detail in ("Errno", "PyAV", "Pillow"):  # the reason in words, not the library's codes
        assert library_detail not in error


@pytest.mark.parametrize("held", ["video", "results", "folder"])
def test_an_output_another_run_is_writing_is_refused_before_any_work(held, media, tiny_model, tmp_path, capsys):
    """Two runs writing one file destroyed each other's outputs ("writing failed", a video that did not open)."""
    out, results, folder = tmp_path / "out.mp4", tmp_path / "rows.csv", tmp_path / "annotated"
    other_run = claim_output({"video": out, "results": results, "folder": folder}[held])
    try:
        source = [str(media / "single_face.mp4"), "-o", str(out)] if held != "folder" else \
            [str(media), "-o", str(folder)]
        assert main([*source, "-r", str(results), "--max-frames", "3", "--model", str(tiny_model)]) == 2
        named = {"video": out, "results": results, "folder": folder}[held]
        assert one_line_error(capsys.readouterr()) == (f"error: {named}: another run is writing it; wait for that "
                                                       "run to end, or choose another name")
        assert list(tmp_path.iterdir()) == []
    finally:
        other_run.release()
    assert main([str(media / "single_face.mp4"), "-o", str(out), "-r", str(results), "--max-frames", "3",
                 "--model", str(tiny_model)]) == 0  # once that run has ended; its own locks are let go at its end
    assert main([str(media / "single_face.mp4"), "-o", str(out), "--max-frames", "3", "--model", str(tiny_model)]) == 0


def test_one_file_into_an_output_folder_a_folder_run_is_writing_is_refused_and_the_other_way_round(
        media, tiny_model, tmp_path, capsys):
    folder = tmp_path / "annotated"
    folder.mkdir()
    folder_run = claim_output(folder)
    try:
        assert main([str(media / "couple.jpg"), "-o", str(folder / "couple.jpg"), "--model", str(tiny_model)]) == 2
        assert one_line_error(capsys.readouterr()) == (f"error: {folder}: another run is writing in it; wait for that "
                                                       "run to end, or choose another name")
    finally:
        folder_run.release()
    file_run = claim_output(folder, shared=True)  # as a run of one file into the folder holds it
    try:
        assert main([str(media / "couple.jpg"), "-o", str(folder / "other.jpg"), "--model", str(tiny_model)]) == 0
        assert main([str(media), "-o", str(folder), "--max-frames", "1", "--model", str(tiny_model)]) == 2
        assert "another run is writing it" in one_line_error(capsys.readouterr())
    finally:
        file_run.release()
    assert list(folder.iterdir()) == [folder / "other.jpg"]


def test_a_shared_claim_waits_out_another_run_letting_its_claim_go(tmp_path):
    """A run letting go of a lock holds it alone a moment to remove its file: a shared claim (a run of one file into
    a folder) that came then was refused (review of the lock files' removal)."""
    folder = tmp_path / "annotated"
    other_run = claim_output(folder, shared=True)
    fcntl.flock(other_run.lock, fcntl.LOCK_EX)  # as its release does, before it removes the file
    threading.Timer(0.03, other_run.release).start()
    claim = claim_output(folder, shared=True)
    assert claim is not None and claim.lock_file.exists()
    claim.release()


def test_a_claim_on_an_output_removes_its_lock_file_once_no_run_holds_it(media, tiny_model, tmp_path):
    """The lock files (one per output named) were left in the temporary folder for good."""
    out, results = tmp_path / "out.mp4", tmp_path / "rows.csv"
    first, second = claim_output(out, shared=True), claim_output(out, shared=True)
    first.release()
    assert first.lock_file.exists()  # the second claim still holds it: an exclusive claim is refused
    with pytest.raises(OutputError, match="another run is writing it"):
        claim_output(out)
    second.release()
    assert not first.lock_file.exists()
    claims = [claim_output(out), claim_output(results), claim_output(tmp_path, shared=True)]  # as the run's
    for claim in claims:
        claim.release()
    assert main([str(media / "single_face.mp4"), "-o", str(out), "-r", str(results), "--max-frames", "3",
                 "--model", str(tiny_model)]) == 0
    assert [claim.lock_file.exists() for claim in claims] == [False] * 3



def test_the_saved_line_counts_only_the_outputs_the_run_wrote(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png", "b.png"])
    argv = [str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
    assert main(argv) == 0
    assert capsys.readouterr().out.endswith(f"saved: {tmp_path / 'out'}/ (2 annotated files)\n")
    (folder / "b.png").write_bytes(b"not a photo any more")
    os.utime(tmp_path / "out" / "b.png", (time.time() - 60, time.time() - 60))  # written a minute before
    assert main(argv) == 3
    assert capsys.readouterr().out.endswith(f"saved: {tmp_path / 'out'}/ (1 annotated file)\n")


def test_an_output_that_is_a_hard_link_to_the_input_is_refused_and_the_input_kept(tiny_model, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 64, 48
        for index in range(10):
            image = np.full((48, 64, 3), 20 * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    (tmp_path / "same_clip.mp4").hardlink_to(clip)
    original = clip.read_bytes()
    assert main(["--video", str(clip), "-o", str(tmp_path / "same_clip.mp4"), "--model", str(tiny_model)]) == 2
    assert "is the input" in one_line_error(capsys.readouterr())
    assert clip.read_bytes() == original and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "same_clip.mp4"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "clip.mp4").hardlink_to(clip)  # a folder's output named like an input it links to
    assert main([str(tmp_path), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]) == 2
    assert "is one of the inputs" in one_line_error(capsys.readouterr())
    assert clip.read_bytes() == original


def test_a_literal_tilde_names_the_same_file_as_the_input_and_is_refused(tiny_model, tmp_path, monkeypatch, capsys):
    """``~`` reaches the program unexpanded when quoted or passed by a script: ``'~/a.png' -o '~/a.png'``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    original = photo.read_bytes()
    for argv, refusal in ((["~/a.png", "-o", "~/a.png"], ": is the input"),
                          (["--image", "~/a.png", "-o", "~/a.png"], ": is the input"),
                          (["--image", "~/a.png", "-r", "~/a.csv", "-o", "~/a.csv"], "unsupported output type"),
                          (["--image", "~/a.png", "-o", str(photo)], ": is the input")):
        assert main([*argv, "--model", str(tiny_model)]) == 2
        assert refusal in one_line_error(capsys.readouterr())
        assert photo.read_bytes() == original
    assert main(["--image", "~/a.png", "-o", "~/b.png", "-r", "~/b.csv", "--model", str(tiny_model)]) == 0
    assert (tmp_path / "b.png").is_file() and (tmp_path / "b.csv").is_file() and not (tmp_path / "~").exists()


@pytest.mark.parametrize(("argv", "refusal"), [
    (["--demo", "-o", ".mp4"], "error: .mp4: has no name before '.mp4'; give one, e.g. out.mp4"),  # type '(none)'
    (["--demo", "-r", ".csv"], "error: .csv: has no name before '.csv'; give one, e.g. out.csv"),
    (["--demo", "--threads", "\u00b9"], "error: argument --threads: not a positive whole number: '\u00b9' "
                                        "(see python -m realtime --help)"),  # int() failed on it
    (["--image", ""], "error: argument --image: the path is empty (see python -m realtime --help)"),  # "." a folder
    (["--demo", "-o", ""], "error: argument --output/-o: the path is empty (see python -m realtime --help)"),
])
def test_odd_paths_and_numbers_get_a_line_that_says_what_is_wrong(argv, refusal, tiny_model, tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) if "argument" in refusal else contextlib.nullcontext() as stop:
        assert main([*argv, "--model", str(tiny_model)]) == 2
    assert stop is None or stop.value.code == 2
    assert one_line_error(capsys.readouterr()) == refusal and list(tmp_path.iterdir()) == []


def test_a_rerun_does_not_take_its_own_results_file_in_the_folder_for_a_file_left_out(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png", "notes.txt"])
    argv = [str(folder), "-o", str(folder / "annotated"), "-r", str(folder / "all.csv"), "--model", str(tiny_model)]
    for _ in range(2):  # the second run said "2 files of unknown kind skipped: all.csv, notes.txt"
        assert main(argv) == 0
        notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
        assert notes == ["note: 1 file of unknown kind skipped: notes.txt"]


def test_outputs_named_with_a_hash_or_a_line_break_are_known_as_outputs_on_a_rerun(tiny_model, tmp_path, capsys):
    """The list of a folder's outputs took "#1.jpg" for a comment and "new\\nline.jpg" for two names: every rerun was
    refused ("the output folder holds files of the outputs' names that are not this program's outputs")."""
    folder = tmp_path / "in"
    photo_tree(folder, ["#1.png", "new\nline.png", "back\\slash.png", "plain.png"])
    argv = [str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
    for _ in range(3):
        assert main(argv) == 0, capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "#1.png", MARK, "back\\slash.png", "new\nline.png", "plain.png"]


def test_a_rerun_says_which_outputs_of_an_earlier_run_it_does_not_write(tiny_model, tmp_path, capsys):
    """An output whose input was deleted since was left among the new ones without a word."""
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png", "b.png", "c.png"])
    argv = [str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
    assert main(argv) == 0
    assert "earlier run" not in capsys.readouterr().err
    (folder / "b.png").unlink()
    (folder / "c.png").unlink()
    assert main(argv) == 0
    assert f"note: {tmp_path / 'out'} holds 2 outputs of an earlier run that this run does not write (their inputs " \
           "are gone, or in another folder), left as they are: b.png, c.png\n" in capsys.readouterr().err


def test_a_folder_in_the_way_of_one_output_of_a_folder_is_refused_before_any_work(tiny_model, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "in" / name), np.full((60, 80, 3), 90, np.uint8))
    (tmp_path / "out" / "a.png").mkdir(parents=True)  # where a.png's annotated copy would go
    results = tmp_path / "all.csv"
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-r", str(results), "--model", str(tiny_model)]) == 2
    error = one_line_error(capsys.readouterr())
    assert error.startswith(f"error: {tmp_path / 'out' / 'a.png'}: is a folder, where the output for a.png would go")
    assert not results.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_results_may_go_into_the_output_folder_the_run_creates(tiny_model, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.full((60, 80, 3), 90, np.uint8))
    annotated = tmp_path / "annotated"
    argv = [str(tmp_path / "in"), "-o", str(annotated), "--model", str(tiny_model)]
    assert main([*argv, "-r", str(annotated / "all.xlsx")]) == 2  # the suffix is still checked first
    assert "unsupported output type '.xlsx'" in one_line_error(capsys.readouterr()) and not annotated.exists()
    assert main([*argv, "-r", str(annotated / "all.csv")]) == 0
    assert sorted(p.name for p in annotated.iterdir()) == [MARK, "a.png", "all.csv"]


def photo_tree(root: Path, names: list[str], media: Path | None = None) -> None:
    """Files under ``root`` at ``names`` (paths within it): links to a real face photo when ``media`` is given,
    else small grey PNGs; a name not ending in an image suffix gets a line of text."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith((".jpg", ".png")):
            path.write_text("not a photo")
        elif media is not None:
            path.symlink_to(media / "justin.jpg")
        else:
            cv2.imwrite(str(path), np.full((60, 80, 3), 90, np.uint8))


def test_a_folder_run_says_what_it_leaves_out(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png", "day1/b.png", "day2/c.png", "notes.txt", "IMG_0001.HEIC", ".hidden.txt",
                        ".cache/d.png"])
    (tmp_path / "out").mkdir()
    (folder / "annotated").symlink_to(tmp_path / "out")  # the output folder, though inside the input, is no input
    assert main([str(folder), "-o", str(folder / "annotated"), "--model", str(tiny_model)]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert notes == ["note: 2 subfolders not analysed (use --recursive): day1, day2; "
                     "2 files of unknown kind skipped: IMG_0001.HEIC, notes.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [realtime.cli.OUTPUT_FOLDER_MARK, "a.png"]
    photo_tree(tmp_path / "plain", ["a.png", "b.png"])  # nothing left out: nothing said
    assert main([str(tmp_path / "plain"), "--model", str(tiny_model)]) == 0
    assert "note" not in capsys.readouterr().err


def test_a_folder_run_says_what_it_leaves_out_before_any_file_warning(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["b.png", "day1/c.png"])
    (folder / "a.png").write_bytes(b"not a photo")  # the first file: skipped with a warning
    assert main([str(folder), "--model", str(tiny_model)]) == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("note:", "warning:"))]
    assert lines[0] == "note: 1 subfolder not analysed (use --recursive): day1"  # it came after the warning
    assert lines[1].startswith("warning: skipped image a.png")


def test_a_folder_names_its_broken_links_and_pipes_as_problems(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png"])
    (folder / "gone.jpg").symlink_to(tmp_path / "unplugged" / "gone.jpg")  # a drive that is not there
    os.mkfifo(folder / "pipe.mp4")
    (folder / "null.png").symlink_to("/dev/null")
    (folder / "loop.jpg").symlink_to("loop.jpg")  # it stopped the run with a traceback
    (folder / "notes").symlink_to(tmp_path / "nowhere")  # not named as a photo or video: nothing said
    assert main([str(folder), "--model", str(tiny_model)]) == 3  # they were left out without a word
    captured = capsys.readouterr()
    assert f"warning: skipped gone.jpg: a link to {tmp_path / 'unplugged' / 'gone.jpg'}, which is not there\n" \
        in captured.err
    assert "warning: skipped pipe.mp4: not a file (a pipe, socket or device)\n" in captured.err
    assert "warning: skipped null.png: a link to /dev/null, which is not a file (a pipe, socket or device)\n" \
        in captured.err
    assert "warning: skipped loop.jpg: a link to loop.jpg, which cannot be followed (Too many levels of " in captured.err
    assert "notes" not in captured.err and "incomplete (4 problems" in captured.out


def test_a_folder_whose_media_are_all_in_subfolders_suggests_recursive(tiny_model, tmp_path, capsys):
    photo_tree(tmp_path / "in", ["happy/a.png", "happy/b.png", "sad/deep/c.png", "notes.txt"])
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]) == 2
    assert one_line_error(capsys.readouterr()) == (f"error: folder {tmp_path / 'in'}: no images or videos in it, "
                                                   "but 3 in its subfolders (use --recursive)")
    assert not (tmp_path / "out").exists()
    photo_tree(tmp_path / "none", ["sub/notes.txt"])  # subfolders without media: no suggestion
    assert main([str(tmp_path / "none"), "--model", str(tiny_model)]) == 2
    assert one_line_error(capsys.readouterr()).endswith(": no images or videos in it")


def test_a_class_per_folder_dataset_suggests_recursive(fer2013, tiny_model, capsys):
    assert main([str(fer2013 / "test"), "--model", str(tiny_model)]) == 2
    error = one_line_error(capsys.readouterr())
    assert error.startswith(f"error: folder {fer2013 / 'test'}: no images or videos in it, but ")
    assert error.endswith(" in its subfolders (use --recursive)")


def test_recursive_folder_run_keeps_paths_in_results_and_outputs(media, tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.jpg", "day1/a.jpg", "day2/deep/a.jpg", "day2/notes.txt", ".hidden/a.jpg",
                        "day2/.a.jpg"], media)
    (folder / "day1" / "clip.mov").symlink_to(media / "single_face.mp4")
    (folder / "day2" / "deep" / "loop").symlink_to(folder)  # a link loop: each folder is entered once
    (folder / "empty").mkdir()
    out, results = tmp_path / "out", tmp_path / "r.csv"
    assert main([str(folder), "--recursive", "-o", str(out), "-r", str(results), "--model", str(tiny_model),
                 "--max-frames", "5"]) == 0
    captured = capsys.readouterr()
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    assert written == [MARK, "a.jpg", "day1/a.jpg", "day1/clip.mp4", "day2/deep/a.jpg"]  # no partial file left either
    assert video_facts(out / "day1" / "clip.mp4")[0] == 5
    sources = [row["source"] for row in read_csv(results)]
    assert sorted(set(sources)) == ["a.jpg", "day1/a.jpg", "day1/clip.mov", "day2/deep/a.jpg"]
    assert sources.index("a.jpg") < sources.index("day1/a.jpg") < sources.index("day1/clip.mov") \
        < sources.index("day2/deep/a.jpg")  # sorted by path, depth first
    assert "day2/deep/a.jpg" in captured.out  # the summary tells the photos named a.jpg apart
    assert [line for line in captured.err.splitlines() if line.startswith("note:")] == [
        "note: 1 file of unknown kind skipped: day2/notes.txt; "
        "1 folder link skipped (its folder is analysed already): day2/deep/loop"]


def test_an_unreadable_subfolder_is_a_problem_of_a_recursive_run(tiny_model, tmp_path):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png", "locked/b.png", "open/c.png"])
    prefix = []
    if os.geteuid() == 0:  # root reads any folder: run without the capabilities that let it
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
        if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode != 0:
            pytest.skip("running as root, and setpriv cannot drop the capability to read any folder")
    (folder / "locked").chmod(0)
    try:
        completed = subprocess.run([*prefix, sys.executable, "-m", "realtime", str(folder), "--recursive", "--model",
                                    str(tiny_model)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    finally:
        (folder / "locked").chmod(0o755)
    assert completed.returncode == 3, completed.stderr  # done with problems: a folder's files were lost
    problem = "skipped subfolder locked: cannot read it (Permission denied); its files were not analysed"
    assert f"warning: {problem}" in completed.stderr.splitlines() and "note:" not in completed.stderr
    assert "2 frames," in completed.stdout and f"  {problem}" in completed.stdout.splitlines()


def test_recursive_output_folder_inside_the_input_is_not_analysed_again(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png", "day1/b.png"])
    argv = [str(folder), "--recursive", "-o", str(folder / "annotated"), "-r", str(tmp_path / "r.csv"),
            "--model", str(tiny_model)]
    for _ in range(2):  # the second run finds the first one's outputs inside the input
        assert main(argv) == 0
        assert sorted(p.relative_to(folder / "annotated").as_posix() for p in (folder / "annotated").rglob("*")) == [
            realtime.cli.OUTPUT_FOLDER_MARK, "a.png", "day1", "day1/b.png"]
    assert "note" not in capsys.readouterr().err


def test_an_output_folder_that_holds_photos_of_the_outputs_names_is_refused(tiny_model, tmp_path, capsys):
    """``python -m realtime Pics/edited -o Pics``: Pics/holiday.jpg, another photo of the name of an output, was
    replaced by the annotated copy of Pics/edited/holiday.jpg, without a word."""
    pictures = tmp_path / "Pics"
    photo_tree(pictures, ["holiday.png", "edited/holiday.png", "edited/other.png"])
    before = {path: path.read_bytes() for path in pictures.rglob("*.png")}
    argv = [str(pictures / "edited"), "-o", str(pictures), "--model", str(tiny_model)]
    assert main(argv) == 2
    assert one_line_error(capsys.readouterr()) == (
        f"error: {pictures}: the output folder holds files of the outputs' names that are not this program's outputs "
        "(holiday.png): the run would replace them; if they are outputs of a version before 0.21 (or of a run of one "
        "file), remove them, else choose another output folder")
    assert {path: path.read_bytes() for path in pictures.rglob("*.png")} == before
    assert not (pictures / realtime.cli.OUTPUT_FOLDER_MARK).exists() and not (pictures / "other.png").exists()
    (pictures / "holiday.png").rename(pictures / "kept.png")
    for _ in range(2):  # its own outputs are listed, and a rerun replaces them
        assert main(argv) == 0
        assert (pictures / realtime.cli.OUTPUT_FOLDER_MARK).read_text().splitlines()[1:] == ["holiday.png",
                                                                                           "other.png"]
    assert (pictures / "kept.png").read_bytes() == before[pictures / "holiday.png"]
    # its own outputs in a part of an earlier run's output folder, or around one, or of one file run into it
    trip = tmp_path / "trip"
    photo_tree(trip, ["day1/a.png", "day2/b.png"])
    model = ["--model", str(tiny_model)]
    assert main([str(trip), "--recursive", "-o", str(tmp_path / "out"), *model]) == 0
    assert main([str(trip / "day1"), "-o", str(tmp_path / "out" / "day1"), *model]) == 0  # it was refused
    (tmp_path / "out2").mkdir()
    assert main([str(trip / "day2"), "-o", str(tmp_path / "out2" / "day2"), *model]) == 0
    assert main([str(trip), "--recursive", "-o", str(tmp_path / "out2"), *model]) == 0  # it was refused
    assert main([str(trip / "day1" / "a.png"), "-o", str(tmp_path / "out2" / "c.png"), *model]) == 0
    (trip / "c.png").write_bytes((trip / "day1" / "a.png").read_bytes())
    assert main([str(trip), "--recursive", "-o", str(tmp_path / "out2"), *model]) == 0  # c.png: its own output


@pytest.mark.parametrize("recursive", [False, True])
def test_an_output_folder_inside_the_input_that_holds_photos_of_its_own_is_refused(recursive, tiny_model, tmp_path,
                                                                                    capsys):
    """The user's own subfolder given as the output folder: its photos were left out of the run without a word,
    and the one named as an output (photo.png, from the folder's photo.png) was replaced by it."""
    folder = tmp_path / "in"
    photo_tree(folder, ["photo.png", "originals/photo.png", "originals/deeper/b.png"])
    before = {path: path.read_bytes() for path in folder.rglob("*.png")}
    argv = [str(folder), "-o", str(folder / "originals"), "--model", str(tiny_model)] + ["--recursive"] * recursive
    assert main(argv) == 2
    found, harm = ("deeper/b.png, photo.png", "leave them out, and replace those of an output's name") if recursive \
        else ("photo.png", "replace them")
    assert one_line_error(capsys.readouterr()) == (
        f"error: {folder / 'originals'}: the output folder is inside {folder} and holds photos or videos that are not "
        f"this program's outputs ({found}): the run would {harm}; if they are outputs of a version before 0.18, "
        "remove them, else choose another output folder")
    assert {path: path.read_bytes() for path in folder.rglob("*.png")} == before and \
        not (folder / "originals" / realtime.cli.OUTPUT_FOLDER_MARK).exists()
    (folder / "annotated").mkdir()  # a folder of its own, empty: taken, and its outputs listed for the reruns
    for _ in range(2):
        assert main([str(folder), "-o", str(folder / "annotated"), "--model", str(tiny_model)]) == 0
        assert (folder / "annotated" / realtime.cli.OUTPUT_FOLDER_MARK).read_text().splitlines()[1:] == ["photo.png"]
    if not recursive:  # a subfolder of its own that a run without --recursive never enters, where no name clashes
        (folder / "photo.png").rename(folder / "renamed.png")
        for _ in range(2):  # the rerun replaces the output it wrote (it was refused as the user's own)
            assert main([str(folder), "-o", str(folder / "originals"), "--model", str(tiny_model)]) == 0
            assert (folder / "originals" / "renamed.png").is_file()
            assert (folder / "originals" / "photo.png").read_bytes() == before[folder / "originals" / "photo.png"]
        # the user's photos there are not listed as outputs: a run with --recursive would leave them out, and is refused
        capsys.readouterr()
        assert main([str(folder), "-o", str(folder / "originals"), "--recursive", "--model", str(tiny_model)]) == 2
        assert "(deeper/b.png, photo.png)" in one_line_error(capsys.readouterr())


@pytest.mark.parametrize("name", ["same.jsonl", "faces.CSV", "out.mp4"])
def test_a_folder_run_refuses_an_output_folder_named_as_a_file_before_any_work(name, tiny_model, tmp_path, capsys):
    """``--output same.jsonl --results same.jsonl`` made the folder same.jsonl, wrote into it, then failed on the
    results file."""
    folder = tmp_path / "in"
    photo_tree(folder, ["a.png"])
    before = sorted(tmp_path.rglob("*"))
    assert main([str(folder), "-o", str(tmp_path / name), "-r", str(tmp_path / "same.jsonl"),
                 "--model", str(tiny_model)]) == 2
    assert one_line_error(capsys.readouterr()) == (
        f"error: {tmp_path / name}: looks like a file name; give a folder for the outputs of a folder")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("case", ["file_and_folder", "file_in_the_way", "not_a_folder"])
def test_recursive_clashes_are_refused_before_any_work(case, tiny_model, tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    photo_tree(folder, ["x.tif", "x.png/y.png", "day1/z.png"] if case == "file_and_folder" else ["day1/z.png"])
    out.mkdir()
    if case == "file_in_the_way":
        (out / "day1").write_text("a file where the subfolder day1 of the outputs would go")
    source = folder / "day1" / "z.png" if case == "not_a_folder" else folder
    before = sorted(path.as_posix() for path in tmp_path.rglob("*"))
    assert main([str(source), "--recursive", "-o", str(out), "-r", str(tmp_path / "r.csv"),
                 "--model", str(tiny_model)]) == 2
    error = one_line_error(capsys.readouterr())
    assert sorted(path.as_posix() for path in tmp_path.rglob("*")) == before  # nothing written
    assert error == {
        "file_and_folder": f"error: {out / 'x.png'}: would be both the output for x.tif and a folder of outputs; "
                           "rename one of them",
        "file_in_the_way": f"error: {out / 'day1'}: is a file, where the subfolder for the output of day1/z.png "
                           "would go; move it or choose another output folder",
        "not_a_folder": "error: --recursive applies to a folder only (SOURCE a folder)",
    }[case]


def test_without_a_model_the_error_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(realtime.classifier, "SHIPPED_MODEL", "missing.onnx")
    assert main(["--demo", "-o", str(tmp_path / "out.mp4")]) == 2
    assert "reinstall emotion-tracer or pass --model" in one_line_error(capsys.readouterr())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [[], ["--camera", "0", "--demo"], ["--demo", "--smooth", "1"],
                                  ["--demo", "--min-confidence", "-0.1"], ["--demo", "--min-confidence", "0.3"],
                                  ["--demo", "--detector", "far"],
                                  ["--demo", "--max-frames", "0"], ["--camera", "front"],
                                  ["--camera", "0", "--reconnect-for", "-1"], ["--camera", "0", "--reconnect-for", "nan"],
                                  ["--demo", "--whole-image", "--detector", "full"],
                                  ["--demo", "--whole-image", "--min-confidence", "0.5"],
                                  ["--demo", "--whole-image", "--no-roll-correction"],
                                  ["--demo", "--threads", "100000"]])
def test_bad_options_give_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    one_line_error(capsys.readouterr())


def test_ctrl_c_keeps_a_playable_video_and_prints_the_summary(media, tiny_model, tmp_path, monkeypatch, capsys):
    track = realtime.pipeline.EmotionAnalyzer._track

    def interrupted_at_frame_20(self, frame, *args):
        if frame.index == 20:
            raise KeyboardInterrupt
        return track(self, frame, *args)

    monkeypatch.setattr(realtime.pipeline.EmotionAnalyzer, "_track", interrupted_at_frame_20)
    out, results = tmp_path / "out.mp4", tmp_path / "r.csv"
    assert main(["--video", str(media / "single_face.mp4"), "-o", str(out), "-r", str(results),
                 "--model", str(tiny_model)]) == 130
    assert video_facts(out)[0] == 20
    assert len(read_csv(results)) == 20
    assert "20 frames" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.csv"]


def test_failure_part_way_keeps_what_was_analysed(media, tiny_model, tmp_path, monkeypatch, capsys):
    track = realtime.pipeline.EmotionAnalyzer._track

    def broken_at_frame_20(self, frame, *args):
        if frame.index == 20:
            raise RuntimeError("simulated failure\nwith a second line")
        return track(self, frame, *args)

    monkeypatch.setattr(realtime.pipeline.EmotionAnalyzer, "_track", broken_at_frame_20)
    argv = ["--video", str(media / "single_face.mp4"), "-o", str(tmp_path / "out.mp4"),
            "-r", str(tmp_path / "r.csv"), "--model", str(tiny_model)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "simulated failure with a second line" in final_error(captured)
    assert "20 frames" in captured.out  # the summary
    assert video_facts(tmp_path / "out.mp4")[0] == 20
    assert len(read_csv(tmp_path / "r.csv")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.csv"]


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_a_named_pipe_given_as_a_photo_is_refused_at_once(tiny_model, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")  # with an output, the run waited for a writer that never came
    completed = run_cli(str(tmp_path / "pipe.jpg"), "-o", str(tmp_path / "out.png"), "--model", str(tiny_model))
    assert completed.returncode == 2 and completed.stderr == f"error: image {tmp_path / 'pipe.jpg'}: not a file\n"


def test_version_names_the_package_the_shipped_model_and_the_libraries():
    import json

    import onnxruntime

    import realtime
    from realtime.classifier import default_model_path
    from realtime.model_metadata import METADATA_KEY

    completed = run_cli("--version", "--video", "ignored.mp4")
    assert completed.returncode == 0 and completed.stderr == ""
    package, model, libraries = completed.stdout.splitlines()
    assert package == f"emotion-tracer {realtime.__version__}"
    session = onnxruntime.InferenceSession(str(default_model_path()), providers=["CPUExecutionProvider"])
    facts = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])["facts"]
    assert model == (f"model: {default_model_path()} (int8, {facts['parameters']:,} parameters, trained on FER2013; "
                     f"PublicTest accuracy {facts['publictest_accuracy']:.1%}, {facts['publictest_accuracy_flip_tta']:.1%} "
                     "with flip averaging)")
    assert libraries.startswith("onnxruntime ") and "mediapipe 0.10.21" in libraries and "not installed" not in libraries


def test_help_explains_the_options_with_examples():
    completed = run_cli("--help")
    assert completed.returncode == 0
    for option in ("--camera", "--video", "--image", "--demo", "--output", "--results", "--detector",
                   "--min-confidence", "--smooth", "--model", "--flip-tta", "--show", "--no-display",
                   "--max-frames", "examples:", "python -m realtime --camera 0"):
        assert option in completed.stdout


def test_subprocess_end_to_end_and_error(media, tiny_model, tmp_path):
    out = tmp_path / "out.mp4"
    completed = run_cli("--video", str(media / "test.mp4"), "-o", str(out), "--model", str(tiny_model))
    assert completed.returncode == 0, completed.stderr
    assert video_facts(out)[:3] == (115, 596, 336)
    assert "Traceback" not in completed.stderr and "W0000" not in completed.stderr  # MediaPipe's log is quiet
    missing = run_cli("--video", str(tmp_path / "missing.mp4"), "--model", str(tiny_model))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"error: video {tmp_path / 'missing.mp4'}: no such file"]


@pytest.mark.parametrize("redirect", ["2>&-", ">&-", ">/dev/full"])
def test_a_run_started_with_stderr_or_stdout_closed_or_full_does_its_work(redirect, tiny_model, tmp_path):
    """Started by a service with no stderr (or no stdout, or stdout on a full disk): the work is done and the exit
    code is the work's; before, a closed stderr failed every run and the others ended in a traceback."""
    if redirect == ">/dev/full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    out, log = tmp_path / "demo.mp4", tmp_path / "log.txt"
    command = (f'"{sys.executable}" -m realtime --demo --max-frames 10 -o "{out}" --model "{tiny_model}" '
               f'{redirect} {"2>" if redirect.startswith(">") else ">"}"{log}"')
    completed = subprocess.run(["sh", "-c", command], cwd=PROJECT_ROOT, timeout=300)
    assert completed.returncode == 0, log.read_text()
    assert video_facts(out)[0] == 10 and "Traceback" not in log.read_text()
    if redirect == ">/dev/full":
        assert log.read_text().strip() == "warning: the summary could not be printed (No space left on device)"


def test_a_closed_stdout_loses_only_the_report(tiny_model, tmp_path):
    """``python -m realtime ... | head -0``: the outputs are written, no traceback, the work's exit code."""
    out = tmp_path / "demo.mp4"
    run = subprocess.Popen([sys.executable, "-m", "realtime", "--demo", "--max-frames", "10", "-o", str(out),
                            "--model", str(tiny_model)], cwd=Path(realtime.cli.__file__).resolve().parents[1],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run.stdout.close()  # the reader has gone before the summary is printed
    stderr = run.stderr.read()
    assert run.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert video_facts(out)[0] == 10


def interrupted_once(argv: list[str], under_way: Callable[[], bool]) -> tuple[int, str, str]:
    """``python -m realtime argv`` given a Ctrl-C once ``under_way()`` (asked every 0.1 s, for 2 minutes at most):
    its exit code, stdout and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "realtime", *argv], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not under_way():
            time.sleep(0.1)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, stderr


def test_sigint_finishes_the_outputs_and_exits_130(media, tiny_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(12):  # long enough to be interrupted in the middle
        (folder / f"clip{index:02}.mov").symlink_to(media / "noface_face.mov")
    out = tmp_path / "out"
    returncode, stdout, stderr = interrupted_once([str(folder), "-o", str(out), "--model", str(tiny_model)],
                                                  under_way=(out / "clip00.mp4").exists)  # clip00 finished
    assert returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert "frames" in stdout  # the summary
    written = sorted(p.name for p in out.iterdir() if p.name != MARK)
    assert "clip00.mp4" in written and all(not name.startswith(".") for name in written)
    for name in written:
        assert video_facts(out / name)[0] > 0  # every file, even the interrupted one, plays
    left = 12 - len(written)  # the files after the interrupted one: the summary names them, and that one
    assert left > 0 and (f"  {left} file{'s' * (left != 1)} of the folder not analysed (interrupted): "
                         f"clip{len(written):02}.mov") in stdout
    assert re.search(rf"^  clip{len(written) - 1:02}\.mov: interrupted at \d+\.\d s of 6\.4 s, after \d+ frames? "
                     r"analysed; the rest was not analysed$", stdout, re.MULTILINE)


def test_an_interrupted_video_says_how_far_it_was_analysed(tiny_model, tmp_path):
    """A single video stopped part way said only that its outputs were kept, not that most of it was left."""
    clip, results = tmp_path / "talk.mp4", tmp_path / "r.csv"
    with demo_source() as demo, H264VideoWriter(clip, demo.info) as writer:
        frames = list(demo)
        for index in range(600):  # 20 s at 30 frames/s
            writer.write(frames[index % len(frames)].image, index / 30)
    returncode, stdout, stderr = interrupted_once(
        [str(clip), "-r", str(results), "--model", str(tiny_model)],
        under_way=lambda: results.exists() and results.read_text().count("\n") >= 2)  # rows written
    assert returncode == 130, stderr
    analysed = len({row["frame"] for row in read_csv(results)})
    match = re.search(r"^  talk\.mp4: interrupted at (\d+\.\d) s of 20\.0 s, after (\d+) frames? analysed; the rest "
                      r"was not analysed$", stdout, re.MULTILINE)
    assert match and int(match[2]) == analysed < 600 and float(match[1]) < 20, stdout


def test_a_stop_while_a_whole_video_is_being_finished_says_nothing_was_left(tiny_model, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the annotated video of a video analysed to its end was rewritten said "the rest was not
    analysed"."""
    clip = tmp_path / "talk.mp4"
    with demo_source() as demo, H264VideoWriter(clip, demo.info) as writer:
        for frame in list(demo)[:10]:
            writer.write(frame.image, frame.timestamp)
    rewrite = realtime.io.video._rewrite_with_index_in_front

    def stopped_while_finishing(path):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        for _ in range(10_000):  # the handler runs within the next few bytecodes
            pass
        return rewrite(path)

    monkeypatch.setattr(realtime.io.video, "_rewrite_with_index_in_front", stopped_while_finishing)
    assert without_escaping_ctrl_c(main, [str(clip), "-o", str(tmp_path / "out.mp4"), "--model", str(tiny_model)]) \
        == 130
    captured = capsys.readouterr()
    assert "interrupted (Ctrl-C)" in captured.err and "10 frames" in captured.out
    assert "not analysed" not in captured.out and video_facts(tmp_path / "out.mp4")[0] == 10


def test_roll_correction_is_on_by_default_and_can_be_turned_off(tiny_model, tmp_path):
    photo = sample_photo_bgr()
    height, width = photo.shape[:2]
    turned = cv2.warpAffine(photo, cv2.getRotationMatrix2D((width / 2, height / 2), 30, 1.0), (width, height),
                            borderMode=cv2.BORDER_REFLECT)
    cv2.imwrite(str(tmp_path / "tilted.png"), turned)
    runs = {}
    for name, options in (("default", []), ("on", ["--roll-correction"]), ("off", ["--no-roll-correction"])):
        results = tmp_path / f"{name}.csv"
        assert main(["--image", str(tmp_path / "tilted.png"), "-r", str(results), "--model", str(tiny_model),
                     *options]) == 0
        runs[name] = [(row["x1"], row["confidence"]) for row in read_csv(results)]
    assert len(runs["default"]) == 1
    assert runs["default"] == runs["on"]
    assert runs["off"][0][0] == runs["on"][0][0] and runs["off"] != runs["on"]  # same face, another crop


def on_a_terminal(command: list[str]) -> tuple[int, bytes]:
    """The exit code of ``command`` run with its stderr on a terminal 100 columns wide, and what it showed there."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        completed = subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=terminal, timeout=300)
        os.close(terminal)
        shown = b""
        while select.select([controller], [], [], 1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    return completed.returncode, shown


def test_the_progress_bar_shows_on_a_terminal_and_not_in_a_log_file(tiny_model, tmp_path):
    command = [sys.executable, "-m", "realtime", "--demo", "--max-frames", "15", "--model", str(tiny_model)]
    returncode, shown = on_a_terminal(command)
    assert returncode == 0 and b"15/15" in shown and b"frame/s" in shown
    # sampled: 4 frames analysed (every 0.2 s of 30 frames/s) end at frame 18, the 19th read; it stopped at 19/24
    returncode, shown = on_a_terminal([sys.executable, "-m", "realtime", "--demo", "--max-frames", "4",
                                       "--sample-fps", "5", "--model", str(tiny_model)])
    assert returncode == 0 and b"100%" in shown and b"19/19" in shown
    with open(tmp_path / "log.txt", "wb") as log:
        assert subprocess.run(command, cwd=PROJECT_ROOT, stdout=log, stderr=log, timeout=300).returncode == 0
    logged = (tmp_path / "log.txt").read_text()
    assert "\r" not in logged and "15 frames" in logged  # the summary, without the bar's redrawn lines


def test_a_folder_of_photos_shows_its_files_counted_and_a_long_name_leaves_the_bar_its_count(tiny_model, tmp_path):
    """A folder of 895 photos showed nothing for 15 s; a long video name pushed the count and ETA off the bar."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"{index}.jpg"), cv2.resize(sample_photo_bgr(), (128, 128)))
    long_name = folder / "an_interview_recording_of_the_second_group_with_a_long_name_of_its_place_2026-12-07_take_03.mp4"
    with av.open(str(long_name), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        for _ in range(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((128, 128, 3), np.uint8), format="bgr24")))
        container.mux(stream.encode(None))
    returncode, shown = on_a_terminal([sys.executable, "-m", "realtime", str(folder), "--model", str(tiny_model)])
    assert returncode == 0 and b"files: 100%" in shown and b"4/4" in shown
    assert any(b"take_03.mp4" in line and b"/5 [" in line and b"frame/s" in line for line in shown.split(b"\r"))


def test_control_characters_of_file_names_are_escaped_on_the_terminal(tiny_model, tmp_path, capsys):
    """A name's ESC sequence cleared the screen (or coloured it) through the error, warning and summary lines."""
    assert main(["--video", str(tmp_path / "no\x1b[2Jx.mp4"), "--model", str(tiny_model)]) == 2
    error = capsys.readouterr().err
    assert "no\\x1b[2Jx.mp4: no such file" in error and "\x1b" not in error
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad\x1b[31mred.jpg").write_bytes(b"not a photo")
    cv2.imwrite(str(folder / "face.jpg"), sample_photo_bgr())
    assert main([str(folder), "--model", str(tiny_model)]) == 3
    shown = capsys.readouterr()
    assert "\x1b" not in shown.out + shown.err and shown.err.count("bad\\x1b[31mred.jpg") == 1
    assert "bad\\x1b[31mred.jpg" in shown.out  # the summary's problems


def test_the_bar_of_a_whole_video_ends_at_100_percent_where_its_header_counts_more(media, tiny_model):
    """no_face.mp4's header counts 98 frames, 3 of them before its start, which players leave out: the bar of a
    whole run stopped at 95/98 (97%), as if frames were lost."""
    returncode, shown = on_a_terminal([sys.executable, "-m", "realtime", str(media / "no_face.mp4"), "--model",
                                       str(tiny_model)])
    assert returncode == 0 and b"95/95" in shown and b"95/98" not in shown.rsplit(b"\r", 1)[-1]


def test_small_photos_taken_whole_are_counted_and_can_be_turned_off(tiny_model, tmp_path, capsys):
    folder = tmp_path / "thumbs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name in ("landscape.png", "logo.jpg"):  # thumbnails without a face, not flat
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (100, 150, 3), dtype=np.uint8))
    results = tmp_path / "r.csv"
    assert main([str(folder), "-r", str(results), "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert len(read_csv(results)) == 2
    assert "2 small images without a detected face were taken whole as face crops " \
           "(--no-small-images-whole turns this off)" in out
    assert main([str(folder), "-r", str(results), "--model", str(tiny_model), "--no-small-images-whole"]) == 0
    out = capsys.readouterr().out
    assert read_csv(results) == [] and "no faces found" in out and "taken whole" not in out
    assert main(["--image", str(folder / "logo.jpg"), "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert "1 small image without a detected face was taken whole as a face crop" in out
    assert out.startswith("1 frame, 1 face in 1 frame")  # no face detection: the image was taken whole
    assert main(["--image", str(folder / "logo.jpg"), "--model", str(tiny_model), "--whole-image"]) == 0
    out = capsys.readouterr().out
    assert "taken whole" not in out  # asked for: every image is taken whole
    assert out.startswith("1 frame, 1 face (whole image) in 1 frame")
    with pytest.raises(SystemExit) as exit_info:
        main(["--image", str(folder / "logo.jpg"), "--whole-image", "--no-small-images-whole"])
    assert exit_info.value.code == 2
    assert "--[no-]small-images-whole" in one_line_error(capsys.readouterr())


def test_a_video_given_as_a_photo_points_to_video(media, tiny_model, tmp_path, capsys):
    assert main(["--image", str(media / "single_face.mp4"), "-o", str(tmp_path / "x.jpg"),
                 "--model", str(tiny_model)]) == 2
    error = one_line_error(capsys.readouterr())
    assert "a video, not a photo" in error and "--video" in error and "not an image file" not in error


def test_a_photo_or_video_given_as_the_other_kind_or_misnamed_says_what_it_is(tiny_model, tmp_path, capsys):
    clip, photo = tmp_path / "clip.mp4", tmp_path / "face.jpg"
    assert main(["--demo", "-o", str(clip), "--max-frames", "3", "--model", str(tiny_model), "--no-display"]) == 0
    cv2.imwrite(str(photo), sample_photo_bgr())
    misnamed = tmp_path / "clip.jpg"  # a video renamed as a photo
    misnamed.write_bytes(clip.read_bytes())
    heic = tmp_path / "phone.jpg"  # a HEIF still photo (an ISO box file, as an MP4 is): no video either
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    heic_named = tmp_path / "IMG_0001.HEIC"
    heic_named.write_bytes(heic.read_bytes())
    text_mp4, text_jpg = tmp_path / "notes.mp4", tmp_path / "notes.jpg"  # neither: no pointer to the other flag
    text_mp4.write_text("hello\n")
    text_jpg.write_text("hello\n")
    capsys.readouterr()
    for argv, expected in (
            (["--video", str(photo), "-o", str(tmp_path / "out.mp4")],
             f"error: video {photo}: a photo, not a video: analyse it with --image (in Python: "
             "EmotionAnalyzer.analyze())"),
            (["--image", str(misnamed)], f"error: image {misnamed}: a video (named .jpg), not a photo: analyse it "
                                         "with --video (in Python: EmotionAnalyzer.stream())"),
            (["--image", str(heic)], f"error: image {heic}: a HEIC/HEIF photo (an iPhone's usual format), which this "
                                     "program cannot decode: convert it to JPEG or PNG (an iPhone saves JPEG with "
                                     "Settings > Camera > Formats > Most Compatible)"),
            ([str(heic_named)], f"error: image {heic_named}: a HEIC/HEIF photo (an iPhone's usual format), which this "
                                "program cannot decode: convert it to JPEG or PNG (an iPhone saves JPEG with "
                                "Settings > Camera > Formats > Most Compatible)"),  # as SOURCE it was read as a video
            (["--video", str(heic_named), "-o", str(tmp_path / "out.mp4")],
             f"error: video {heic_named}: a HEIC/HEIF/AVIF photo, not a video"),  # was "cut short before its index"
            (["--image", str(text_mp4)], f"error: image {text_mp4}: neither a photo nor a video this program can read"),
            (["--video", str(text_jpg), "-o", str(tmp_path / "out.mp4")],
             f"error: video {text_jpg}: has no frames it can decode"),
            ([str(tmp_path / "nothere") + "/"], f"error: {tmp_path / 'nothere'}: no such file or folder"),
            ([str(tmp_path / "nothere.mp4")], f"error: video {tmp_path / 'nothere.mp4'}: no such file")):
        assert main([*argv, "--model", str(tiny_model)]) == 2
        assert one_line_error(capsys.readouterr()) == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["IMG_0001.HEIC", "clip.jpg", "clip.mp4", "face.jpg",
                                                                 "notes.jpg", "notes.mp4", "phone.jpg"]
    for argv in ([str(misnamed)], ["--video", str(misnamed)]):  # as SOURCE, or as a video: read as the video it is
        assert main([*argv, "-r", str(tmp_path / "rows.csv"), "--model", str(tiny_model)]) == 0
        assert sorted({int(row["frame"]) for row in read_csv(tmp_path / "rows.csv")}) == [0, 1, 2]


def test_a_cut_short_video_is_reported_once_without_python_warnings(media, tiny_model, tmp_path):
    cut = cut_short_mp4(media / "single_face.mp4", tmp_path)
    completed = run_cli("--video", str(cut), "--model", str(tiny_model))
    assert completed.returncode == 3
    warned = [line for line in completed.stderr.splitlines() if "frames lost" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: video cut.mp4: ")
    assert "Warning" not in completed.stderr


def test_an_output_subfolder_that_cannot_be_made_fails_that_file_only(tiny_model, tmp_path):
    """Made as the run reaches the file (atomic, and one made meanwhile is used); a failure is that file's."""
    output = tmp_path / "out" / "day1" / "a.png"
    (tmp_path / "out").mkdir()
    job = realtime.cli.Job("image", tmp_path / "in" / "day1" / "a.png", output, "day1/a.png")
    realtime.cli._make_output_folder(job)
    assert output.parent.is_dir()
    realtime.cli._make_output_folder(job)  # already there: nothing to do
    output.parent.rmdir()
    output.parent.write_text("a file got in the way after the checks")
    with pytest.raises(realtime.cli.OutputError) as failure:
        realtime.cli._make_output_folder(job)
    assert failure.value.path == output and str(failure.value).startswith(
        f"{output}: cannot create the folder {output.parent} (")


def test_a_small_photo_is_annotated_scaled_up_so_that_its_label_can_be_read(tiny_model, tmp_path):
    crop = cv2.resize(cv2.cvtColor(sample_photo_bgr()[30:230, 170:350], cv2.COLOR_BGR2GRAY), (48, 48))
    cv2.imwrite(str(tmp_path / "crop.png"), crop)  # a FER2013-style face crop, taken whole
    out, results = tmp_path / "crop_out.png", tmp_path / "rows.csv"
    assert main(["--image", str(tmp_path / "crop.png"), "-o", str(out), "-r", str(results),
                 "--model", str(tiny_model)]) == 0
    annotated = cv2.imread(str(out))
    assert annotated.shape == (240, 240, 3)  # 5 times as large, each pixel a 5x5 square
    assert (np.abs(annotated[2::5, 2::5, 0].astype(int) - crop) <= 8).mean() > 0.6  # but where box and label are
    box = [int(read_csv(results)[0][key]) for key in ("x1", "y1", "x2", "y2")]
    assert 0 <= box[0] < box[2] <= 48 and 0 <= box[1] < box[3] <= 48  # the results: the photo's own coordinates


def test_a_photo_too_wide_for_mediapipe_to_pad_is_analysed(media, tiny_model, tmp_path):
    """justin.jpg's face in a 22000x900 panorama: the whole-photo passes would pad it past the 32767 px that
    MediaPipe's image code takes, which aborted the process (no error line, no results); now they see it scaled
    down, and the tiles find the face."""
    panorama = np.full((900, 22000, 3), 180, np.uint8)
    face = read_image(media / "justin.jpg")
    panorama[100:100 + face.shape[0], 15000:15000 + face.shape[1]] = face
    path = tmp_path / "panorama.jpg"
    cv2.imwrite(str(path), panorama)
    results = tmp_path / "rows.csv"
    completed = run_cli("--image", str(path), "--results", str(results), "--model", str(tiny_model))
    assert completed.returncode == 0, completed.stderr
    rows = list(csv.DictReader(results.open()))
    assert len(rows) == 1 and 15000 <= int(rows[0]["x1"]) < int(rows[0]["x2"]) <= 15000 + face.shape[1]


def test_a_recursive_folder_names_each_lost_stretch_by_its_path(tmp_path, tiny_model):
    """Two cut-short clips of the same name in two subfolders: each warning says which one."""
    from tests.test_video_edge_cases import write_clip

    data = write_clip(tmp_path / "whole.ts", frames=60).read_bytes()
    for camera in ("cam_a", "cam_b"):
        (tmp_path / "in" / camera).mkdir(parents=True)
        (tmp_path / "in" / camera / "clip.ts").write_bytes(data[: len(data) // 2 + 100])
    completed = run_cli(str(tmp_path / "in"), "--recursive", "--model", str(tiny_model))
    assert completed.returncode == 3
    warned = [line for line in completed.stderr.splitlines() if line.startswith("warning:")]
    assert [line.split(": ")[1] for line in warned] == ["video cam_a/clip.ts", "video cam_b/clip.ts"]


def test_a_video_named_like_a_network_address_is_read_and_written_as_a_file(tiny_model, tmp_path, monkeypatch):
    """FFmpeg took "12:30.mp4" for the protocol "12" (not a video file this program can read), and "udp:5000.mp4"
    for a UDP address."""
    monkeypatch.chdir(tmp_path)
    assert main(["--demo", "-o", "demo.mp4", "--max-frames", "3", "--model", str(tiny_model), "--no-display"]) == 0
    for name in ("12:30.mp4", "udp:5000.mp4"):
        Path("demo.mp4").rename(name)
        assert main(["--video", name, "-o", f"out-{name}", "-r", "rows.csv", "--model", str(tiny_model)]) == 0
        assert [int(row["frame"]) for row in read_csv(tmp_path / "rows.csv")] == [0, 1, 2]
        with av.open(str(tmp_path / f"out-{name}")) as written:
            assert len(list(written.decode(video=0))) == 3
        Path(name).rename("demo.mp4")
