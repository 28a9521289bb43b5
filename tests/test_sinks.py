"""Output sinks: H.264 writer (size, rate, audio, atomicity), images, CSV/JSONL results, window."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from realtime.errors import OutputError
from realtime.io.files import check_output_path, partial_path, write_atomically
from realtime.io.images import read_image, write_image
from realtime.io.results_file import ResultsWriter
from realtime.io.video import H264VideoWriter, VideoFileSource
from realtime.io.window import DisplayWindow, display_available
from realtime.rows import RESULT_COLUMNS
from realtime.types import FaceResult, FrameResult, VideoInfo
from tests.test_sources import make_clip

CLASSES = ["angry", "happy", "neutral"]
COLORS = [(200, 30, 60), (20, 180, 90), (90, 60, 220)]  # BGR


def solid(width: int, height: int, index: int) -> np.ndarray:
    return np.full((height, width, 3), COLORS[index % len(COLORS)], np.uint8)


def probe(path: Path) -> dict:
    """Read back what a player sees: streams, frame count, size, rate and mean colors."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = [frame for frame in container.decode(video)]
        return {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "rate": video.average_rate,
            "frames": len(frames),
            "times": [float(frame.time) for frame in frames],
            "colors": [frame.to_ndarray(format="bgr24").mean(axis=(0, 1)) for frame in frames],
            "audio": audio.codec_context.codec.canonical_name if audio else None,
            "audio_seconds": float(audio.duration * audio.time_base) if audio and audio.duration else None,
        }


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- check_output_path ---------------------------------------------------------------------------


def test_check_output_path_accepts_a_writable_target(tmp_path):
    assert check_output_path(tmp_path / "out.MP4", [".mp4"]) == tmp_path / "out.MP4"


def test_check_output_path_errors(tmp_path):
    (tmp_path / "taken.mp4").mkdir()
    cases = [
        (tmp_path / "out.avi", "unsupported output type"),
        (tmp_path / "out", "unsupported output type"),
        (tmp_path / "missing" / "out.mp4", "does not exist"),
        (tmp_path / "taken.mp4", "is a folder"),
        # standard output and devices: it said "unsupported output type '(none)'"
        (Path("-"), r"^-: outputs are written to files \(\.mp4\), not to standard output or a device; give a file name$"),
        (Path("/dev/null"), "not to standard output or a device"),
    ]
    for path, reason in cases:
        with pytest.raises(OutputError, match=reason) as error:
            check_output_path(path, [".mp4"])
        assert "\n" not in str(error.value)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root can write anywhere")
def test_check_output_path_refuses_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputError, match="not writable"):
        check_output_path(locked / "out.csv", [".csv"])


# --- H.264 writer --------------------------------------------------------------------------------


def write_frames(path: Path, info: VideoInfo, count: int, **kwargs) -> None:
    with H264VideoWriter(path, info, **kwargs) as writer:
        for index in range(count):
            writer.write(solid(info.width, info.height, index))


def test_writer_keeps_frames_size_rate_and_colors(tmp_path):
    path = tmp_path / "out.mp4"
    write_frames(path, VideoInfo(96, 64, 25.0, None, "test"), 9)
    result = probe(path)
    assert (result["codec"], result["pix_fmt"]) == ("h264", "yuv420p")
    assert result["size"] == (96, 64)
    assert result["frames"] == 9
    assert result["rate"] == 25
    assert result["audio"] is None
    for index, color in enumerate(result["colors"]):
        assert np.abs(color - COLORS[index % 3]).max() < 6
    assert leftovers(tmp_path) == ["out.mp4"]



