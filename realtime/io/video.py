"""All PyAV video code: reading video files (decoded in a background thread) and writing H.264 MP4.

File sinks write to a hidden partial file beside the target and rename it into place when they
finish, so a failed run never leaves a corrupt output. Ctrl-C (KeyboardInterrupt) is not a
failure: what was written so far is finalised into a valid file.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from realtime.errors import OutputError, SourceError, one_line
from realtime.io.background import Handoff
from realtime.io.files import check_input_file, check_output_path, partial_path, remove_quietly
from realtime.types import AnalyzedFrame, Frame, VideoInfo, usable_fps

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp", ".gif"}
)
VIDEO_OUTPUT_SUFFIXES = (".mp4",)
MP4_AUDIO_CODECS = frozenset({"aac", "mp3"})  # copied as they are; other audio is re-encoded to AAC
_END = object()
_STOP = None


class VideoFileSource:
    """A video file decoded by PyAV in a background thread (bounded queue, flat memory).

    Frames come out upright (rotation metadata applied) with timestamps from their pts.
    Iterate once; `close()` (or the `with` block) stops the decoder.
    """

    live = False

    def __init__(self, path: Path | str, queue_size: int = 4):
        self.path = Path(path)
        check_input_file(self.path, "video")
        self._handoff = Handoff(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, UnicodeDecodeError) as error:
            raise SourceError(f"video {self.path}: not a video file PyAV can read ({one_line(error)})") from error
        try:
            if not self._container.streams.video:
                raise SourceError(f"video {self.path}: has no video track")
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            self.audio_path = self.path if self._container.streams.audio else None
            fps = usable_fps(stream.average_rate or stream.guessed_rate or stream.base_rate)
            self._frames = self._decode(stream, fps)
            try:
                self._first = next(self._frames, None)
            except av.FFmpegError as error:
                raise SourceError(f"video {self.path}: cannot decode it ({one_line(error)})") from error
            if self._first is None:
                raise SourceError(f"video {self.path}: has no frames")
        except BaseException:
            self._container.close()
            raise
        height, width = self._first.image.shape[:2]
        self.info = VideoInfo(width, height, fps, stream.frames or None, str(self.path))
        self._thread = threading.Thread(target=self._produce, name=f"decode {self.path.name}", daemon=True)
        self._thread.start()

    def _decode(self, stream, fps: float) -> Iterator[Frame]:
        """Decode frames in order, upright, with seconds since the first frame."""
        origin = None
        previous = -1.0 / fps
        for index, av_frame in enumerate(self._container.decode(stream)):
            image = np.ascontiguousarray(_upright(av_frame.to_ndarray(format="bgr24"), av_frame.rotation))
            if av_frame.time is None:
                timestamp = previous + 1.0 / fps
            else:
                origin = av_frame.time if origin is None else origin
                timestamp = av_frame.time - origin
                if timestamp <= previous:  # broken or missing pts: keep time moving forward
                    timestamp = previous + 1.0 / fps
            previous = timestamp
            yield Frame(index, timestamp, image)

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
        if self._first is None:
            raise RuntimeError("a VideoFileSource can be iterated only once")
        first, self._first = self._first, None
        yield first
        while True:
            item = self._handoff.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise SourceError(f"video {self.path}: decoding failed ({one_line(item)})") from item
            yield item

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


def _upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as PyAV reports it)."""
    turns = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    code = turns.get(round(rotation or 0) % 360)
    return image if code is None else cv2.rotate(image, code)



class _AudioTrack:
    """The audio of a source file, fed into an output container in step with the video.

    AAC and MP3 packets are copied as they are; any other codec is re-encoded to AAC (mono or stereo).
    Timestamps are shifted so the source's first video frame is time 0, like the written video.
    """

    def __init__(self, source: Path, container: av.container.OutputContainer):
        self._input = av.open(str(source))
        try:
            stream = self._input.streams.audio[0]
            video = self._input.streams.video[0] if self._input.streams.video else None
            self._offset = float(video.start_time * video.time_base) if video is not None and video.start_time else 0.0
            self._remux = stream.codec_context.codec.canonical_name in MP4_AUDIO_CODECS
            if self._remux:
                self._output = container.add_stream_from_template(stream)
            else:
                context = stream.codec_context
                layout = "mono" if context.channels == 1 else "stereo"  # more channels are mixed down
                self._output = container.add_stream("aac", rate=context.sample_rate, layout=layout)
                self._output.bit_rate = 160_000
            self._packets = self._source_packets(stream)
            self._pending: av.Packet | None = None
        except BaseException:
            self._input.close()
            raise

    def _source_packets(self, stream) -> Iterator[av.Packet]:
        """Output-ready packets, in order: copies of the source's, or freshly encoded AAC."""
        for packet in self._input.demux(stream):
            if packet.dts is None:  # demuxer flush marker
                continue
            if self._remux:
                shift = round(self._offset / packet.time_base)
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                packet.stream = self._output
                yield packet
            else:
                for frame in packet.decode():
                    if frame.pts is not None:
                        frame.pts -= round(self._offset / frame.time_base)
                    yield from self._output.encode(frame)
        if not self._remux:
            yield from self._output.encode(None)

    def mux_until(self, container: av.container.OutputContainer, seconds: float) -> None:
        """Mux the audio packets that start before `seconds`."""
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            if self._pending.pts is not None and float(self._pending.pts * self._pending.time_base) >= seconds:
                return
            container.mux(self._pending)
            self._pending = None

    def close(self) -> None:
        self._input.close()




