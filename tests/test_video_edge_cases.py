"""Video files that are whole but unusual: MPEG-TS audio, a frame size that changes part way, audio that
outlasts the video, a clip cut mid-GOP, audio at a rate AAC does not take. Each clip is made here with PyAV."""

from __future__ import annotations

import io
import logging
import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from realtime.errors import SourceError
from realtime.io.video import H264VideoWriter, VideoFileSource
from realtime.types import VideoInfo

FPS = 30
AUDIO_RATE = 48_000


def picture(index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``index`` of a test clip: a grey of its own level with a white bar that moves along."""
    width, height = size
    image = np.full((height, width, 3), (40 + 7 * index) % 256, np.uint8)
    bar = index % (width - 4)
    image[:, bar:bar + 4] = 255
    return image


def sound(seconds: float, rate: int, beep_at: float | None) -> np.ndarray:
    """Mono samples: near silence, with a loud 0.1 s beep from ``beep_at`` seconds."""
    times = np.arange(round(seconds * rate)) / rate
    wave = 0.01 * np.sin(2 * np.pi * 220 * times)
    if beep_at is not None:
        beep = (times >= beep_at) & (times < beep_at + 0.1)
        wave[beep] = 0.5 * np.sin(2 * np.pi * 880 * times[beep])
    return wave.astype(np.float32)


def write_clip(path: Path, frames: int = 15, size: tuple[int, int] = (64, 48), gop: int | None = None,
               audio: str | None = None, audio_rate: int = AUDIO_RATE, audio_seconds: float | None = None,
               beep_at: float | None = None, cover: bool = False, bframes: int = 0) -> Path:
    """A small H.264 clip at 30 fps (container from the suffix), keyframes every ``gop`` frames when
    given, with a mono ``audio`` track (an encoder name) as long as the video unless ``audio_seconds``,
    a cover picture when ``cover``, and up to ``bframes`` B-frames in a row."""
    options = {"preset": "ultrafast", "bf": str(bframes)}
    if gop is not None:
        options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options=options)
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        track = container.add_stream(audio, rate=audio_rate, layout="mono") if audio else None
        if cover:
            add_cover_picture(container)
        for index in range(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(picture(index, size), format="bgr24")))
        container.mux(video.encode(None))
        if track is not None:
            samples = sound(audio_seconds or frames / FPS, audio_rate, beep_at)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = audio_rate, start
                container.mux(track.encode(frame))
            container.mux(track.encode(None))
    return path


def add_cover_picture(container: av.container.OutputContainer, marked: bool = True,
                      then_video: tuple[int, int] | None = None) -> av.video.stream.VideoStream | None:
    """A cover picture in ``container``: a JPEG in a video track of its own, marked as an attached picture
    (as music files and some videos carry it) when ``marked``; with ``then_video`` (width, height), an H.264
    track after it, which is returned (every track is added before anything is written)."""
    cover = container.add_stream("mjpeg", rate=1)
    cover.width = cover.height = 64
    cover.pix_fmt = "yuvj420p"
    if marked:
        cover.disposition = av.stream.Disposition.attached_pic
    video = None
    if then_video is not None:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = *then_video, "yuv420p"
    container.mux(cover.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="bgr24")))
    container.mux(cover.encode(None))
    return video


def cut_mid_gop(source: Path, target: Path, dropped: int = 5) -> Path:
    """A stream copy of ``source`` without its first ``dropped`` video packets (its first keyframe among
    them), as a recording or a cut that does not start on a keyframe leaves it."""
    with av.open(str(source)) as original, av.open(str(target), "w") as copy:
        streams = {stream.index: copy.add_stream_from_template(stream) for stream in original.streams}
        seen = 0
        for packet in original.demux():
            if packet.dts is None:
                continue
            if packet.stream.type == "video":
                seen += 1
                if seen <= dropped:
                    continue
            packet.stream = streams[packet.stream.index]
            copy.mux(packet)
    return target


def read_all(path: Path) -> tuple[list, VideoFileSource]:
    """Every frame of ``path`` and the (closed) source, whose issues are then complete."""
    with VideoFileSource(path) as source:
        frames = list(source)
    return frames, source


def annotate(source_path: Path, out: Path) -> tuple[list, VideoFileSource]:
    """Write every frame of ``source_path`` to ``out`` at its time, with the source's audio, as a run with
    ``--output`` does; the frames read and the (closed) source."""
    with VideoFileSource(source_path) as source, \
            H264VideoWriter(out, source.info, audio_source=source.audio_path) as writer:
        frames = []
        for frame in source:
            writer.write(frame.image, frame.timestamp)
            frames.append(frame)
    return frames, source


def played(path: Path) -> tuple[list[float], float | None, int | None]:
    """What a player gets from ``path``: its frame times, the seconds of audio and the audio's rate."""
    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return times, None, None
        audio = list(container.decode(audio=0))
        return times, sum(frame.samples for frame in audio) / audio[0].sample_rate, audio[0].sample_rate


def beep_time(path: Path) -> float:
    """When the beep starts in the audio of ``path``, in seconds of its timeline."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            loud = np.flatnonzero(np.abs(frame.to_ndarray()[0]) > 0.2)
            if len(loud):
                return float(frame.time) + loud[0] / frame.sample_rate
    raise AssertionError(f"no beep in {path}")


def test_mpeg_ts_aac_audio_is_copied_into_the_mp4(tmp_path):
    clip = write_clip(tmp_path / "in.ts", frames=30, audio="aac")  # AAC in MPEG-TS is ADTS
    annotate(clip, tmp_path / "out.mp4")
    times, audio_seconds, rate = played(tmp_path / "out.mp4")
    assert len(times) == 30 and rate == AUDIO_RATE
    assert audio_seconds == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("audio_rate", "written_rate"), [(192_000, 48_000), (96_000, 96_000)])
def test_audio_at_a_rate_aac_does_not_take_is_resampled(tmp_path, audio_rate, written_rate):
    clip = write_clip(tmp_path / "in.mov", frames=15, audio="pcm_s16le", audio_rate=audio_rate)
    annotate(clip, tmp_path / "out.mp4")
    times, audio_seconds, rate = played(tmp_path / "out.mp4")
    assert len(times) == 15 and rate == written_rate
    assert audio_seconds == pytest.approx(0.5, abs=0.05)


def vp8_webm_growing(path: Path, frames_per_size: int = 5, sizes=((64, 48), (128, 96))) -> Path:
    """A VP8 WebM whose frames are 64x48 and then 128x96 (``sizes``), as a browser writes when its camera's
    resolution changes: one track, each size from its own encoder."""
    with av.open(str(path), "w", format="webm") as container:
        track = container.add_stream("libvpx", rate=FPS)
        track.width, track.height, track.pix_fmt = *sizes[0], "yuv420p"
        track.codec_context.time_base = Fraction(1, FPS)
        for part, size in enumerate(sizes):
            encoder = av.CodecContext.create("libvpx", "w")
            encoder.width, encoder.height, encoder.pix_fmt = *size, "yuv420p"
            encoder.time_base, encoder.framerate = Fraction(1, FPS), Fraction(FPS)
            packets = []
            for offset in range(frames_per_size):
                frame = av.VideoFrame.from_ndarray(picture(offset, size), format="bgr24")
                frame.pts, frame.time_base = part * frames_per_size + offset, Fraction(1, FPS)
                packets += encoder.encode(frame)
            for packet in packets + encoder.encode(None):
                packet.stream, packet.time_base = track, Fraction(1, FPS)
                container.mux(packet)
    return path


def ts_segments_joined(path: Path, frames_per_size: int = 5) -> Path:
    """Two MPEG-TS segments, 64x48 then 32x24, each with timestamps from the start, joined end to end."""
    first = write_clip(path.with_name("a.ts"), frames=frames_per_size, size=(64, 48))
    second = write_clip(path.with_name("b.ts"), frames=frames_per_size, size=(32, 24))
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


@pytest.mark.parametrize("make", [vp8_webm_growing, ts_segments_joined])
def test_frames_of_a_changed_size_are_scaled_to_the_first_size(tmp_path, caplog, make):
    clip = make(tmp_path / ("in.webm" if make is vp8_webm_growing else "in.ts"))
    with caplog.at_level(logging.WARNING, logger="emotion_tracer"):
        frames, source = annotate(clip, tmp_path / "out.mp4")
    assert len(frames) == 10 and {frame.image.shape for frame in frames} == {(48, 64, 3)}
    assert np.all(np.diff([frame.timestamp for frame in frames]) > 0)
    assert (source.issues, source.frames_lost) == ([], 0)  # nothing was lost
    [warning] = [record.getMessage() for record in caplog.records if "frame size changes" in record.getMessage()]
    assert "64x48 to" in warning
    assert len(played(tmp_path / "out.mp4")[0]) == 10


def test_frames_turned_from_landscape_to_portrait_are_fitted_into_the_first_size_not_stretched(tmp_path, caplog):
    """A phone turned while a browser records: the portrait frames were stretched 3 times sideways, their faces lost."""
    clip = vp8_webm_growing(tmp_path / "turned.webm", sizes=((64, 48), (48, 64)))
    with caplog.at_level(logging.WARNING, logger="emotion_tracer"):
        frames, _ = annotate(clip, tmp_path / "out.mp4")
    assert len(frames) == 10 and {frame.image.shape for frame in frames} == {(48, 64, 3)}
    portrait = frames[7].image  # 48x64 scaled to 36x48, centred between black bars 14 and 14 px wide
    assert (portrait[:, :13] == 0).all() and (portrait[:, 51:] == 0).all()
    expected = cv2.resize(picture(2, (48, 64)), (36, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(portrait[:, 14:50].astype(int) - expected).mean() < 12  # the picture whole, its shape kept
    [warning] = [record.getMessage() for record in caplog.records if "frame size changes" in record.getMessage()]
    assert warning.endswith("64x48 to 48x64 at 0.17 s; frames are scaled to fit the first size (black bars where "
                            "the shapes differ)")


def test_a_video_still_being_written_while_it_is_read_is_reported_not_taken_as_whole(tmp_path):
    """A recording in progress (OBS, a camera writing to a shared folder) was analysed to its end then, exit 0."""
    data = write_clip(tmp_path / "whole.mkv", frames=90).read_bytes()
    growing = tmp_path / "growing.mkv"
    growing.write_bytes(data[: len(data) // 2])
    with VideoFileSource(growing, queue_size=2) as source:
        reading = iter(source)
        frames = [next(reading)]  # (the decoder waits a few frames ahead of the reader)
        with open(growing, "ab") as recording:  # the recorder writes on
            recording.write(data[len(data) // 2:])
        frames += list(reading)
    assert len(frames) >= 2
    [issue] = source.issues
    assert issue.startswith("video growing.mkv: the file was written to while it was read (a recording or copy not "
                            f"finished): analysed up to {frames[-1].timestamp:.2f} s")
    assert read_all(tmp_path / "whole.mkv")[1].issues == []  # a whole file read again: nothing to say


def test_a_video_whose_modification_time_is_set_while_it_is_read_is_not_reported_as_being_written(tmp_path):
    """A backup or sync tool sets a whole file's time: it was reported as a recording not finished."""
    clip = write_clip(tmp_path / "whole.mkv", frames=30)
    with VideoFileSource(clip, queue_size=2) as source:
        reading = iter(source)
        frames = [next(reading)]
        os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 5_000_000_000))
        frames += list(reading)
    assert (len(frames), source.issues) == (30, [])