def test_an_output_named_by_a_link_keeps_its_links(tmp_path):
    """Through a symbolic link the video goes into the link's target and the link stays; a name with another hard
    link becomes a new file and the other name keeps its old file (both were left with a half-made copy: the
    link replaced by the final video, the target or the other name holding the fragmented one)."""
    info = VideoInfo(96, 64, 25.0, None, "test")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "v.mp4").write_bytes(b"old")
    (tmp_path / "v.mp4").symlink_to(Path("real") / "v.mp4")
    write_frames(tmp_path / "v.mp4", info, 9)
    assert (tmp_path / "v.mp4").is_symlink() and probe(tmp_path / "real" / "v.mp4")["frames"] == 9
    target = (tmp_path / "real" / "v.mp4").read_bytes()
    assert b"moof" not in target  # the final video, not the fragmented one
    (tmp_path / "h1.mp4").write_bytes(b"old")
    os.link(tmp_path / "h1.mp4", tmp_path / "h2.mp4")
    write_frames(tmp_path / "h2.mp4", info, 9)
    assert probe(tmp_path / "h2.mp4")["frames"] == 9 and (tmp_path / "h1.mp4").read_bytes() == b"old"
    write_atomically(tmp_path / "v.mp4", b"photo")  # photos (and every output renamed into place) alike
    assert (tmp_path / "v.mp4").is_symlink() and (tmp_path / "real" / "v.mp4").read_bytes() == b"photo"
    (tmp_path / "device.mp4").symlink_to("/dev/null")  # not a file: the link itself is replaced, not the device
    write_atomically(tmp_path / "device.mp4", b"photo")
    assert not (tmp_path / "device.mp4").is_symlink() and Path("/dev/null").is_char_device()
    (tmp_path / "r1.csv").write_bytes(b"old")
    os.link(tmp_path / "r1.csv", tmp_path / "r2.csv")
    with ResultsWriter(tmp_path / "r2.csv", CLASSES):  # the results too (written in place, the other name got them)
        pass
    assert (tmp_path / "r2.csv").read_bytes().startswith(b"source,") and (tmp_path / "r1.csv").read_bytes() == b"old"


def test_a_video_whose_name_is_as_long_as_a_file_system_takes_is_written(tmp_path):
    """A name whose hidden partial copy just fits (a batch run's 223-byte stem) failed at the final rewrite: the
    rewrite's own partial copy of that copy was 15 bytes too long ("File name too long")."""
    path = tmp_path / ("c" * 223 + "-0123abcd.mp4")
    write_frames(path, VideoInfo(64, 48, 25.0, None, "test"), 5)
    assert probe(path)["frames"] == 5 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert len(os.fsencode(partial_path(partial_path(path)).name)) == 255


def test_writer_uses_an_exact_ntsc_rate(tmp_path):
    path = tmp_path / "ntsc.mp4"
    write_frames(path, VideoInfo(32, 32, 30000 / 1001, None, "test"), 5)
    assert probe(path)["rate"] == Fraction(30000, 1001)


def test_writer_pads_odd_sizes_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    write_frames(path, VideoInfo(65, 49, 30.0, None, "test"), 3)
    result = probe(path)
    assert result["size"] == (66, 50) and result["frames"] == 3
    assert np.abs(result["colors"][0] - COLORS[0]).max() < 6  # padding repeats the edge


def test_writer_places_frames_at_given_timestamps(tmp_path):
    path = tmp_path / "timed.mp4"
    info = VideoInfo(32, 32, 30.0, None, "camera")
    with H264VideoWriter(path, info) as writer:
        for index, timestamp in enumerate([0.0, 0.1, 0.5, 0.51, 0.51]):
            writer.write(solid(32, 32, index), timestamp=timestamp)
    # times are kept to 1/90000 s; a time that does not move forward moves by one tick
    assert probe(path)["times"] == pytest.approx([0.0, 0.1, 0.5, 0.51, 0.51 + 1 / 90000], abs=1e-6)


def frames_on_disk(path: Path) -> int:
    """How many frames a player decodes from a file being written (0 before its first fragment)."""
    try:
        return probe(path)["frames"]
    except (av.FFmpegError, OSError):
        return 0


