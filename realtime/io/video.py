"""All PyAV video code: reading video files (decoded in a background thread) and writing H.264 MP4.

Nothing analysed is thrown away. The reader skips damaged stretches (bad packets are dropped and
decoding resumes at the next keyframe) and notes each gap, and a file that ends before its header
says, in ``issues``. The writer writes to its final path as it goes, in a form that stays playable
if the run is killed, and finishes the file whatever ends the run.
"""

from __future__ import annotations

import errno
import heapq
import logging
import math
import os
import shutil
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.bitstream
import av.sidedata.sidedata
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, VideoReformatter

from realtime.errors import OutputError, SourceError, one_line
from realtime.io.background import Handoff
from realtime.io.files import (
    KeptOutput,
    check_input_file,
    check_output_path,
    detach_hard_link,
    ffmpeg_file,
    heif_still,
    partial_path,
    remove_quietly,
    through_links,
)
from realtime.types import AnalyzedFrame, Frame, VideoInfo, usable_fps

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".wmv", ".flv", ".3gp", ".gif"}
)
VIDEO_OUTPUT_SUFFIXES = (".mp4",)
# A file whose last writes failed, on a disk with less free room than this, failed for want of room.
FULL_DISK_BYTES = 1 << 20
MP4_AUDIO_CODECS = frozenset({"aac", "mp3"})  # copied as they are; other audio is re-encoded to AAC
AAC_RATES = frozenset(av.Codec("aac", "w").audio_rates)  # what the AAC encoder takes; other rates become 48 kHz
# Colour tags (FFmpeg's numbers): HDR transfers (PQ, HLG); no matrix named. Untagged video is shown as BT.709 from
# HD sizes on (1280 pixels wide or more, or taller than 576), as BT.601 below, by players (mpv, VLC, browsers).
HDR_TRANSFERS = frozenset({ColorTrc.SMPTE2084, ColorTrc.ARIB_STD_B67})
UNTAGGED = 2
HD_MIN_WIDTH, SD_MAX_HEIGHT = 1280, 576
# The largest frames a video may have: 8K cinema (8192x4320). The run holds some 100 bytes a pixel of a frame (frames
# queued to decode, analyse and encode, and the encoder's look-ahead): 3.5 GB there.
MAX_VIDEO_PIXELS = 8192 * 4320
# A GIF frame's delay of 10 ms or less (0 or 1 hundredth) is shown for 100 ms by browsers (and by FFmpeg for 0):
# GIF makers rely on it, and the clip as made plays ten times as fast
GIF_FASTEST_DELAY_S, GIF_FAST_DELAY_SHOWN_S = 0.01, 0.1
B_PICTURE = 3  # FFmpeg's AV_PICTURE_TYPE_B, a frame's pict_type: no other frame is made from it
TIME_BASE = Fraction(1, 90000)  # output timestamps: fine enough for any source's frame times
# while writing: a fragment at each keyframe and at least every second of video, written out at once
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000",
                  "flush_packets": "1"}
SYNC_SECONDS = 1.0  # written data is fsynced at least this often
# the boxes an MP4/MOV holds at its top level, but for "moov" (the index)
MP4_TOP_LEVEL_BOXES = frozenset({b"ftyp", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pdin", b"meta", b"moof",
                                 b"mfra", b"styp", b"sidx", b"ssix", b"prft", b"emsg"})
_END = object()
_STOP = None
LOG = logging.getLogger("emotion_tracer.video")


def mp4_without_index(path: Path) -> bool:
    """Whether ``path`` is an MP4/MOV (ISO media boxes from its first byte) that has no ``moov`` box, the
    index that says where each frame is: what a recording or download cut short leaves when the index
    was to be written at the end."""
    size, offset = path.stat().st_size, 0
    with path.open("rb") as file:
        while offset + 8 <= size:
            file.seek(offset)
            header = file.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if (offset == 0 and kind != b"ftyp") or kind not in MP4_TOP_LEVEL_BOXES:
                return False  # not ISO media, or damaged: not only cut short
            if length == 1 and len(header) == 16:  # a 64-bit size follows the type
                length = int.from_bytes(header[8:16], "big")
            if length == 0:  # the box runs to the end of the file
                break
            if length < 8:
                return False  # not a box: damaged, or not ISO media after all
            offset += length
    return offset > 0