def test_audio_that_outlasts_the_video_is_not_a_cut_short_file(tmp_path):
    clip = write_clip(tmp_path / "in.mkv", frames=15, audio="aac", audio_seconds=1.0)  # Matroska: no video duration
    frames, source = read_all(clip)
    assert len(frames) == 15 and (source.issues, source.frames_lost) == ([], 0)


def test_a_cut_short_file_whose_audio_outlasts_the_video_is_still_reported(tmp_path):
    data = write_clip(tmp_path / "whole.mkv", frames=60, audio="aac", audio_seconds=2.5).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    frames, source = read_all(cut)
    [issue] = source.issues
    assert "cut short" in issue and "says 2.5" in issue
    assert 5 < len(frames) < 50 and source.frames_lost >= 60 - len(frames)


def test_a_transport_stream_cut_short_is_reported_and_a_whole_one_is_not(tmp_path):
    """MPEG-TS has no duration to compare with, but its 188-byte packets show a file cut in the middle of one
    (a download or recording that did not finish); before, such a file passed as whole."""
    data = write_clip(tmp_path / "whole.ts", frames=60, audio="aac").read_bytes()
    assert len(data) % 188 == 0
    frames, source = read_all(tmp_path / "whole.ts")
    assert len(frames) == 60 and source.issues == []
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 + 100])
    frames, source = read_all(cut)
    [issue] = source.issues
    assert "cut short" in issue and "ends inside a transport-stream packet" in issue and 5 < len(frames) < 55