def test_a_slow_live_recording_is_on_disk_within_about_a_second(tmp_path):
    path = tmp_path / "live.mp4"
    with H264VideoWriter(path, VideoInfo(64, 48, 30.0, None, "camera"), live=True) as writer:
        for index in range(30):  # 6 s of a camera that gives 5 frames a second
            writer.write(solid(64, 48, index), timestamp=index * 0.2)
        deadline = time.monotonic() + 60  # the encoder thread catching up, not a speed requirement
        while frames_on_disk(path) < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert frames_on_disk(path) >= 25  # all but the last second, while the file is still open
    assert probe(path)["frames"] == 30


def test_writer_rejects_frames_of_the_wrong_size(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        with H264VideoWriter(tmp_path / "out.mp4", VideoInfo(32, 32, 30.0, None, "test")) as writer:
            writer.write(solid(16, 16, 0))
    assert leftovers(tmp_path) == []


def test_writer_refuses_a_bad_path_before_writing(tmp_path):
    with pytest.raises(OutputError, match="unsupported output type"):
        H264VideoWriter(tmp_path / "out.gif", VideoInfo(32, 32, 30.0, None, "test"))
    assert leftovers(tmp_path) == []


def test_exception_mid_write_keeps_the_frames_written(tmp_path):
    info = VideoInfo(32, 32, 30.0, None, "test")
    with pytest.raises(RuntimeError):
        with H264VideoWriter(tmp_path / "out.mp4", info) as writer:
            for index in range(5):
                writer.write(solid(32, 32, index))
            raise RuntimeError("boom")
    assert probe(tmp_path / "out.mp4")["frames"] == 5
    assert leftovers(tmp_path) == ["out.mp4"]


def test_ctrl_c_mid_write_keeps_a_playable_file(tmp_path):
    path = tmp_path / "partial.mp4"
    info = VideoInfo(48, 32, 30.0, 100, "test")
    with pytest.raises(KeyboardInterrupt):
        with H264VideoWriter(path, info) as writer:
            for index in range(100):
                if index == 7:
                    raise KeyboardInterrupt
                writer.write(solid(48, 32, index))
    result = probe(path)
    assert result["frames"] == 7 and result["codec"] == "h264"
    assert leftovers(tmp_path) == ["partial.mp4"]


def test_outputs_deleted_while_being_written_say_so(tmp_path, caplog):
    """Someone cleans the output folder mid-run: the run must not end as if the files were there."""
    video, rows = tmp_path / "out.mp4", tmp_path / "rows.csv"
    writer = H264VideoWriter(video, VideoInfo(32, 32, 30.0, None, "test"), live=True)  # no look-ahead
    for index in range(5):
        writer.write(solid(32, 32, index))
    for _ in range(600):  # the muxer makes the file with its first packet, within a moment
        if video.exists():
            break
        time.sleep(0.05)
    results = ResultsWriter(rows, CLASSES)
    results.write(replace(FRAMES[0], source="clip"))
    results.flush()
    video.unlink()
    rows.unlink()
    with pytest.raises(OutputError, match="out.mp4: deleted while the run was writing it; the video is lost"):
        writer.close()
    with pytest.raises(OutputError, match="rows.csv: deleted while the run was writing it; its rows are lost"):
        results.close()
    # when something else ended the run, the lost output is a warning beside it
    results = ResultsWriter(rows, CLASSES)
    with pytest.raises(RuntimeError, match="boom"):
        with results:
            rows.unlink()
            raise RuntimeError("boom")
    assert any("warning: " in message and "rows.csv: deleted while the run" in message for message in caplog.messages)


def test_ctrl_c_before_any_frame_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with H264VideoWriter(tmp_path / "out.mp4", VideoInfo(32, 32, 30.0, None, "test")):
            raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("suffix", "codec", "expected"), [(".mp4", "aac", "aac"), (".mkv", "pcm_s16le", "aac")])
