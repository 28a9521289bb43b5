"""Network cameras and live streams (RTSP, HTTP MJPEG/HLS, UDP, TCP, SRT) through FFmpeg (PyAV).

Same live semantics as a local camera: a reader thread decodes as fast as the stream delivers and
keeps only the newest frame, so latency never builds up; frames carry their capture (arrival) times.
A video file on a web server is no live stream: every frame of it is handed out, at its own time in the file.
A gap in the stream is waited out (and counted, so that the run's frames/s can leave it out); a stream
that breaks is reopened with back-off until no frame has come for ``reconnect_for`` seconds, after
which the iteration ends and what was recorded is kept.
``LatencyMeter`` measures, per frame, the time from capture to the annotated frame being ready.

MPEG-TS holds the last video frames until the next ones start: one in the demuxer (a PES packet without a
length, as most senders write video, ends where the next starts) and one in FFmpeg's parser (a frame ends
where the next begins), so the frames sent last before a silence come out only when the stream resumes or
the read times out. Their arrival is then no capture time: the first out after a silence is stamped one
pts step after the frame before it arrived, and one more that comes out with it (within half a pts step:
the same flush, not the sender's pace) one pts step after that. That is sound for MPEG-TS only: there the
first frame out after a silence is always a held one, captured before it, whatever the camera's clock did
during the silence (a sender may keep its pts running or stop it). Elsewhere a frame after a silence may
be a new one whose pts did not count the silence, so arrival times stay.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

import av
import cv2
import numpy as np

from realtime.errors import SourceError, one_line
from realtime.io.video import ShownColours, video_track
from realtime.types import AnalyzedFrame, Frame, VideoInfo, usable_fps

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_OPEN_TIMEOUT_S = 10.0  # bound on waiting for a stream's first frame
DEFAULT_RECONNECT_FOR_S = 30.0  # how long a lost stream is reopened before the run ends
READ_TIMEOUT_S = 5.0  # silence (or data without a frame decoded from it) after which a stream counts as lost
OUTAGE_S = 1.0  # a wait for a frame longer than this (and two frame steps) is an outage, left out of frames/s
HELD_S = 0.1  # an MPEG-TS frame out this much later than its pts step after the frame before was held over a silence
HELD_FRAMES = 2  # frames FFmpeg holds at most: one in the MPEG-TS demuxer, one in the parser
HOLDING_FORMATS = frozenset({"mpegts"})  # demuxers whose last frame before a silence comes out after it
# back-off between reopening attempts: a stream that comes back (a camera rebooted) is found within 2 s; a try
# costs a connection attempt (one listening wait for UDP), so trying every 2 s for reconnect_for burdens no one
FIRST_RETRY_S, MAX_RETRY_S = 0.5, 2.0
THREAD_PREFIX = "stream "  # the names of a stream's reader and opener threads
LATENCY_BIN_MS, LATENCY_MAX_MS = 1, 60_000  # latency histogram: 1 ms bins up to a minute (flat memory)
# Low-latency demuxing: no input buffering, a short probe of the stream's format.
LIVE_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "analyzeduration": "1000000", "probesize": "1000000"}
# A file on a web server: buffered as FFmpeg reads files ("nobuffer" drops the packets its probe read: the first key
# frame, so a short file gave no frame at all, a longer one none until its next key frame).
SERVED_FILE_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}
SERVED_FILE_FRAMES_AHEAD = 16  # frames of a served file decoded ahead of the analysis, at most
SCHEME_OPTIONS = {
    "rtsp": {"rtsp_transport": "tcp"},  # no lost packets (torn frames) on busy networks
    "rtsps": {"rtsp_transport": "tcp"},
    "udp": {"overrun_nonfatal": "1", "fifo_size": "1000000"},
}

SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "apikey",
                               "api_key", "access_token"})

LOG = logging.getLogger("emotion_tracer.stream")


CLOSE_NOTE_AFTER_S = 0.5  # a stream's reader that takes longer than this to end on close() gets a note
INDEXED_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp")  # files whose index may be at their end


def is_stream_url(text: str) -> bool:
    """Whether ``text`` looks like a network stream address (``scheme://...``)."""
    return "://" in str(text)


def redacted(url: str) -> str:
    """The URL without its secrets, for messages: the password of ``user:pass@`` and the values of
    query parameters such as ``password=`` or ``token=`` become ``***`` (``rtsp://user:***@host/...``).
    Works on any text, a malformed port included."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    credentials, at, host = netloc.rpartition("@")
    if at and ":" in credentials:
        netloc = f"{credentials.split(':', 1)[0]}:***@{host}"
    if query:
        pairs = [pair.split("=", 1) for pair in query.split("&")]
        query = "&".join(f"{pair[0]}=***" if len(pair) == 2 and pair[0].lower() in SECRET_QUERY_KEYS else "=".join(pair)
                         for pair in pairs)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _head(url: str, timeout: float):
    """The headers of a web server's answer to a HEAD request for ``url``; None without one (no answer, refused,
    401/404...)."""
    try:
        with urlopen(Request(url, method="HEAD"), timeout=timeout) as answer:
            return answer.headers
    except (OSError, ValueError):
        return None


def served_file(url: str, timeout: float) -> bool:
    """Whether an http(s) ``url`` is a file with a length (a video on a web server), not a live stream: a
    HEAD request answered with a Content-Length and a type that is neither multipart (MJPEG) nor a playlist."""
    headers = _head(url, timeout) if urlsplit(url).scheme in ("http", "https") else None
    if headers is None:  # no answer: taken as live, as before
        return False
    length, kind = headers.get("Content-Length"), headers.get_content_type()
    return (length or "").strip() not in ("", "0") and not kind.startswith("multipart/") and "mpegurl" not in kind


def answers_byte_ranges(url: str, timeout: float) -> bool:
    """Whether the web server of ``url`` says it serves parts of the file (Accept-Ranges: bytes), as an MP4 or MOV
    whose index is at its end needs; True when that cannot be told."""
    headers = _head(url, timeout)
    return headers is None or headers.get("Accept-Ranges", "").strip().lower() == "bytes"


def check_stream_url(url: str) -> str:
    """``url`` when its scheme is one FFmpeg streams from and it names a host; SourceError otherwise."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise SourceError(f"stream {redacted(url)}: unsupported scheme {scheme + '://' if scheme else '(none)'} "
                          f"(use {', '.join(s + '://' for s in STREAM_SCHEMES)})")
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"stream {redacted(url)}: the port is not a number from 0 to 65535") from None
    if not parts.hostname and not (scheme == "udp" and port):
        raise SourceError(f"stream {redacted(url)}: no host in the address")
    return scheme + url.strip()[len(parts.scheme):]  # FFmpeg knows its protocols in lower case only