@pytest.mark.parametrize("suffix", [".mkv", ".ts"])
def test_a_clip_cut_mid_gop_reports_only_its_leading_gap_at_its_real_times(tmp_path, suffix):
    whole = write_clip(tmp_path / f"whole{suffix}", frames=30, gop=15)
    clip = cut_mid_gop(whole, tmp_path / f"cut{suffix}", dropped=5)  # frames 5 to 14 cannot be decoded
    frames, source = read_all(clip)
    assert len(frames) == 15 and source.frames_lost == 10
    assert frames[0].timestamp == pytest.approx(10 / FPS, abs=0.002)  # on the clock of the track's start
    assert [frame.timestamp for frame in frames] == pytest.approx([(10 + i) / FPS for i in range(15)], abs=0.002)
    assert [frame.index for frame in frames] == list(range(10, 25))  # places in the video: they were 0 to 14
    assert source.issues == [f"video {clip.name}: damaged data from 0.00 s to 0.33 s skipped (10 frames lost)"]


def test_a_clip_cut_mid_gop_keeps_its_audio_in_step_with_the_frames(tmp_path):
    whole = write_clip(tmp_path / "whole.mkv", frames=30, gop=15, audio="aac", beep_at=15 / FPS)
    clip = cut_mid_gop(whole, tmp_path / "cut.mkv", dropped=5)  # starts at frame 5; frame 15 decodes first
    out = tmp_path / "out.mp4"
    frames, _ = annotate(clip, out)
    assert beep_time(clip) == pytest.approx(15 / FPS, abs=0.01)
    # the beep comes with the first frame that decodes, on the clock the frames (and results) are given
    assert beep_time(out) == pytest.approx(frames[0].timestamp, abs=0.01)
    times = played(out)[0]  # the first frame is shown from 0, as a held frame; the others at their times
    assert times[1:] == pytest.approx([frame.timestamp for frame in frames[1:]], abs=0.01)