def test_writer_copies_the_source_audio(tmp_path, suffix, codec, expected):
    clip = make_clip(tmp_path / f"in{suffix}", frames=20, size=(64, 48), fps=20, audio=codec)
    out = tmp_path / "out.mp4"
    with VideoFileSource(clip) as source, H264VideoWriter(out, source.info, audio_source=clip) as writer:
        for frame in source:
            writer.write(frame.image)
    result = probe(out)
    assert result["frames"] == 20 and result["audio"] == expected
    assert result["audio_seconds"] == pytest.approx(1.0, abs=0.1)


def test_writer_trims_audio_to_the_frames_written(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=40, size=(64, 48), fps=20, audio="aac")
    out = tmp_path / "out.mp4"
    with VideoFileSource(clip) as source, H264VideoWriter(out, source.info, audio_source=clip) as writer:
        for frame in source:
            if frame.index == 10:
                break
            writer.write(frame.image)
    result = probe(out)
    assert result["frames"] == 10
    assert result["audio_seconds"] == pytest.approx(0.5, abs=0.1)


def test_writer_without_audio_in_the_source(tmp_path):
    clip = make_clip(tmp_path / "silent.mp4", frames=4)
    out = tmp_path / "out.mp4"
    with VideoFileSource(clip) as source, H264VideoWriter(out, source.info, audio_source=clip) as writer:
        for frame in source:
            writer.write(frame.image)
    assert probe(out)["audio"] is None


def test_writer_copies_real_mp3_audio(media, tmp_path):
    out = tmp_path / "out.mp4"
    source_path = media / "single_face.mp4"
    with VideoFileSource(source_path) as source, H264VideoWriter(out, source.info, audio_source=source_path) as writer:
        for frame in source:
            writer.write(frame.image)
    result = probe(out)
    assert (result["frames"], result["size"], result["rate"], result["audio"]) == (72, (640, 360), 30, "mp3")


# --- images --------------------------------------------------------------------------------------