class NoFrameDecoded(Exception):
    """Data came but no video frame was decoded from it in time (another codec on the same address, damaged
    packets, or no key frame)."""


class StreamSource:
    """A live network stream, newest frame first. Opening waits at most ``open_timeout`` seconds for
    the first frame (SourceError otherwise); timestamps are seconds since then on the monotonic
    clock, whose reading at time 0 is ``clock_origin``. ``issues`` has a line per outage (reopened, lost for
    good, or still being reopened), empty when nothing was lost; ``outages`` counts the waits
    for a frame longer than OUTAGE_S (and two frame steps) that ended with one, and ``silent_seconds``
    is their sum: time the consumer spent waiting for the stream, not analysing. A frame MPEG-TS held
    over the silence, out at the read timeout, ends a wait but not the outage. A video file on a web server
    (``served_file``) is not ``live``: its frames come each in turn, timed by the file, and scene cuts in it count.
    """

    audio_path = None

    def __init__(self, url: str, open_timeout: float = DEFAULT_OPEN_TIMEOUT_S,
                 reconnect_for: float = DEFAULT_RECONNECT_FOR_S, read_timeout: float = READ_TIMEOUT_S):
        self.url = check_stream_url(url)
        self.path = None
        self.name = redacted(self.url)
        self.open_timeout = open_timeout
        self.reconnect_for = reconnect_for
        self.read_timeout = read_timeout
        self._issues: list[str] = []
        self._colours = ShownColours()  # for the frames handed out
        self._reopening: tuple[str, float] | None = None  # while a lost stream is reopened: why, its last frame
        self.outages = 0
        self.silent_seconds = 0.0
        # a file on a web server: every frame in turn, at its time in the file; read once, never reopened (it
        # would start over)
        deadline = time.monotonic() + open_timeout
        self.served_file = served_file(self.url, open_timeout / 2)  # half the time at most: the open has the rest
        self.live = not self.served_file  # a served file is analysed as a video file: in turn, cut by cut
        first, container, frames = self._first_frame(deadline)
        self.clock_origin = time.monotonic()
        self.finite = self.served_file or bool(container.duration)
        stream = video_track(container)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.info = VideoInfo(first.width, first.height, usable_fps(fps), None, self.name)
        self._condition = threading.Condition()
        self._latest: tuple[av.VideoFrame, float, bool] = (first, 0.0, False)  # frame, timestamp, held
        self._ahead: deque[tuple[av.VideoFrame, float]] = deque([(first, 0.0)])  # a served file's frames, in turn
        self._received = 1  # frames decoded from the stream so far
        self._running = True
        self._thread = threading.Thread(target=self._read, args=(container, frames, (0.0, first.time)),
                                        name=f"{THREAD_PREFIX}{self.name}", daemon=True)
        self._thread.start()

    def _first_frame(self, deadline: float):
        """``_wait_for_first_frame`` in a thread of its own, so that Ctrl-C and SIGTERM are handled while
        the stream is being opened (FFmpeg's calls would hold them back until they return)."""
        outcome: dict = {}
        abandoned = threading.Event()

        def attempt() -> None:
            try:
                outcome["opened"] = self._wait_for_first_frame(deadline)
            except BaseException as error:  # handed to the waiting thread
                outcome["error"] = error
            if abandoned.is_set() and "opened" in outcome:
                outcome["opened"][1].close()

        opener = threading.Thread(target=attempt, name=f"{THREAD_PREFIX}open {self.name}", daemon=True)
        opener.start()
        try:
            while opener.is_alive():
                opener.join(0.1)
        except BaseException:  # interrupted: the opener closes what it opens, within open_timeout
            abandoned.set()
            if "opened" in outcome:
                outcome["opened"][1].close()
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["opened"]

    def _wait_for_first_frame(self, deadline: float, closed: Callable[[], bool] = lambda: False):
        """Open the stream and decode its first frame before ``deadline`` (monotonic); SourceError if not.

        Returns the frame, the container and its remaining frames; None once ``closed()`` (checked at each open)."""
        window = deadline - time.monotonic()
        undecoded = ""  # what was seen when data came but no frame decoded from it
        while True:
            if closed():
                return None
            container, frames = self._open(timeout=(max(deadline - time.monotonic(), 0.1), self.read_timeout),
                                           first_frame_by=deadline)
            try:
                first = next(self._until(frames, deadline), None)
            except av.ExitError:  # silent: open again while time is left
                first = None
            except NoFrameDecoded:  # data, but nothing decoded from it (no key frame yet, another codec)
                first = None
                undecoded = (" (data came, but no frame decoded from it: key frames may be further apart than that; "
                             "a longer open timeout waits for one)")
            except (av.FFmpegError, OSError) as error:
                container.close()
                detail = one_line(error).replace(self.url, self.name)
                raise SourceError(f"stream {self.name}: no video frame ({detail}){self._no_ranges_hint()}") from error
            if first is not None and not closed():
                return first, container, frames
            container.close()
            if closed():
                return None
            if time.monotonic() >= deadline:
                raise SourceError(f"stream {self.name}: no video frame within {round(window, 1):g} s{undecoded}")

    def _no_ranges_hint(self) -> str:
        """Why a served MP4/MOV may give no frame: a web server that serves no parts of files (python -m http.server)
        cannot give one whose index is at its end (most cameras and encoders put it there); else empty."""
        if not (self.served_file and urlsplit(self.url).path.lower().endswith(INDEXED_SUFFIXES)) or \
                answers_byte_ranges(self.url, 2.0):
            return ""
        return ("; this web server serves no parts of files (byte ranges), which an MP4 or MOV with its index at its "
                "end needs: download it and give the file, or serve it from a server that does")

    def _open(self, timeout: tuple[float, float],
              first_frame_by: float) -> tuple[av.container.InputContainer, Iterator[av.VideoFrame]]:
        """Open the stream and return the container and its decoded video frames (``_decode``); SourceError if
        it fails."""
        scheme = urlsplit(self.url).scheme.lower()
        options = {**(SERVED_FILE_OPTIONS if self.served_file else LIVE_OPTIONS), **SCHEME_OPTIONS.get(scheme, {})}
        try:
            container = av.open(self.url, options=options, timeout=timeout)
        except av.ExitError as error:
            raise SourceError(f"stream {self.name}: no answer within {timeout[0]:.3g} s") from error
        except av.ProtocolNotFoundError as error:
            raise SourceError(f"stream {self.name}: this installation cannot read {scheme}:// streams (its video "
                              "library, PyAV's FFmpeg, was built without that protocol)") from error
        except (av.FFmpegError, OSError) as error:
            detail = one_line(error).replace(self.url, self.name)  # FFmpeg's message repeats the URL
            raise SourceError(f"stream {self.name}: cannot open it ({detail})") from error
        stream = video_track(container)
        if stream is None or container.format.name == "tty":  # (FFmpeg's tty reader draws a text's characters)
            container.close()
            raise SourceError(f"stream {self.name}: has no video" + (" (it is text)" if stream is not None else ""))
        return container, self._decode(container, stream, first_frame_by)

    def _decode(self, container, stream, first_frame_by: float) -> Iterator[av.VideoFrame]:
        """Decoded frames; a damaged packet (lost datagrams) is skipped, a broken connection raises, and so
        does data that gives no frame (NoFrameDecoded): none by ``first_frame_by`` (monotonic), or none for
        read_timeout after one."""
        last_frame = None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                frames = []
            if frames:
                yield from frames
                last_frame = time.monotonic()  # once handed on: a served file's reader waits for the analysis
            elif time.monotonic() > (first_frame_by if last_frame is None else last_frame + self.read_timeout):
                raise NoFrameDecoded

    @staticmethod
    def _until(frames: Iterator[av.VideoFrame], deadline: float) -> Iterator[av.VideoFrame]:
        """``frames`` until ``deadline`` (monotonic) passes."""
        for frame in frames:
            yield frame
            if time.monotonic() > deadline:
                return

    def _stamped(self, container, frames: Iterator[av.VideoFrame],
                 previous: tuple[float, float | None] | None) -> Iterator[tuple[av.VideoFrame, float, bool]]:
        """Each of ``frames`` with its capture time and whether it was held: its arrival (seconds since
        clock_origin), except for the frames MPEG-TS held over a silence (see the module's docstring).
        ``previous`` is (arrival, pts seconds) of the frame before the first, if any."""
        holding = not HOLDING_FORMATS.isdisjoint(container.format.name.split(","))
        stamp, held = 0.0, 0  # of the frame before: its timestamp, and which held frame in a row it was (0: none)
        for frame in frames:
            arrival = time.monotonic() - self.clock_origin
            step = frame.time - previous[1] if previous is not None and None not in (previous[1], frame.time) else 0
            if holding and step > 0 and arrival - previous[0] > step + HELD_S:  # the first out after a silence
                stamp, held = previous[0] + step, 1
            elif holding and step > 0 and 0 < held < HELD_FRAMES and arrival - previous[0] < step / 2:  # with it
                stamp, held = min(stamp + step, arrival), held + 1  # never after it came, nor out of order
            else:
                stamp, held = arrival, 0
            previous = (arrival, frame.time)
            yield frame, stamp, held > 0

    def _read(self, container, frames: Iterator[av.VideoFrame], previous: tuple[float, float | None]) -> None:
        """Reader thread: keep the newest frame; reopen a lost stream with back-off until reconnect_for.
        ``previous`` is (arrival, pts seconds) of the frame read before ``frames``."""
        last_frame = time.monotonic()
        while True:
            try:
                if self.served_file:
                    self._read_served_file(frames, previous[1])
                    return
                for frame, stamp, held in self._stamped(container, frames, previous):
                    with self._condition:
                        if not self._running:
                            return
                        last_frame = self.clock_origin + stamp  # when it was sent, for a frame held over a silence
                        self._latest = (frame, stamp, held)
                        self._received += 1
                        self._condition.notify_all()
                reason = "the stream ended"
            except av.ExitError:
                reason = f"no data for {self.read_timeout:g} s"
            except NoFrameDecoded:
                reason = f"data but no frame decoded for {self.read_timeout:g} s"
            except (av.FFmpegError, OSError) as error:
                reason = one_line(error).replace(self.url, self.name)
            finally:
                container.close()
                if self.served_file:
                    last_frame = self.clock_origin + self._last_served
            if self.finite:
                self._end(None if reason == "the stream ended" else
                          f"stream {self.name}: lost ({reason}) after {last_frame - self.clock_origin:.1f} s; a file "
                          "over the network is not reopened (it would start over); what was received is kept")
                return
            opened = self._reopen(last_frame, reason)
            if opened is None:
                return
            container, frames = opened
            previous = None  # a new stream: its pts do not follow on

    def _read_served_file(self, frames: Iterator[av.VideoFrame], first_time: float | None) -> None:
        """Reader thread of a served file: every frame, at its time in the file from the first (its arrival where
        the file gives none), up to SERVED_FILE_FRAMES_AHEAD of them ahead of the analysis; ends with the file, or
        when closed. ``first_time`` is the first frame's time in the file."""
        self._last_served = 0.0
        for frame in frames:
            if frame.time is not None and first_time is not None:
                stamp = max(frame.time - first_time, self._last_served)
            else:
                stamp = time.monotonic() - self.clock_origin
            with self._condition:
                self._condition.wait_for(lambda: len(self._ahead) < SERVED_FILE_FRAMES_AHEAD or not self._running)
                if not self._running:
                    return
                self._ahead.append((frame, stamp))
                self._last_served = stamp
                self._received += 1
                self._condition.notify_all()
        self._end(None)

    def _end(self, issue: str | None) -> None:
        """Stop the iteration, noting ``issue`` (what was lost) if any; an outage being reopened is settled."""
        with self._condition:
            if issue is not None:
                self._issues.append(issue)
            self._reopening = None
            self._running = False
            self._condition.notify_all()

    def _reopen(self, last_frame: float, reason: str):
        """(container, frames) of the reopened stream, from its first frame, or None once closed or given up.
        Either way the outage is one line of ``issues``: when the stream was lost, why, and how it ended. It is
        tried at least once (unless reconnect_for is 0), even when the loss was found after reconnect_for; a try
        is back only once a frame has been decoded."""
        delay = FIRST_RETRY_S
        lost_after = last_frame - self.clock_origin
        LOG.warning("warning: stream %s lost (%s); reopening it for up to %g s", self.name, reason,
                    self.reconnect_for)
        with self._condition:
            self._reopening = (reason, last_frame)
        last_try = ""
        tried = False
        try:
            while True:
                left = last_frame + self.reconnect_for - time.monotonic()
                with self._condition:
                    if not self._running:
                        return None
                if left <= 0 and (tried or self.reconnect_for <= 0):
                    self._end(f"stream {self.name}: lost ({reason}) after {lost_after:.1f} s and not back within "
                              f"{self.reconnect_for:g} s{last_try}; what was received is kept")
                    return None
                with self._condition:
                    self._condition.wait(timeout=min(delay, max(left, 0.0)))
                    if not self._running:
                        return None
                tried = True
                try:
                    opened = self._wait_for_first_frame(time.monotonic() + max(min(self.open_timeout, left), 1.0),
                                                        closed=lambda: not self._running)
                except SourceError as error:
                    last_try = f" (last try: {str(error).removeprefix(f'stream {self.name}: ')})"
                    delay = min(2 * delay, MAX_RETRY_S)
                    continue
                if opened is None:  # closed meanwhile
                    return None
                first, container, frames = opened
                back_after = time.monotonic() - last_frame
                with self._condition:
                    if not self._running:
                        container.close()
                        return None
                    LOG.warning("warning: stream %s reopened", self.name)
                    self._issues.append(f"stream {self.name}: lost ({reason}) after {lost_after:.1f} s; reopened it "
                                        f"{back_after:.1f} s after its last frame (no frame in between: what the stream sent "
                                        "while it was down or being reopened is lost)")
                    self._reopening = None
                return container, itertools.chain([first], frames)
        finally:
            with self._condition:
                if self._reopening is not None:  # closed meanwhile
                    self._issues.append(self._still_reopening())
                    self._reopening = None

    def _still_reopening(self) -> str:
        """The line of the outage being reopened now (``_reopening``)."""
        reason, last_frame = self._reopening
        return (f"stream {self.name}: lost ({reason}) after {last_frame - self.clock_origin:.1f} s; still being "
                f"reopened when the run stopped, {time.monotonic() - last_frame:.1f} s after its last frame; what "
                "was received is kept")

    @property
    def issues(self) -> list[str]:
        """A line per outage; one still being reopened (the run stopped meanwhile) says so."""
        with self._condition:
            return self._issues + ([self._still_reopening()] if self._reopening is not None else [])

    def __iter__(self) -> Iterator[Frame]:
        if self.served_file:
            yield from self._served_frames()
            return
        seen = 0
        index = 0
        bound = self.read_timeout + self.reconnect_for + MAX_RETRY_S + self.open_timeout + 5  # the reader gives up first
        outage = max(OUTAGE_S, 2 / self.info.fps)
        silence_goes_on = False  # the last frames were held over an outage: out at the read timeout, it goes on
        while True:
            asked = time.monotonic()
            with self._condition:
                if not self._condition.wait_for(lambda: self._received > seen or not self._running, timeout=bound):  # noqa: B023
                    raise SourceError(f"stream {self.name}: no frame for {bound:.0f} s")
                if self._received == seen:  # stopped: lost for good, or close() was called
                    return
                seen = self._received
                frame, timestamp, held = self._latest
            waited = time.monotonic() - asked
            if waited > outage:
                self.outages += not silence_goes_on
                self.silent_seconds += waited
            silence_goes_on = held and (silence_goes_on or waited > outage)
            yield Frame(index, timestamp, self._image(frame), held=held)
            index += 1

    def _served_frames(self) -> Iterator[Frame]:
        """A served file's frames, each in turn (``_read_served_file``)."""
        bound = self.read_timeout + 5  # the reader gives up first
        for index in itertools.count():
            with self._condition:
                if not self._condition.wait_for(lambda: self._ahead or not self._running, timeout=bound):
                    raise SourceError(f"stream {self.name}: no frame for {bound:.0f} s")
                if not self._ahead:  # the file ended, it was lost, or close() was called
                    return
                frame, timestamp = self._ahead.popleft()
                self._condition.notify_all()
            yield Frame(index, timestamp, self._image(frame))

    def _image(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as BGR (as players show it) at the stream's first size (a reopened stream may come back at
        another)."""
        image = self._colours.bgr(frame)
        if image.shape[:2] != (self.info.height, self.info.width):
            image = cv2.resize(image, (self.info.width, self.info.height), interpolation=cv2.INTER_AREA)
        return image

    def close(self) -> None:
        """Stop the reader thread (it closes the stream; a blocked read ends within read_timeout)."""
        with self._condition:
            self._running = False
            self._condition.notify_all()
        self._thread.join(timeout=CLOSE_NOTE_AFTER_S)
        if self._thread.is_alive():  # inside FFmpeg's read or open: the wait is said, as is how to cut it short
            LOG.warning("note: stream %s: waiting up to %.0f s for its reader to let go (Ctrl-C again stops at once)",
                        self.name, self.read_timeout + 1 - CLOSE_NOTE_AFTER_S)
            self._thread.join(timeout=self.read_timeout + 1 - CLOSE_NOTE_AFTER_S)

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_threads_alive() -> bool:
    """Whether a stream's reader or opener thread still runs after its source was closed or given up: one left
    inside FFmpeg's open (it ends within its open timeout, which close() does not wait for). Python's shutdown
    must not meet it: its timeout checks take the interpreter lock, which at shutdown can crash the process."""
    return any(thread.is_alive() for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX))


class LatencyMeter:
    """Sink: per frame, milliseconds from capture (``clock_origin`` + the frame's timestamp, monotonic
    clock) to the annotated frame being ready. Put it first among the sinks, so no other sink's work
    counts. Keeps a histogram of 1 ms bins, so memory stays flat however long the stream runs. Frames the stream
    held over a silence (``Frame.held``) are counted apart: their wait is the silence's (a stream that ended gave
    p95 5000 ms, its last frames out at the read timeout).
    """

    def __init__(self, clock_origin: float):
        self.clock_origin = clock_origin
        self.counts = np.zeros(LATENCY_MAX_MS // LATENCY_BIN_MS + 1, np.int64)
        self.held = 0  # frames left out: held by the stream over a silence

    def add(self, milliseconds: float) -> None:
        """Count one frame's latency (values past a minute count as a minute)."""
        self.counts[min(max(int(milliseconds // LATENCY_BIN_MS), 0), len(self.counts) - 1)] += 1

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: the latency of one analysed frame, measured now (one held over a silence is only counted)."""
        if analyzed.frame.held:
            self.held += 1
            return
        self.add(1000 * (time.monotonic() - self.clock_origin - analyzed.frame.timestamp))

    @property
    def frames(self) -> int:
        """Frames measured."""
        return int(self.counts.sum())

    def percentile(self, percent: float) -> float:
        """The latency (ms, to the bin's upper edge) that ``percent`` % of frames were within."""
        if not self.frames:
            raise ValueError("no frames measured")
        rank = max(1, int(np.ceil(percent / 100 * self.frames)))
        return float((np.searchsorted(np.cumsum(self.counts), rank) + 1) * LATENCY_BIN_MS)

    def format(self) -> str:
        """One line: p50 and p95 latency over the frames measured."""
        held = f" ({self.held} held by the stream over a pause left out)" if self.held else ""
        return (f"latency from capture to annotated frame: p50 {self.percentile(50):.0f} ms, "
                f"p95 {self.percentile(95):.0f} ms over {self.frames} frames{held}")