def test_a_video_with_a_cover_picture_is_read_from_its_video_track(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", frames=15, audio="aac", cover=True)
    frames, source = annotate(clip, tmp_path / "out.mp4")
    assert len(frames) == 15 and source.issues == [] and source.info.width == 64
    times, audio_seconds, _ = played(tmp_path / "out.mp4")
    assert len(times) == 15 and audio_seconds == pytest.approx(15 / FPS, abs=0.05)


def test_a_still_picture_track_before_the_video_track_is_passed_over(tmp_path):
    clip = tmp_path / "in.mkv"
    with av.open(str(clip), "w") as container:
        # Matroska keeps no mark: a track of one frame, first
        video = add_cover_picture(container, marked=False, then_video=(96, 48))
        for index in range(15):
            container.mux(video.encode(av.VideoFrame.from_ndarray(picture(index, (96, 48)), format="bgr24")))
        container.mux(video.encode(None))
    frames, source = read_all(clip)  # it was the still, and "cut short or damaged": 14 frames lost
    assert len(frames) == 15 and source.issues == [] and source.info.width == 96


def test_a_music_file_with_a_cover_picture_is_not_taken_for_a_video(tmp_path):
    song = tmp_path / "song.mp4"
    with av.open(str(song), "w") as container:
        track = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        add_cover_picture(container)
        frame = av.AudioFrame.from_ndarray(sound(0.5, AUDIO_RATE, None)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, 0
        container.mux(track.encode(frame))
        container.mux(track.encode(None))
    with pytest.raises(SourceError, match=r"song.mp4: has no video track \(only a cover picture\)$"):
        VideoFileSource(song)


def test_segments_joined_end_to_end_keep_their_audio_in_step_with_the_frames(tmp_path):
    first = write_clip(tmp_path / "a.ts", frames=15, audio="aac")
    second = write_clip(tmp_path / "b.ts", frames=15, audio="aac", beep_at=0.2)
    joined = tmp_path / "joined.ts"  # timestamps start again in the second: the audio copy broke the output
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    frames, source = annotate(joined, tmp_path / "out.mp4")
    assert len(frames) == 30 and source.issues == []
    times, audio_seconds, _ = played(tmp_path / "out.mp4")
    assert len(times) == 30 and audio_seconds == pytest.approx(30 / FPS, abs=0.1)
    assert beep_time(tmp_path / "out.mp4") == pytest.approx(frames[15].timestamp + 0.2, abs=0.05)


def test_an_avi_file_with_b_frames_is_read_whole_at_its_frame_times(tmp_path):
    clip = write_clip(tmp_path / "in.avi", frames=30, gop=15, bframes=3)  # AVI: timestamps in decode order
    frames, source = read_all(clip)  # it was read as damaged (35 frames "lost"), its times going back and forth
    assert len(frames) == 30 and source.issues == [] and source.frames_lost == 0
    steps = np.diff([frame.timestamp for frame in frames])
    assert steps == pytest.approx(np.full(29, 1 / FPS), abs=0.002)
    levels = [int(frame.image[0, -1, 0]) for frame in frames]  # each frame's own grey (off the bar): in the order shown
    assert np.all(np.diff(levels) > 0)


def test_a_video_whose_first_frame_is_late_shows_it_from_the_start_and_the_others_at_their_times(tmp_path):
    times = [0.5 + index / FPS for index in range(20)]  # a clip whose first frames were lost
    with H264VideoWriter(tmp_path / "out.mp4", VideoInfo(64, 48, FPS, None, "in")) as writer:
        for index, time in enumerate(times):
            writer.write(picture(index, (64, 48)), time)
    played_times = played(tmp_path / "out.mp4")[0]  # without audio, every frame was shown 0.5 s early
    assert played_times == pytest.approx([0.0, *times[1:]], abs=0.002)


def marked_clip(path: Path, matrix: list[int] | None = None, pixel_shape: Fraction | None = None) -> Path:
    """10 frames of 64x48, dark with a bright patch in the top left corner, with a display ``matrix`` (FFmpeg's
    layout) and a sample aspect ratio ``pixel_shape`` when given."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        if matrix is not None:
            video.set_display_matrix(matrix)
        if pixel_shape is not None:
            video.codec_context.sample_aspect_ratio = pixel_shape
        image = np.full((48, 64, 3), 60, np.uint8)
        image[:16, :16] = 250
        for _ in range(10):
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(video.encode(None))
    return path


@pytest.mark.parametrize(("matrix", "corner", "shape"), [
    ([-65536, 0, 0, 0, 65536, 0, 64 * 65536, 0, 1 << 30], "top right", (48, 64)),  # a mirror: it was turned over
    ([-65536, 0, 0, 0, -65536, 0, 64 * 65536, 48 * 65536, 1 << 30], "bottom right", (48, 64)),  # a half turn
    ([65536, 0, 0, 0, -65536, 0, 0, 48 * 65536, 1 << 30], "bottom left", (48, 64)),  # a mirror top to bottom
    ([0, 65536, 0, -65536, 0, 0, 48 * 65536, 0, 1 << 30], "top right", (64, 48)),  # a quarter turn clockwise
    ([0, -65536, 0, 65536, 0, 0, 0, 64 * 65536, 1 << 30], "bottom left", (64, 48)),  # ... anticlockwise
    ([0, 65536, 0, 65536, 0, 0, 0, 0, 1 << 30], "top left", (64, 48)),  # a mirror across the diagonal
])
def test_frames_are_turned_and_mirrored_as_players_show_them(tmp_path, matrix, corner, shape):
    frames, _ = read_all(marked_clip(tmp_path / "in.mp4", matrix))
    image = frames[0].image[..., 0]
    rows, columns = np.nonzero(image > 200)  # the bright patch
    assert image.shape == shape
    assert corner == f"{'top' if rows.mean() < shape[0] / 2 else 'bottom'} " \
                     f"{'left' if columns.mean() < shape[1] / 2 else 'right'}"


def test_a_video_whose_pixels_are_not_square_is_read_as_players_show_it(tmp_path):
    frames, source = read_all(marked_clip(tmp_path / "in.mp4", pixel_shape=Fraction(2, 1)))
    assert frames[0].image.shape == (48, 128, 3) and (source.info.width, source.info.height) == (128, 48)
    frames, _ = read_all(marked_clip(tmp_path / "tall.mp4", pixel_shape=Fraction(1, 2)))
    assert frames[0].image.shape == (96, 64, 3)  # stretched, never shrunk
    for nonsense in (Fraction(5, 1), Fraction(1, 5)):  # no video's: a value that is wrong (a 4000:1 made frames
        frames, _ = read_all(marked_clip(tmp_path / "odd.mp4", pixel_shape=nonsense))  # of 2,880,000 pixels wide)
        assert frames[0].image.shape == (48, 64, 3)


def test_an_avi_file_with_damaged_frames_reports_them_where_they_are(tmp_path):
    clip = tmp_path / "in.avi"
    garbage = np.random.default_rng(0)
    with av.open(str(clip), "w") as container:  # MJPEG: every frame on its own; frames 10 and 11 garbled
        video = container.add_stream("mjpeg", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuvj420p"
        for index in range(30):
            for packet in video.encode(av.VideoFrame.from_ndarray(picture(index, (64, 48)), format="bgr24")):
                if index in (10, 11):
                    damaged = av.Packet(b"\xff\xd8" + garbage.integers(0, 256, packet.size, np.uint8).tobytes())
                    damaged.pts, damaged.dts, damaged.time_base, damaged.stream = \
                        packet.pts, packet.dts, packet.time_base, video
                    packet = damaged
                container.mux(packet)
    frames, source = read_all(clip)  # they were timed as the frames after them, and reported 16 frames later
    assert len(frames) == 28 and source.frames_lost == 2
    assert source.issues == ["video in.avi: damaged data from 0.33 s to 0.40 s skipped (2 frames lost)"]
    assert [frame.timestamp for frame in frames] == pytest.approx(
        [index / FPS for index in range(30) if index not in (10, 11)], abs=0.002)
    assert [frame.index for frame in frames] == [index for index in range(30) if index not in (10, 11)]


def test_an_avi_file_with_b_frames_damaged_at_its_end_counts_its_lost_frames_once(tmp_path):
    clip = tmp_path / "in.avi"
    garbage = np.random.default_rng(0)
    with av.open(str(clip), "w") as container:  # the last three packets garbled
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "bf": "2", "g": "12"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        packets = [packet for index in range(30)
                   for packet in video.encode(av.VideoFrame.from_ndarray(picture(index, (64, 48)), format="bgr24"))]
        packets += video.encode(None)
        for number, packet in enumerate(packets):
            if number >= len(packets) - 3:
                damaged = av.Packet(garbage.integers(0, 256, max(packet.size, 64), np.uint8).tobytes())
                damaged.pts, damaged.dts, damaged.time_base, damaged.stream = \
                    packet.pts, packet.dts, packet.time_base, video
                packet = damaged
            container.mux(packet)
    frames, source = read_all(clip)  # lost frames were counted twice, and the last frames numbered past them
    assert len(frames) == 27 and source.frames_lost == 3 and len(source.issues) == 1
    assert [frame.index for frame in frames] == list(range(27))
    assert [frame.timestamp for frame in frames] == pytest.approx([(index + 1) / FPS for index in range(27)],
                                                                  abs=0.002)


def test_motion_jpeg_frames_that_carry_exif_data_are_read(tmp_path):
    """A camera's Motion-JPEG AVI whose frames hold EXIF data, which FFmpeg 8 hands out as side data of a kind PyAV
    cannot name: it stopped the run with "ValueError: 31 is not a valid Type"."""
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    jpeg = io.BytesIO()
    Image.fromarray(picture(3, (64, 48))).save(jpeg, "JPEG", exif=exif)
    path = tmp_path / "camera.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for index in range(5):
            packet = av.Packet(jpeg.getvalue())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, 10)
            container.mux(packet)
    with VideoFileSource(path) as source:
        frames = list(source)
        assert [frame.image.shape for frame in frames] == [(48, 64, 3)] * 5 and source.issues == []


def colour_patches(width: int, height: int) -> np.ndarray:
    """A BGR picture of six upright stripes: skin, sky, foliage, saturated red and green, light gray."""
    colours = [(60, 120, 200), (200, 150, 90), (80, 160, 90), (0, 0, 230), (0, 220, 0), (200, 200, 200)]
    image = np.zeros((height, width, 3), np.uint8)
    for k, colour in enumerate(colours):
        image[:, k * width // 6:(k + 1) * width // 6] = colour
    return image


def write_tagged_clip(path: Path, image: np.ndarray, codec: str, pixel_format: str, tags: dict[str, int],
                      conversion: dict) -> Path:
    """Two frames of ``image`` converted to ``pixel_format`` by ``conversion`` (reformat's arguments), the stream
    tagged with ``tags`` (codec context colour attributes: none, untagged)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], pixel_format
        for name, value in tags.items():
            setattr(stream.codec_context, name, value)
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
                format=pixel_format, dst_color_range="MPEG", **conversion)
            frame.pts, frame.time_base = index, Fraction(1, 30)
            if not tags:
                frame.colorspace = 2  # (unspecified)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def stripe_colours(path: Path, stripes: int = 6) -> np.ndarray:
    """The mean colour of the middle of each stripe of a ``colour_patches`` video's first frame, as read."""
    with VideoFileSource(path) as source:
        image = next(iter(source)).image.astype(float)
    width = image.shape[1] // 6
    return np.array([image[:, k * width + width // 4:(k + 1) * width - width // 4].mean(axis=(0, 1))
                     for k in range(stripes)])


def written_colours(image: np.ndarray, stripes: int = 6) -> np.ndarray:
    width = image.shape[1] // 6
    return np.array([image[0, k * width + width // 2] for k in range(stripes)], dtype=float)


def test_an_hd_video_without_colour_tags_is_read_as_players_show_it(tmp_path):
    """Untagged HD video is BT.709 to players (phones, cameras and encoders write it so): it was read as BT.601,
    its reds and greens off by up to 20 levels for the detector, the classifier and the annotated copy."""
    image = colour_patches(1280, 720)
    clip = write_tagged_clip(tmp_path / "hd.mp4", image, "libx264", "yuv420p", {}, {"dst_colorspace": "ITU709"})
    assert np.abs(stripe_colours(clip) - written_colours(image)).max() <= 5
    small = colour_patches(640, 360)  # below HD, untagged video is BT.601
    clip = write_tagged_clip(tmp_path / "sd.mp4", small, "libx264", "yuv420p", {}, {"dst_colorspace": "ITU601"})
    assert np.abs(stripe_colours(clip) - written_colours(small)).max() <= 5


@pytest.mark.parametrize("width, height", [(96, 48), (97, 49), (97, 48)])
def test_an_hdr_video_is_mapped_to_standard_range_as_a_standard_display_shows_it(tmp_path, width, height):
    """A phone's HDR video (HLG, BT.2020 colours, 10 bits) was read with its matrix only: washed out, dull (and,
    mapped straight from YUV, frames of some odd widths came out in other colours)."""
    image = colour_patches(width, height)  # skin, sky, foliage: in the gamut both ways
    hdr = {"colorspace": 9, "color_trc": 18, "color_primaries": 9, "color_range": 1}  # (BT.2020, HLG)
    clip = write_tagged_clip(tmp_path / "hlg.mkv", image, "ffv1", "yuv420p10le", hdr,
                             {"dst_colorspace": "BT2020", "dst_color_trc": 18, "dst_color_primaries": 9})
    assert np.abs(stripe_colours(clip, 3) - written_colours(image, 3)).max() <= 10  # the matrix only: 44


def test_the_annotated_video_is_tagged_bt709_and_shows_the_colours_written(tmp_path):
    """The output was untagged and converted with BT.601: players take untagged HD video for BT.709, and showed an
    annotated phone video's reds 23 levels off."""
    image = colour_patches(1280, 720)
    with H264VideoWriter(tmp_path / "out.mp4", VideoInfo(1280, 720, 30.0, None, "x")) as writer:
        for _ in range(3):
            writer.write(image)
    with av.open(str(tmp_path / "out.mp4")) as container:
        codec = container.streams.video[0].codec_context
        assert (codec.colorspace, codec.color_primaries, codec.color_trc, codec.color_range) == (1, 1, 1, 1)
    assert np.abs(stripe_colours(tmp_path / "out.mp4") - written_colours(image)).max() <= 5


def test_of_several_audio_tracks_the_default_one_is_kept(tmp_path):
    """A film's main track marked default after a commentary: the first track was kept, whichever it was."""
    clip = tmp_path / "two_tracks.mkv"
    with av.open(str(clip), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        tracks = [container.add_stream("aac", rate=AUDIO_RATE, layout="mono") for _ in range(2)]
        tracks[0].disposition, tracks[1].disposition = 0, av.stream.Disposition.default
        for index in range(15):
            container.mux(video.encode(av.VideoFrame.from_ndarray(picture(index, (64, 48)), format="bgr24")))
        container.mux(video.encode(None))
        for track, beep_at in zip(tracks, (None, 0.2)):  # the commentary near silence, the main track with a beep
            samples = sound(0.5, AUDIO_RATE, beep_at)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, start
                container.mux(track.encode(frame))
            container.mux(track.encode(None))
    annotate(clip, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        loudest = max(np.abs(frame.to_ndarray()).max() for frame in container.decode(audio=0))
    assert loudest > 0.3  # the beep: the default track


def gif_of_dots(width: int, height: int, frames: int) -> bytes:
    """A GIF whose screen is ``width`` x ``height`` and whose frames are each one pixel: a few bytes."""
    data = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff")
    for index in range(frames):
        data += b"\x21\xf9\x04\x00" + struct.pack("<H", 10) + b"\x00\x00"  # shown 0.1 s
        data += b"\x2c" + struct.pack("<HHHHB", index, index, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return bytes(data + b"\x3b")


def test_a_video_of_frames_past_8k_is_refused_in_one_line_before_it_is_decoded(tmp_path):
    """A 1.2 KB GIF declaring a 12000x12000 screen took the run past 6 GB of memory (frames queued to decode,
    analyse and encode)."""
    bomb = tmp_path / "dots.gif"
    bomb.write_bytes(gif_of_dots(12000, 12000, 50))
    with pytest.raises(SourceError) as refused:
        VideoFileSource(bomb)
    assert str(refused.value) == (f"video {bomb}: frames of 12000x12000 (144 megapixels); videos up to 35 megapixels "
                                  "a frame (8K) are analysed: scale it down first")
    small = tmp_path / "small.gif"
    small.write_bytes(gif_of_dots(64, 48, 5))
    assert len(read_all(small)[0]) == 5


def test_an_audio_stream_without_packets_leaves_the_video_without_audio(tmp_path):
    """An IP camera's recording with an empty audio stream (no rate, no channels): the run failed with an
    AttributeError (review of the default audio track), the output before that."""
    clip = tmp_path / "camera.ts"
    with av.open(str(clip), "w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")  # declared, never written to
        for index in range(15):
            container.mux(video.encode(av.VideoFrame.from_ndarray(picture(index, (64, 48)), format="bgr24")))
        container.mux(video.encode(None))
    frames, _ = annotate(clip, tmp_path / "out.mp4")
    assert played(tmp_path / "out.mp4")[1:] == (None, None) and len(played(tmp_path / "out.mp4")[0]) == len(frames)