def test_write_image_round_trips_and_is_atomic(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert write_image(tmp_path / "out.png", image) == tmp_path / "out.png"
    assert np.array_equal(read_image(tmp_path / "out.png"), image)
    write_image(tmp_path / "out.jpeg", image)
    assert read_image(tmp_path / "out.jpeg").shape == (20, 30, 3)
    assert leftovers(tmp_path) == ["out.jpeg", "out.png"]


def test_write_image_errors(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(OutputError, match="unsupported output type"):
        write_image(tmp_path / "out.mp4", image)
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "nowhere" / "out.png", image)
    with pytest.raises(OutputError, match="cannot encode"):
        write_image(tmp_path / "out.png", np.zeros((0, 0, 3), np.uint8))
    assert leftovers(tmp_path) == []


# --- results -------------------------------------------------------------------------------------


def face(face_id: int, box, probabilities) -> FaceResult:
    probabilities = np.asarray(probabilities, np.float32)
    best = int(probabilities.argmax())
    return FaceResult(face_id, box, 0.91, probabilities, CLASSES[best], float(probabilities[best]), CLASSES)


FRAMES = [
    FrameResult(0, 0.0, [face(1, (10, 20, 50, 70), [0.1, 0.7, 0.2]), face(2, (60, 5, 90, 40), [0.6, 0.3, 0.1])]),
    FrameResult(1, 1 / 30, []),
    FrameResult(2, 2 / 30, [face(1, (12, 21, 52, 71), [0.2, 0.2, 0.6])]),
]


def test_results_csv_round_trip(tmp_path):
    path = tmp_path / "results.csv"
    with ResultsWriter(path, CLASSES) as writer:
        for frame in FRAMES:
            writer.write(replace(frame, source="clip.mp4"))
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == [*RESULT_COLUMNS, *CLASSES]
    keys = [(r["frame"], r["face_id"], r["label"]) for r in rows]
    assert keys == [("0", "1", "happy"), ("0", "2", "angry"), ("2", "1", "neutral")]
    assert rows[2]["source"] == "clip.mp4"
    assert float(rows[2]["time"]) == pytest.approx(2 / 30, abs=1e-3)
    assert [int(rows[2][k]) for k in ("x1", "y1", "x2", "y2")] == [12, 21, 52, 71]
    assert float(rows[0]["detection_score"]) == pytest.approx(0.91)
    assert float(rows[0]["confidence"]) == pytest.approx(0.7)
    assert [float(rows[1][c]) for c in CLASSES] == pytest.approx([0.6, 0.3, 0.1])
    assert leftovers(tmp_path) == ["results.csv"]


def test_rows_reach_the_file_with_each_second_of_frames_however_fast_they_come(tmp_path, monkeypatch):
    """Rows were put in the file once a wall-clock second: analysed at 130 frames/s, a kill -9 left 4 s of video
    more than of rows (the video's fragments are a second of frames each). Here no wall-clock time passes."""
    import realtime.io.results_file

    monkeypatch.setattr(realtime.io.results_file.time, "monotonic", lambda: 1000.0)
    path = tmp_path / "results.csv"
    in_the_file = []
    with ResultsWriter(path, CLASSES) as writer:
        for index in range(25):  # 0.1 s of frames apart
            writer.write(FrameResult(index, index / 10, [face(1, (10, 20, 50, 70), [0.1, 0.7, 0.2])]))
            in_the_file.append(len(path.read_text().splitlines()) - 1)
    assert in_the_file == [0] * 10 + [11] * 10 + [21] * 5  # the rows of 0-1.0 s, then of 1.0-2.0 s
    # a folder run's next file starts again at 0 s: its rows were held until a wall-clock second had passed
    in_the_file.clear()
    with ResultsWriter(path, CLASSES) as writer:
        for second in (5, 0):
            for index in range(11):
                writer.write(FrameResult(index, second + index / 10, [face(1, (10, 20, 50, 70), [0.1, 0.7, 0.2])]))
                in_the_file.append(len(path.read_text().splitlines()) - 1)
    assert in_the_file == [0] * 10 + [11] + [11] * 10 + [22]


def test_results_jsonl_round_trip(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path, CLASSES) as writer:
        for frame in FRAMES:
            writer.write(replace(frame, source="cam"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3
    assert set(rows[0]) == {*RESULT_COLUMNS, "probabilities"}
    assert rows[1]["face_id"] == 2 and rows[1]["label"] == "angry"
    assert rows[2]["probabilities"] == pytest.approx({"angry": 0.2, "happy": 0.2, "neutral": 0.6})
    assert (rows[2]["x1"], rows[2]["y2"], rows[2]["source"]) == (12, 71, "cam")


def test_results_keep_the_rows_written_whatever_ends_the_run(tmp_path):
    for name, stop in [("interrupted.csv", KeyboardInterrupt()), ("failed.jsonl", RuntimeError("boom"))]:
        with pytest.raises(type(stop)):
            with ResultsWriter(tmp_path / name, CLASSES) as writer:
                writer.write(replace(FRAMES[0], source="clip"))
                raise stop
    with open(tmp_path / "interrupted.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == 2
    assert len((tmp_path / "failed.jsonl").read_text().splitlines()) == 2
    assert leftovers(tmp_path) == ["failed.jsonl", "interrupted.csv"]


FILE_SIZE_LIMIT_SCRIPT = """
import resource, signal, sys
from realtime.errors import OutputError
from realtime.io.results_file import ResultsWriter
from realtime.types import FaceResult, FrameResult
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG), as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
classes = ["angry", "happy", "neutral"]
face = FaceResult(1, (10, 20, 50, 70), 0.91, [0.1, 0.7, 0.2], "happy", 0.7, tuple(classes))
try:
    with ResultsWriter(sys.argv[1], classes) as writer:
        for index in range(1000):
            writer.write(FrameResult(index, index / 30, [face], source="clip"))
            writer.flush()  # as a second passing would
except OutputError as error:
    print(error)
"""


@pytest.mark.parametrize("name", ["full.csv", "full.jsonl"])
def test_a_results_file_that_can_take_no_more_keeps_whole_rows_and_says_how_many(tmp_path, name):
    import subprocess

    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, str(tmp_path / name)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    message = done.stdout.strip()
    assert done.returncode == 0 and "cannot write to it (File too large); the " in message, done.stderr
    data = (tmp_path / name).read_bytes()
    assert 0 < len(data) <= 3000 and data.endswith(b"\n")  # cut back to its last whole row
    rows = (list(csv.DictReader(data.decode().splitlines())) if name.endswith(".csv")
            else [json.loads(line) for line in data.decode().splitlines()])
    assert [int(row["frame"]) for row in rows] == list(range(len(rows)))
    assert f"the {len(rows):,} rows before that are kept" in message


def test_results_writer_checks_its_input(tmp_path):
    with pytest.raises(OutputError, match="unsupported output type"):
        ResultsWriter(tmp_path / "results.txt", CLASSES)
    with pytest.raises(ValueError, match="clash"):
        ResultsWriter(tmp_path / "results.csv", ["label", "happy"])
    assert leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="3 classes"):
        with ResultsWriter(tmp_path / "results.csv", CLASSES) as writer:
            writer.write(replace(FrameResult(0, 0.0, [face(1, (0, 0, 1, 1), [0.5, 0.5])]), source="clip"))
    assert (tmp_path / "results.csv").read_text().splitlines() == [",".join([*RESULT_COLUMNS, *CLASSES])]


# --- window --------------------------------------------------------------------------------------


def test_no_display_on_linux_without_display(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    assert display_available() is False
    with pytest.raises(OutputError, match="no display"):
        with DisplayWindow("test"):
            pass
    monkeypatch.setenv("DISPLAY", ":987")  # a local display whose X server socket does not exist
    assert display_available() is False
    monkeypatch.setenv("DISPLAY", "remotehost:10.0")  # forwarded displays cannot be checked cheaply
    assert display_available() is True


def test_encoder_failure_is_reported_and_keeps_only_what_reached_the_disk(tmp_path):
    class FullDisk:
        """Wraps the writer's container; muxing fails after a few packets, as on a full disk."""

        def __init__(self, container):
            self.container, self.packets = container, 0

        def __getattr__(self, name):
            return getattr(self.container, name)

        def mux(self, packets):
            self.packets += 1
            if self.packets > 2:
                raise OSError(28, "No space left on device")
            self.container.mux(packets)

    writer = H264VideoWriter(tmp_path / "out.mp4", VideoInfo(32, 32, 30.0, None, "test"))
    writer._container = FullDisk(writer._container)
    with pytest.raises(OutputError, match="No space left"):
        with writer:
            for index in range(300):
                writer.write(solid(32, 32, index))
    assert leftovers(tmp_path) == []  # the muxer failed before its first packet, so no file was begun


def test_a_stop_while_a_file_is_written_atomically_leaves_neither_it_nor_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr("realtime.io.files.os.replace", interrupted)  # Ctrl-C just before the rename
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, b"{}")
    assert list(tmp_path.iterdir()) == []


def test_writing_into_a_folder_that_became_a_file_is_an_output_error(tmp_path):
    """The output folder replaced by a file (another program, a user) before the write: one OutputError line,
    not a NotADirectoryError traceback from cleaning up the partial file."""
    folder = tmp_path / "evaluation"
    folder.write_bytes(b"not a folder")
    with pytest.raises(OutputError, match="cannot write it"):
        write_atomically(folder / "metrics.json", b"{}")
    assert folder.read_bytes() == b"not a folder"