class H264VideoWriter:
    """Writes BGR frames to a browser-playable MP4: H.264 (libx264, yuv420p), +faststart.

    Frames are encoded in a background thread (bounded queue) so encoding overlaps with the work
    that produces them. Odd widths or heights are padded by one replicated pixel row/column, as
    4:2:0 H.264 needs even sizes. With `audio_source`, that file's first audio track (if any) is
    copied in, trimmed to the written video. Ctrl-C inside the `with` block keeps a playable file
    with the frames written so far; any other exception leaves no file.
    """

    def __init__(
        self,
        path: Path | str,
        info: VideoInfo,
        audio_source: Path | str | None = None,
        preset: str = "veryfast",
        crf: int = 23,
        queue_size: int = 8,
    ):
        self.path = check_output_path(path, VIDEO_OUTPUT_SUFFIXES)
        self.info = info
        self.frames_written = 0
        self._rate = Fraction(info.fps).limit_denominator(1001)
        self._time_base = 1 / self._rate
        self._pad = (info.height % 2, info.width % 2)
        self._last_pts = -1
        self._end_time = 0.0
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._finished = False
        self._handoff = Handoff(queue_size)
        self._temp = partial_path(self.path)
        self._audio: _AudioTrack | None = None
        self._thread: threading.Thread | None = None
        try:
            self._container = av.open(str(self._temp), "w", format="mp4", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as error:
            remove_quietly(self._temp)
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})") from error
        try:
            self._video = self._container.add_stream(
                "libx264", rate=self._rate, options={"preset": preset, "crf": str(crf)}
            )
            self._video.width = info.width + self._pad[1]
            self._video.height = info.height + self._pad[0]
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = self._time_base
            if audio_source is not None and has_audio(Path(audio_source)):
                self._audio = _AudioTrack(Path(audio_source), self._container)
        except (av.FFmpegError, OSError, ValueError) as error:
            self._abandon()
            raise OutputError(f"{self.path}: cannot set up the encoder ({one_line(error)})") from error
        self._thread = threading.Thread(target=self._encode_loop, name=f"encode {self.path.name}", daemon=True)
        self._thread.start()

    def write(self, image_bgr: np.ndarray, timestamp: float | None = None) -> None:
        """Queue one (H, W, 3) uint8 BGR frame of the size in `info`.

        Without `timestamp` frames are spaced 1/fps apart (constant frame rate); with it (seconds,
        e.g. `Frame.timestamp` from a camera) the frame is shown at that time, so dropped frames
        do not speed the video up.
        """
        expected = (self.info.height, self.info.width, 3)
        if image_bgr.shape != expected or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected a {expected} uint8 image, got {image_bgr.shape} {image_bgr.dtype}")
        if any(self._pad):
            image_bgr = cv2.copyMakeBorder(image_bgr, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")  # copies the pixels
        pts = self._last_pts + 1 if timestamp is None else max(self._last_pts + 1, round(timestamp / self._time_base))
        frame.pts, frame.time_base = pts, self._time_base
        self._last_pts = pts
        self._end_time = float((pts + 1) * self._time_base)
        self._put(frame)
        self.frames_written += 1

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: write the annotated frame (live frames at their capture times)."""
        if analyzed.annotated is None:
            raise ValueError("the video writer needs annotated frames (give the frame loop an annotator)")
        self.write(analyzed.annotated, timestamp=analyzed.frame.timestamp if analyzed.live else None)

    def _put(self, item) -> None:
        """Hand `item` to the encoder thread; raise OutputError if that thread has failed."""
        self._handoff.put(item, lambda: self._error is not None)
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise OutputError(f"{self.path}: encoding failed ({one_line(self._error)})") from self._error

    def _encode_loop(self) -> None:
        """Background thread: encode and mux queued frames, interleaving audio; flush at the end."""
        try:
            while (frame := self._handoff.get()) is not _STOP:
                if self._cancel.is_set():
                    return
                self._container.mux(self._video.encode(frame))
                if self._audio is not None:
                    self._audio.mux_until(self._container, float(frame.time))
            if self._cancel.is_set():
                return
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.mux_until(self._container, self._end_time)
        except Exception as error:  # reported to the writing thread by write() / close()
            self._error = error

    def close(self) -> None:
        """Finish encoding, finalise the MP4 and move it into place. No frames -> OutputError, no file."""
        if self._finished:
            return
        self._finished = True
        try:
            self._put(_STOP)
            self._thread.join()
            self._raise_if_failed()
            if self.frames_written == 0:
                raise OutputError(f"{self.path}: no frames were written")
            self._close_container()
            os.replace(self._temp, self.path)
        except BaseException as error:  # including a second Ctrl-C while finishing
            self._abandon()
            if isinstance(error, (av.FFmpegError, OSError)):
                raise OutputError(f"{self.path}: cannot finish it ({one_line(error)})") from error
            raise

    def discard(self) -> None:
        """Stop encoding and delete the partial output."""
        if not self._finished:
            self._finished = True
            self._abandon()

    def _close_container(self) -> None:
        try:
            self._container.close()
        finally:
            if self._audio is not None:
                self._audio.close()

    def _abandon(self) -> None:
        """Stop the encoder thread (dropping queued frames), close everything and delete the temp file."""
        if self._thread is not None and self._thread.is_alive():
            self._cancel.set()
            self._handoff.clear()
            self._handoff.put(_STOP, lambda: False)
            self._thread.join()
        try:
            self._close_container()
        except Exception:  # the file is deleted anyway; the original error is what matters
            pass
        remove_quietly(self._temp)

    def __enter__(self) -> H264VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if exc_type is None or (interrupted and self.frames_written):
            self.close()
        else:
            self.discard()


def has_audio(path: Path) -> bool:
    """Whether a media file has an audio track (False when it cannot be opened at all)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