class VideoFileSource:
    """A video file decoded by PyAV in a background thread (bounded queue, flat memory).

    Frames come out upright (rotation metadata applied) with timestamps from their pts, counted from
    the start of the video track (the clock the written audio follows), so gaps and variable frame
    rates show. Frames whose size differs from the first frame's (a recording that changed
    resolution part way) are scaled to the first size. Damaged stretches are skipped: a packet
    that does not decode is dropped with everything up to the next keyframe. Each skipped stretch
    (also frames before the first keyframe, in a clip cut mid-GOP), and a file whose streams all
    end before the duration its header gives, adds one line to ``issues`` and the frames it lost
    to ``frames_lost`` (both complete once the iteration has ended). Iterate once; ``close()``
    (or the ``with`` block, or leaving the loop) stops the decoder.
    """

    live = False

    def __init__(self, path: Path | str, queue_size: int = 4, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.name  # how ``issues`` name the file
        check_input_file(self.path, "video")
        self._size_at_open = _file_size(self.path)
        self.issues: list[str] = []
        self.frames_lost = 0
        self._size_changed = False
        self._handoff = Handoff(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._container = av.open(ffmpeg_file(self.path))
        except (av.FFmpegError, UnicodeDecodeError) as error:
            if heif_still(self.path) is not None:
                raise SourceError(f"video {self.path}: a HEIC/HEIF/AVIF photo, not a video") from error
            if mp4_without_index(self.path):
                raise SourceError(f"video {self.path}: cut short before its index (an MP4/MOV whose recording or "
                                  "download did not finish): without the index its frames cannot be found") from error
            raise SourceError(f"video {self.path}: not a video file this program can read ({one_line(error)})") from error
        try:
            stream = video_track(self._container)
            if stream is None:
                only_pictures = " (only a cover picture)" if self._container.streams.video else ""
                raise SourceError(f"video {self.path}: has no video track{only_pictures}")
            pixels = stream.codec_context.width * stream.codec_context.height
            if pixels > MAX_VIDEO_PIXELS:  # (a few bytes of GIF can declare a screen of 12000x12000)
                raise SourceError(f"video {self.path}: frames of {stream.codec_context.width}x"
                                  f"{stream.codec_context.height} ({pixels / 1e6:.0f} megapixels); videos up to "
                                  f"{MAX_VIDEO_PIXELS / 1e6:.0f} megapixels a frame (8K) are analysed: scale it down "
                                  "first")
            # slice threads only: frame threads report a damaged packet's error late, on a packet
            # after the next keyframe, and a whole extra keyframe interval would be dropped
            stream.thread_type = "SLICE"
            self.audio_path = self.path if self._container.streams.audio else None
            fps = usable_fps(stream.average_rate or stream.guessed_rate or stream.base_rate)
            if self._container.format.name == "gif" and fps >= 1 / GIF_FASTEST_DELAY_S:  # its frames are shown 0.1 s
                fps = 1 / GIF_FAST_DELAY_SHOWN_S
            self._frames = self._decode(stream, fps)
            self._first = next(self._frames, None)
            if self._first is None:
                raise SourceError(f"video {self.path}: has no frames it can decode")
        except BaseException:
            self._container.close()
            raise
        height, width = self._first.image.shape[:2]
        self.info = VideoInfo(width, height, fps, stream.frames or None, str(self.path))

    def _packets(self) -> Iterator[av.Packet]:
        """The packets of every stream (where the data of every video and audio track ends tells a cut-short file
        from a whole one), up to the end of the file or up to where it can no longer be read."""
        try:
            yield from self._container.demux()
        except av.FFmpegError:  # what was read stays; _note_end reports the rest as lost
            return

    def _decode(self, stream, fps: float) -> Iterator[Frame]:
        """Decode frames in order, upright, at the first frame's size, with seconds since the video
        track's start and their places in it (the frames lost counted); note what is lost.

        Every packet read is expected to give the frame of its pts; frames that never come out
        between two that do are one gap, those after the last frame are lost at the end. Where the
        timestamps start again lower (segments joined end to end), the packets that follow are
        expected after the frames of the packets before. In an AVI file the packets' timestamps are in
        decode order (see ``_DecodeOrderTimes``).
        """
        origin = video_start(stream)  # None: the first frame's time is the start
        previous = -1.0 / fps  # time of the last frame handed out
        first = 0.0  # time of the first frame handed out
        size = None  # (height, width) of the first frame
        data_end = 0.0  # where the data read of any stream ends, in seconds of the file's timeline
        damaged = False  # a packet failed: drop packets up to the next keyframe
        # per segment of rising timestamps, a heap of the pts of packets read whose frames are not out yet
        expected: deque[list[int]] = deque([[]])
        last_dts = last_pts = None  # of the last packet read, and of the last frame out
        last_shown = None  # how long the last frame out is shown, where the file says
        pixel_shape = stream.sample_aspect_ratio  # width over height of a pixel as shown (None: square)
        in_decode_order = _DecodeOrderTimes() if self._container.format.name == "avi" else None
        index = handed_out = 0  # the next frame's place in the video; frames handed out
        withheld = 0  # frames decoded with their damage hidden, not handed out since the last frame that was
        withheld_until = 0.0  # the time of the last of them
        made_from_damage = False  # a reference frame came out damaged: the frames out after it up to a keyframe too
        gif = self._container.format.name == "gif"
        gif_delay_added = 0.0  # seconds a GIF's frames of 10 ms or less are shown longer, as browsers do, up to now
        colours = ShownColours()
        for packet in self._packets():
            if packet.dts is not None and packet.pts is not None and packet.stream.type in ("video", "audio"):
                data_end = max(data_end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if packet.stream.index != stream.index:
                continue
            if in_decode_order is not None:
                in_decode_order.read(packet)
            if packet.dts is not None and last_dts is not None and packet.dts < last_dts:
                expected.append([])
            last_dts = packet.dts if packet.dts is not None else last_dts
            if packet.dts is not None and packet.pts is not None and not packet.is_discard and in_decode_order is None:
                heapq.heappush(expected[-1], packet.pts)  # (a discarded packet: cut by an edit list)
            if damaged and packet.dts is not None and not packet.is_keyframe:
                if in_decode_order is not None:
                    in_decode_order.dropped()
                continue
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError):
                if in_decode_order is not None:
                    in_decode_order.dropped()
                damaged = True
                continue
            damaged = False
            for av_frame in decoded:
                lost = 0
                frame_time = av_frame.time
                if in_decode_order is not None:
                    shown, lost = in_decode_order.came_out(av_frame.dts)
                    frame_time = None if shown is None else float(shown * stream.time_base)
                elif av_frame.pts is not None:
                    frame_time = av_frame.time + gif_delay_added
                    if gif and av_frame.duration and av_frame.duration * stream.time_base <= GIF_FASTEST_DELAY_S:
                        gif_delay_added += GIF_FAST_DELAY_SHOWN_S - float(av_frame.duration * stream.time_base)
                    if len(expected) > 1 and (not expected[0] or (last_pts is not None and av_frame.pts < last_pts)):
                        lost += len(expected.popleft())  # the next segment's first frame: the rest never came
                    while expected[0] and expected[0][0] <= av_frame.pts:
                        lost += heapq.heappop(expected[0]) != av_frame.pts
                    last_pts = av_frame.pts
                if frame_time is None:
                    timestamp = previous + 1.0 / fps
                else:
                    origin = frame_time if origin is None else origin
                    timestamp = frame_time - origin
                    if timestamp <= previous or timestamp < 0:  # broken or missing pts: keep time moving forward
                        timestamp = previous + 1.0 / fps
                # damaged data the decoder hid (concealed: PyAV flags the frame), and the frames out after a damaged
                # reference frame up to a keyframe, made from it: lost, as a failed packet and those after it are
                made_from_damage = made_from_damage and not av_frame.key_frame
                oversized = av_frame.width * av_frame.height > MAX_VIDEO_PIXELS  # (grown part way: lost as damage)
                if av_frame.is_corrupt or made_from_damage or oversized:
                    made_from_damage = made_from_damage or int(av_frame.pict_type) != B_PICTURE
                    withheld, withheld_until = withheld + lost + 1, timestamp
                    continue
                lost, withheld = lost + withheld, 0
                image = _upright(_square_pixels(colours.bgr(av_frame), pixel_shape),
                                 _display_matrix(av_frame))
                if size is None:
                    size, first = image.shape[:2], timestamp
                elif image.shape[:2] != size:
                    image = self._resized(image, size, timestamp)
                if lost:
                    self._note_gap(previous + 1.0 / fps, timestamp, lost)
                    index += lost  # a frame's index is its place in the video, the frames lost counted
                previous = timestamp
                # how long it is shown, where the file says (an AVI's durations are in decode order)
                last_shown = float(av_frame.duration * stream.time_base) \
                    if av_frame.duration and in_decode_order is None else None
                if gif and last_shown is not None and last_shown <= GIF_FASTEST_DELAY_S:
                    last_shown = GIF_FAST_DELAY_SHOWN_S
                yield Frame(index, timestamp, np.ascontiguousarray(image), last_shown)
                index, handed_out = index + 1, handed_out + 1
        if withheld:  # the video ends in frames with damage the decoder hid
            self._note_gap(previous + 1.0 / fps, withheld_until + 1.0 / fps, withheld)
            previous = withheld_until
        unreadable = sum(map(len, expected)) + (in_decode_order.lost_at_end if in_decode_order is not None else 0)
        noted = self._note_end(stream, origin or 0.0, first, previous, handed_out, fps, unreadable, data_end,
                               last_shown)
        if _file_size(self.path) != self._size_at_open:
            self.issues.append(f"video {self.name}: the file was written to while it was read (a recording or copy "
                               f"not finished): analysed up to {previous:.2f} s; whatever was written after that is not in "
                               "the results: run again once it is complete")
        elif not noted and self._container.format.name == "mpegts" and transport_stream_cut_short(self.path):
            self.issues.append(f"video {self.name}: the file ends inside a transport-stream packet: it is cut "
                               f"short after {previous:.2f} s (a transport stream does not say how long it is, so "
                               "how many frames are lost cannot be told)")

    def _resized(self, image: np.ndarray, size: tuple[int, int], timestamp: float) -> np.ndarray:
        """``image`` scaled to fit ``size`` (height, width), its shape kept (black bars where the shapes differ:
        a phone turned from landscape to portrait); the first time, a warning says so."""
        if not self._size_changed:
            self._size_changed = True
            LOG.warning("warning: video %s: the frame size changes from %dx%d to %dx%d at %.2f s; frames are "
                        "scaled to fit the first size (black bars where the shapes differ)", self.name, size[1],
                        size[0], image.shape[1], image.shape[0], timestamp)
        height, width = size
        scale = min(width / image.shape[1], height / image.shape[0])
        fitted = (min(width, max(1, round(image.shape[1] * scale))), min(height, max(1, round(image.shape[0] * scale))))
        image = cv2.resize(image, fitted, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (height - fitted[1]) // 2, (width - fitted[0]) // 2
        return cv2.copyMakeBorder(image, top, height - fitted[1] - top, left, width - fitted[0] - left,
                                  cv2.BORDER_CONSTANT, value=(0, 0, 0))

    def _note_gap(self, start: float, after: float, lost: int) -> None:
        """One issue for ``lost`` frames from ``start`` up to the frame at ``after``."""
        self.frames_lost += lost
        self.issues.append(f"video {self.name}: damaged data from {start:.2f} s to {after:.2f} s skipped "
                           f"({lost} frame{'s' * (lost != 1)} lost)")

    def _note_end(self, stream, origin: float, first: float, last: float, frames: int, fps: float,
                  unreadable: int, data_end: float, last_shown: float | None) -> bool:
        """One issue when frames are missing after the last of ``frames`` (from ``first`` to ``last``,
        seconds after ``origin`` on the file's timeline): ``unreadable`` read but not decoded, or fewer
        than the duration in the file's header needs (a cut-short file). The last frame is shown for the
        usual interval, or longer where the file says so (``last_shown``: a GIF that holds its last
        frame). Without a duration of the video
        track's own, the file's duration covers all its streams, and the file is cut short only where the
        data of every stream ends early (``data_end``, on the file's timeline): a file whose audio
        outlasts its video is whole.

        The missing frames are counted from the header's frame count where it has one (an MP4's index), else at
        the rate of the frames decoded (the header's rate can be wrong). Whether an issue was noted.
        """
        interval = (last - first) / (frames - 1) if frames > 1 and last > first else 1.0 / fps
        end = last + max(interval, last_shown or 0.0)
        if stream.duration is not None:
            header, reached = float(stream.duration * stream.time_base), end
        elif self._container.duration is not None:  # taken as the end time of the file (Matroska's is)
            header, reached = self._container.duration / av.time_base - origin, max(end, data_end - origin)
        else:
            header = reached = end
        missing = round((header - reached) / interval)
        lost = max(unreadable, missing if missing >= 2 else 0)
        if not lost:
            return False
        if stream.frames and stream.frames - frames - self.frames_lost > 0:  # the index counts the frames: exact
            lost = stream.frames - frames - self.frames_lost  # (those lost inside were noted already)
        self.frames_lost += lost
        self.issues.append(f"video {self.name}: frames end at {end:.2f} s but the file says {max(header, end):.2f} s: "
                           f"it is cut short or damaged from there on ({lost} frame{'s' * (lost != 1)} lost)")
        return True

    def _produce(self) -> None:
        """Background thread: move decoded frames into the bounded queue until the end or close()."""
        try:
            for frame in self._frames:
                if not self._handoff.put(frame, self._stop.is_set):
                    return
            self._handoff.put(_END, self._stop.is_set)
        except Exception as error:  # handed to the consumer, which raises it as a SourceError
            self._handoff.put(error, self._stop.is_set)

    def __iter__(self) -> Iterator[Frame]:
        """The frames, decoded ahead in a background thread. A loop left early, or an iterator dropped, closes
        the source (the decoder would otherwise wait for good, holding the file)."""
        if self._first is None:
            raise RuntimeError("a VideoFileSource can be iterated only once")
        first, self._first = self._first, None
        self._thread = threading.Thread(target=self._produce, name=f"decode {self.path.name}", daemon=True)
        self._thread.start()
        try:
            yield first
            while True:
                item = self._handoff.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise SourceError(f"video {self.path}: decoding failed ({one_line(item)})") from item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the decoder thread and release the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._container.close()

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _DecodeOrderTimes:
    """Frame times for a file whose packets' timestamps are in decode order (AVI): with B-frames, frames come out
    of the decoder in another order than their packets, each with its packet's timestamp, so that those times
    go back and forth. A frame is timed instead by the decode timestamp of the packet that let it out (which
    rises as the frames come out, in the order they are shown), less the decoder's delay: the first frame is
    shown at the lowest timestamp read before it. Packets dropped as damaged are the frames lost.
    """

    def __init__(self):
        self._lowest: int | None = None  # the lowest timestamp read before the first frame came out
        self._delay: int | None = None  # the first frame's decode timestamp, less that
        self._dropped = 0  # packets dropped since the last frame came out

    def read(self, packet: av.Packet) -> None:
        """A packet of the video track was read."""
        if self._delay is None and packet.pts is not None and (self._lowest is None or packet.pts < self._lowest):
            self._lowest = packet.pts

    def dropped(self) -> None:
        """The packet read last was dropped (damaged): its frame is lost."""
        self._dropped += 1

    @property
    def lost_at_end(self) -> int:
        """Packets dropped after the last frame that came out with a decode timestamp."""
        return self._dropped

    def came_out(self, dts: int | None) -> tuple[int | None, int]:
        """The time (in the stream's time base) at which a frame that came out with decode timestamp ``dts``
        is shown (None when it has none: the last frames, let out at the end, after which what was dropped
        is lost at the end), and how many frames were lost before it."""
        if dts is None:
            return None, 0
        lost, self._dropped = self._dropped, 0
        if self._delay is None:
            self._delay = dts - (self._lowest if self._lowest is not None else dts)
        return dts - self._delay, lost


def _file_size(path: Path) -> int | None:
    """A file's size: it changes while the file is written (None if it cannot be told). Its modification time is
    not a sign: backup and sync tools set it on whole files."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def has_track(path: Path, kind: str) -> bool:
    """Whether FFmpeg opens the file and finds a track of ``kind`` ("video", "audio") in it (False when it cannot
    open the file at all); an audio track it would not play (no sample rate: a camera's empty audio stream) is none."""
    try:
        with av.open(ffmpeg_file(path)) as container:
            return bool(getattr(container.streams, kind)) and (kind != "audio" or container.streams.best(kind) is not None)
    except (av.FFmpegError, OSError, ValueError, UnicodeError):
        return False


def video_start(stream) -> float | None:
    """When a video stream starts, in seconds of its file's timeline (None when the file does not say):
    time 0 of the frames read from the file and of its audio written with them."""
    return None if stream.start_time is None else float(stream.start_time * stream.time_base)


def video_track(container: av.container.InputContainer):
    """The container's video track: of those that are not a cover picture (attached to music files and some
    videos), the one FFmpeg's players show (``streams.best``: a default track, one of many frames rather than a
    still); None if it has none."""
    videos = [stream for stream in container.streams.video
              if not stream.disposition & av.stream.Disposition.attached_pic]
    best = container.streams.best("video")
    return best if best in videos else next(iter(videos), None)


class ShownColours:
    """Converts decoded frames to BGR as players show them: by the colour matrix their tags name or, untagged,
    BT.709 for HD sizes and BT.601 for smaller ones (players' rule); HDR (PQ or HLG transfer, BT.2020 colours, as
    phones record) mapped to standard range and BT.709 colours, as on a standard display. One per video, reused:
    it keeps FFmpeg's conversions, whose set-up for HDR takes a second or more."""

    def __init__(self):
        self._to_float, self._to_bgr = VideoReformatter(), VideoReformatter()

    def bgr(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame's pixels as BGR, as shown."""
        if frame.color_trc in HDR_TRANSFERS or frame.color_primaries == ColorPrimaries.BT2020:
            # through float RGB: FFmpeg's mapping straight from YUV garbles the colours of frames of some odd widths
            float_rgb = self._to_float.reformat(frame, format="gbrpf32le")
            return self._to_bgr.reformat(float_rgb, format="bgr24", dst_color_trc=ColorTrc.BT709,
                                         dst_color_primaries=ColorPrimaries.BT709).to_ndarray()
        untagged_hd = frame.colorspace == UNTAGGED and not frame.format.is_rgb and \
            (frame.width >= HD_MIN_WIDTH or frame.height > SD_MAX_HEIGHT)
        return self._to_bgr.reformat(frame, format="bgr24",
                                     src_colorspace=Colorspace.ITU709 if untagged_hd else None).to_ndarray()


def _square_pixels(image: np.ndarray, pixel_shape: Fraction | None) -> np.ndarray:
    """``image`` stretched to square pixels, as players show a video whose pixels are not square (``pixel_shape``,
    its sample aspect ratio: width over height): wider (or taller), never smaller."""
    if not pixel_shape or not 0.25 <= pixel_shape <= 4 or abs(pixel_shape - 1) < 0.01:  # square, or nonsense
        return image
    height, width = image.shape[:2]
    size = (round(width * pixel_shape), height) if pixel_shape > 1 else (width, round(height / pixel_shape))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    """The frame's display matrix (how players turn and mirror it), nine integers, if it has one."""
    try:
        side_data = frame.side_data
    except ValueError:  # a kind of side data PyAV does not know (FFmpeg 8's EXIF, from JPEG frames): none to read
        return None
    kinds = av.sidedata.sidedata.Type
    for item in side_data:  # PyAV 18.1.1 goes through the kinds (a mapping), earlier versions through the data
        data = side_data[item] if isinstance(item, kinds) else item
        if data.type == kinds.DISPLAYMATRIX and len(bytes(data)) == 36:
            return struct.unpack("=9i", bytes(data))
    return None


def _upright(image: np.ndarray, matrix: tuple[int, ...] | None) -> np.ndarray:
    """``image`` turned and mirrored as its display matrix says, as FFmpeg's command line does it (autorotate:
    quarter turns with or without a mirror, mirrors; other angles are left as they are)."""
    if matrix is None:
        return image
    across, down = math.hypot(matrix[0], matrix[3]), math.hypot(matrix[1], matrix[4])
    if not across or not down:
        return image
    theta = round(math.degrees(math.atan2(matrix[1] / down, matrix[0] / across)))  # clockwise turn to apply
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:  # a quarter turn clockwise, or a mirror across the diagonal
        turned = image.transpose(1, 0, 2) if matrix[3] > 0 else cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    elif abs(theta - 270) < 1:
        turned = (image[::-1, ::-1].transpose(1, 0, 2) if matrix[3] < 0 else
                  cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE))
    elif abs(theta - 180) < 1:  # a half turn, or a mirror left to right (or top to bottom)
        turned = image[::-1 if matrix[4] < 0 else 1, ::-1 if matrix[0] < 0 else 1]
    elif abs(theta) < 1 and matrix[4] < 0:
        turned = image[::-1]
    else:
        turned = image
    return np.ascontiguousarray(turned)


class _AudioTrack:
    """The audio of a source file, fed into an output container in step with the video.

    AAC and MP3 packets are copied as they are (AAC in ADTS form, as MPEG-TS holds it, through the
    aac_adtstoasc filter that MP4 needs); any other codec is re-encoded to AAC (mono or stereo, at
    48 kHz where the AAC encoder does not take the source's rate). Timestamps are shifted so the start
    of the source's video track is time 0, the clock of the frames VideoFileSource reads; where they start
    again lower (segments joined end to end), the audio that follows goes on from where the audio before
    ended, as the frames go on from the last frame before.
    """

    def __init__(self, source: Path, container: av.container.OutputContainer):
        self._input = av.open(ffmpeg_file(source))
        try:
            stream = self._input.streams.best("audio")  # the default one, as players play
            video = video_track(self._input)
            start = video_start(video) if video is not None else None
            self._offset = start or 0.0
            self._joined = 0.0  # seconds added to the audio of the segment being read (joined end to end)
            self._last_start: float | None = None  # on the output's clock, of the last packet or frame
            self._end = 0.0  # where the audio so far ends, on the output's clock
            context = stream.codec_context
            self._remux = context.codec.canonical_name in MP4_AUDIO_CODECS
            # ADTS AAC (no extradata) becomes the raw AAC with its config in the header that MP4 needs
            self._adts = (av.bitstream.BitStreamFilterContext("aac_adtstoasc", stream)
                          if context.codec.canonical_name == "aac" and not context.extradata else None)
            if self._remux:
                self._output = container.add_stream_from_template(stream)
            else:
                layout = "mono" if context.channels == 1 else "stereo"  # more channels are mixed down
                rate = context.sample_rate if context.sample_rate in AAC_RATES else 48_000
                self._output = container.add_stream("aac", rate=rate, layout=layout)
                self._output.bit_rate = 160_000
            self._packets = self._source_packets(stream)
            self._pending: av.Packet | None = None
            if self._adts is not None:  # the config comes with the first packet, and goes in before any is muxed
                self._pending = next(self._packets, None)
                if self._pending is not None and self._pending.has_sidedata("new_extradata"):
                    self._output.codec_context.extradata = bytes(self._pending.get_sidedata("new_extradata"))
        except BaseException:
            self._input.close()
            raise

    def _source_packets(self, stream) -> Iterator[av.Packet]:
        """Output-ready packets, in order: copies of the source's, or freshly encoded AAC.

        Packets that do not decode are left out; the audio ends where the source cannot be read further.
        """
        packets = self._input.demux(stream)
        while True:
            try:
                packet = next(packets, None)
            except av.FFmpegError:  # a damaged or cut-short source: keep the audio read so far
                break
            if packet is None:
                break
            if packet.dts is None:  # demuxer flush marker
                continue
            if self._remux:
                yield from self._copied(packet)
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for frame in frames:
                if frame.pts is not None:
                    shift = self._shift(float(frame.pts * frame.time_base), frame.samples / frame.sample_rate)
                    frame.pts -= round(shift / frame.time_base)
                yield from self._output.encode(frame)
        if not self._remux:
            yield from self._output.encode(None)

    def _copied(self, packet: av.Packet) -> Iterator[av.Packet]:
        """``packet`` for the output: ADTS headers taken off, timestamps shifted (none if it is damaged)."""
        packets = [packet]
        if self._adts is not None:
            try:
                packets = self._adts.filter(packet)
            except av.FFmpegError:
                return
        for copy in packets:
            shift = round(self._shift(float(copy.dts * copy.time_base), float((copy.duration or 0) * copy.time_base))
                          / copy.time_base)
            copy.pts, copy.dts = copy.pts - shift, copy.dts - shift
            copy.stream = self._output
            yield copy

    def _shift(self, start: float, duration: float) -> float:
        """Seconds to take off the time of audio that starts at ``start`` (on the source's timeline) and lasts
        ``duration``: the video track's start, less the length of the segments before its own (a start lower
        than the last one's begins a segment, which goes on from where the audio before ended)."""
        joined = start - self._offset + self._joined
        if self._last_start is not None and joined < self._last_start:
            self._joined += self._end - joined
            joined = self._end
        self._last_start, self._end = joined, max(self._end, joined + duration)
        return self._offset - self._joined

    def mux_until(self, container: av.container.OutputContainer, seconds: float) -> None:
        """Mux the audio packets that start before `seconds`.

        Packets before time 0 (encoder priming, a few ms) are left out: a fragmented MP4 cannot
        hold negative times, and the muxer would shift later video frames to make room.
        """
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            if self._pending.pts is not None and self._pending.pts < 0:
                self._pending = None
                continue
            if self._pending.pts is not None and float(self._pending.pts * self._pending.time_base) >= seconds:
                return
            container.mux(self._pending)
            self._pending = None

    def close(self) -> None:
        self._input.close()


class H264VideoWriter(KeptOutput):
    """Writes BGR frames to a browser-playable MP4: H.264 (libx264, yuv420p), index in front.

    While frames come in, the file at ``path`` is a fragmented MP4 with a keyframe every second
    and a fragment at least every second of video, each written out as soon as it is complete and
    fsynced about once a second: a run that is killed (even with kill -9) leaves a file that plays
    up to its last fragment. ``close()`` rewrites it as a normal MP4 with the index in front
    (+faststart, a stream copy); when that rewrite cannot be done (disk full), the fragmented
    file is kept, which plays as well, and ``rewrite_failure`` says so (an OutputError caused by
    the rewrite's error; None when the rewrite was done).

    Frames are encoded in a background thread (bounded queue). Frames keep their timestamps, so
    variable frame rates and gaps in the source stay as they were and the audio stays in sync.
    Odd widths or heights are padded by one replicated pixel row/column, as 4:2:0 H.264 needs even
    sizes. With ``audio_source``, that file's first audio track (if any) is copied in, trimmed to
    the written video. ``live`` (a camera) encodes without look-ahead, so that frames are on disk
    within about a second even when they come slowly. Whatever ends the ``with`` block, the
    frames written so far are kept; a writer that got no frame makes no file.
    """

    def __init__(
        self,
        path: Path | str,
        info: VideoInfo,
        audio_source: Path | str | None = None,
        preset: str = "veryfast",
        crf: int = 23,
        queue_size: int = 8,
        live: bool = False,
    ):
        self.path = check_output_path(path, VIDEO_OUTPUT_SUFFIXES)
        self.info = info
        self.frames_written = 0
        self.rewrite_failure: OutputError | None = None
        self._rate = Fraction(info.fps).limit_denominator(1001)
        self._pad = (info.height % 2, info.width % 2)
        self._last_pts = -1
        self._end_time = 0.0
        self._error: BaseException | None = None
        self._finished = False
        self._handoff = Handoff(queue_size)
        self._audio: _AudioTrack | None = None
        self._thread: threading.Thread | None = None
        detach_hard_link(self.path)
        try:
            self._container = av.open(ffmpeg_file(self.path), "w", format="mp4", options=FRAGMENTED_MP4)
        except (av.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})", self.path) from error
        self._sync = _PeriodicSync(self.path)
        try:
            # a keyframe every second; no B-frames, whose delay would shift every frame's time in a
            # fragmented MP4 (it has no edit list to take it back)
            options = {"preset": preset, "crf": str(crf), "g": str(max(1, round(info.fps))), "bf": "0"}
            if live:  # no look-ahead: a slow live source's frames reach the file without waiting for ~11 more
                options["tune"] = "zerolatency"
            self._video = self._container.add_stream("libx264", rate=self._rate, options=options)
            self._video.width = info.width + self._pad[1]
            self._video.height = info.height + self._pad[0]
            self._video.pix_fmt = "yuv420p"
            codec = self._video.codec_context
            codec.time_base = TIME_BASE
            # BT.709 colours, limited range, tagged: shown as written at any size (untagged, players take video
            # below HD for BT.601)
            codec.colorspace, codec.color_primaries, codec.color_trc, codec.color_range = \
                Colorspace.ITU709, ColorPrimaries.BT709, ColorTrc.BT709, ColorRange.MPEG
            if audio_source is not None and has_track(Path(audio_source), "audio"):
                self._audio = _AudioTrack(Path(audio_source), self._container)
        except (av.FFmpegError, OSError, ValueError) as error:
            self._close_container()  # nothing was muxed, so the file was not touched
            raise OutputError(f"{self.path}: cannot set up the encoder ({one_line(error)})", self.path) from error
        self._thread = threading.Thread(target=self._encode_loop, name=f"encode {self.path.name}", daemon=True)
        self._thread.start()

    def write(self, image_bgr: np.ndarray, timestamp: float | None = None, duration: float | None = None) -> None:
        """Queue one (H, W, 3) uint8 BGR frame of the size in ``info``.

        The frame is shown at ``timestamp`` (seconds since the start); without one, frames are
        spaced 1/fps apart. A timestamp that does not move forward moves to the next tick (1/90000 s). The
        first frame is shown from the start, whatever its time (a clip whose first frames are lost). It is
        shown until the next frame; the last one for ``duration`` seconds where given (a GIF that holds its
        last frame), else for 1/fps.
        """
        expected = (self.info.height, self.info.width, 3)
        if image_bgr.shape != expected or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected a {expected} uint8 image, got {image_bgr.shape} {image_bgr.dtype}")
        if any(self._pad):
            image_bgr = cv2.copyMakeBorder(image_bgr, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")  # copies the pixels
        if timestamp is None:
            timestamp = self.frames_written / self._rate
        pts = max(self._last_pts + 1, round(timestamp / TIME_BASE)) if self.frames_written else 0
        frame.pts, frame.time_base = pts, TIME_BASE
        if duration is not None and duration > 0:
            frame.duration = max(1, round(duration / TIME_BASE))
        self._last_pts = pts
        self._end_time = float(pts * TIME_BASE + (frame.duration * TIME_BASE if frame.duration else 1 / self._rate))
        self._put(frame)
        self.frames_written += 1

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: write the annotated frame at its source time."""
        if analyzed.annotated is None:
            raise ValueError("the video writer needs annotated frames (give the frame loop an annotator)")
        self.write(analyzed.annotated, timestamp=analyzed.frame.timestamp, duration=analyzed.frame.duration)

    def _put(self, item) -> None:
        """Hand ``item`` to the encoder thread; raise OutputError if that thread has failed."""
        self._handoff.put(item, lambda: self._error is not None)
        self._raise_if_failed()

    def _raise_if_failed(self, kept: bool = True, kept_seconds: float | None = None) -> None:
        """OutputError when writing failed; ``kept``: whether a complete fragment (a second of video) is in the file,
        ``kept_seconds``: how long the video kept lasts, where known."""
        if self._error is not None:
            what = "no second of it could be kept" if not kept else (
                f"the video is kept up to {kept_seconds:.1f} s, its last complete second" if kept_seconds
                else "the video is kept up to its last complete second")
            raise OutputError(f"{self.path}: writing failed ({one_line(self._error)}); {what}", self.path) from self._error

    def _encode_loop(self) -> None:
        """Background thread: encode and mux queued frames, interleaving audio; flush at the end."""
        shown: dict[int, int] = {}  # pts: duration of the frames given one, until their packets come out
        reformatter = VideoReformatter()

        def with_durations(packets: list[av.Packet]) -> list[av.Packet]:
            """The packets, given their frames' durations (the encoder drops them)."""
            for packet in packets:
                for pts in [pts for pts in shown if pts <= packet.pts]:
                    duration = shown.pop(pts)
                    if pts == packet.pts:
                        packet.duration = duration
            return packets

        try:
            while (frame := self._handoff.get()) is not _STOP:
                if frame.duration:
                    shown[frame.pts] = frame.duration
                frame = reformatter.reformat(frame, format="yuv420p", dst_colorspace=Colorspace.ITU709,
                                             dst_color_range=ColorRange.MPEG)  # as the stream's colour tags say
                self._container.mux(with_durations(self._video.encode(frame)))
                if self._audio is not None:
                    self._audio.mux_until(self._container, float(frame.time))
                self._sync.maybe()
            self._container.mux(with_durations(self._video.encode(None)))
            if self._audio is not None:
                self._audio.mux_until(self._container, self._end_time)
        except Exception as error:  # reported to the writing thread by write() / close()
            self._error = error

    def close(self) -> None:
        """Encode what is queued, finish the file and rewrite it with its index in front.

        Raises OutputError, keeping what was written, when writing failed; with no frame at all
        no file is made (one already at ``path`` stays as it was).
        """
        if self._finished:
            return
        self._finished = True
        self._handoff.put(_STOP, lambda: self._error is not None)
        self._thread.join()
        try:
            self._close_container()
        except (av.FFmpegError, OSError) as error:
            self._error = self._error or error
        if self.frames_written == 0:  # the muxer creates the file with its first packet: none was made
            raise OutputError(f"{self.path}: no frames were written", self.path)
        if not self.path.exists():
            raise OutputError(f"{self.path}: deleted while the run was writing it; the video is lost", self.path)
        if self._error is None and _ends_cut_off(self.path):  # closing's last writes failed, unreported
            full = shutil.disk_usage(self.path.parent).free < FULL_DISK_BYTES
            self._error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full else \
                OSError(errno.EIO, "its last data could not be written")
        if self._error is not None:
            kept = _drop_incomplete_fragment(self.path)
            if not kept:  # not a second of video: nothing half-written is left
                remove_quietly(self.path)
            self._raise_if_failed(kept, _video_seconds(self.path) if kept else None)
        if (error := _rewrite_with_index_in_front(self.path)) is not None:
            failure = OutputError(f"{self.path}: rewriting it with its index in front failed ({one_line(error)}); "
                                  "the video is kept whole, in the fragmented form it was written in, which plays "
                                  "as well", self.path)
            failure.__cause__ = error
            self.rewrite_failure = failure

    def holds_nothing(self) -> bool:
        return self.frames_written == 0

    def _close_container(self) -> None:
        try:
            self._container.close()
        finally:
            self._sync.close()
            if self._audio is not None:
                self._audio.close()


class _PeriodicSync:
    """Asks the OS to put a file's written data on disk at most once a second (against power cuts)."""

    def __init__(self, path: Path):
        self._path = path
        self._fd: int | None = None  # opened once the muxer has created the file
        self._last = time.monotonic()

    def maybe(self) -> None:
        """fsync when a second has passed since the last time."""
        if time.monotonic() - self._last < SYNC_SECONDS:
            return
        if self._fd is None:
            if not self._path.exists():  # nothing muxed yet
                return
            self._fd = os.open(self._path, os.O_WRONLY)
        os.fsync(self._fd)
        self._last = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def transport_stream_cut_short(path: Path) -> bool:
    """Whether an MPEG transport stream file ends inside a packet, as a recording or download cut short does:
    its packets are all 188 bytes (192 in M2TS, a 4-byte timecode first), each starting with the sync byte 0x47."""
    try:
        with open(path, "rb") as file:
            head = file.read(2 * 192 + 8)
        size = path.stat().st_size
    except OSError:
        return False
    for packet, offset in ((188, 0), (192, 4)):
        if len(head) > offset + packet and head[offset] == head[offset + packet] == 0x47:
            return size % packet != 0
    return False


def _complete_fragments(file) -> tuple[int, int, int]:
    """(where the last complete fragment of a fragmented MP4 ends, the file's size, complete fragments) for an
    open binary file: its top-level boxes are read up to the first that is cut off."""
    size = os.fstat(file.fileno()).st_size
    position = complete = fragments = 0
    while position + 8 <= size:
        file.seek(position)
        length, kind = int.from_bytes(file.read(4), "big"), file.read(4)
        if length == 1:
            length = int.from_bytes(file.read(8), "big")
        if length < 8 or position + length > size:
            break
        position += length
        if kind != b"moof":  # a fragment is complete once its mdat is
            complete = position
            fragments += kind == b"mdat"
    return complete, size, fragments


def _ends_cut_off(path: Path) -> bool:
    """Whether a fragmented MP4 ends inside a box: its last write failed (PyAV does not pass on an error of the
    writes that closing the file makes, such as a full disk's)."""
    try:
        with open(path, "rb") as file:
            complete, size, _ = _complete_fragments(file)
    except OSError:
        return False
    return complete < size


def _drop_incomplete_fragment(path: Path) -> bool:
    """Cut a fragmented MP4 whose writing failed (e.g. a full disk) after its last complete fragment,
    so that it plays to its end. Returns whether it keeps a fragment (frames), True when unknown."""
    try:
        with open(path, "r+b") as file:
            complete, _, fragments = _complete_fragments(file)
            file.truncate(complete)
    except OSError:  # the file stays as it is; players stop at the damaged end
        return True
    return fragments > 0


def _video_seconds(path: Path) -> float | None:
    """How long the video track of the file at ``path`` lasts (the end of its last packet), None when unknown."""
    end = None
    try:
        with av.open(ffmpeg_file(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.pts is not None:
                    packet_end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
                    end = packet_end if end is None else max(end, packet_end)
    except (av.FFmpegError, OSError, IndexError):
        return None
    return end


def _rewrite_with_index_in_front(path: Path) -> BaseException | None:
    """Remux a fragmented MP4 into a normal one with the index in front (stream copy, then rename).

    If that fails (e.g. a full disk) the fragmented file stays, which plays as well, and the error is returned.
    Through a symbolic link, its target is rewritten (the link stays).
    """
    path = through_links(path)
    temp = partial_path(path)
    try:
        with av.open(ffmpeg_file(path)) as source, av.open(ffmpeg_file(temp), "w", format="mp4",
                                                   options={"movflags": "+faststart"}) as target:
            streams = [stream for stream in source.streams if stream.type in ("video", "audio")]
            copies = {stream.index: target.add_stream_from_template(stream) for stream in streams}
            for packet in source.demux(streams):
                if packet.dts is None:  # demuxer flush marker
                    continue
                packet.stream = copies[packet.stream.index]
                target.mux(packet)
        os.replace(temp, path)
    except (av.FFmpegError, OSError) as error:
        remove_quietly(temp)
        return error
    except BaseException:  # a second Ctrl-C while rewriting: the fragmented file stays
        remove_quietly(temp)
        raise
    return None
