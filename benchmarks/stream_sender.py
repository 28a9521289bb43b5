"""Stream a video file as a live camera would: H.264 (or MPEG-2) in MPEG-TS, paced at the clip's frame rate.

    python -m benchmarks.stream_sender clip.mp4 udp://127.0.0.1:5000 --loop
    python -m benchmarks.stream_sender clip.mp4 "tcp://127.0.0.1:5000?listen=1"

A stand-in for an IP camera when there is none: the latency benchmark and the stream tests use it.
Like a camera, it never catches up on frames it could not send in time (e.g. while stopped with SIGSTOP).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from realtime.io.files import ffmpeg_file
from realtime.types import usable_fps

LATE_S = 0.5  # further behind schedule than this, sending restarts from now
STARTED_AFTER = 2  # frames out (the first, a key frame, wholly sent) when the sender says it is sending


CODECS = {"h264": ("libx264", {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}),
          "mpeg2": ("mpeg2video", {})}
NO_SCENE_CUT_KEY_FRAMES = {"h264": {"x264-params": "scenecut=0"}, "mpeg2": {"sc_threshold": "1000000000"}}


def send(clip: Path, url: str, loop: bool = False, max_frames: int | None = None, codec: str = "h264",
         keyframe_interval: int | None = None, on_started: Callable[[], None] | None = None,
         stop: threading.Event | None = None) -> int:
    """Send ``clip`` to ``url`` in real time in ``codec`` (CODECS), a key frame every ``keyframe_interval`` frames
    (default: a second's); returns the frames sent. ``on_started`` is called once the first STARTED_AFTER frames (the
    first key frame among them) are out; ``stop``, once set, ends the sending."""
    with av.open(ffmpeg_file(clip)) as source:
        stream = source.streams.video[0]
        fps = usable_fps(stream.average_rate)
        rate = Fraction(fps).limit_denominator(1001)
        width, height = stream.width, stream.height
    with av.open(url, "w", format="mpegts") as output:
        name, options = CODECS[codec]
        if keyframe_interval is not None:  # key frames at that interval only
            options = {**options, **NO_SCENE_CUT_KEY_FRAMES[codec]}
        video = output.add_stream(name, rate=rate, options={**options, "g": str(keyframe_interval or round(fps))})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sent = 0
        started = time.monotonic()
        while max_frames is None or sent < max_frames:
            with av.open(ffmpeg_file(clip)) as source:
                for frame in source.decode(video=0):
                    if (max_frames is not None and sent >= max_frames) or (stop is not None and stop.is_set()):
                        break
                    late = time.monotonic() - (started + sent / fps)
                    if late > LATE_S:  # a live source skips ahead rather than bursting old frames
                        started += late
                    time.sleep(max(0.0, -late))
                    out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
                    out.pts, out.time_base = sent, 1 / rate
                    output.mux(video.encode(out))
                    sent += 1
                    if sent == STARTED_AFTER and on_started is not None:
                        on_started()
            if (not loop and max_frames is None) or (stop is not None and stop.is_set()):
                break
        output.mux(video.encode(None))
    return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream_sender", description=__doc__.split("\n")[0])
    parser.add_argument("clip", type=Path, help="a video file")
    parser.add_argument("url", help="where to send it, e.g. udp://127.0.0.1:5000")
    parser.add_argument("--loop", action="store_true", help="start the clip again at its end, forever")
    parser.add_argument("--frames", type=int, help="stop after this many frames (the clip repeats as needed)")
    parser.add_argument("--codec", choices=sorted(CODECS), default="h264", help="the video codec (default h264)")
    parser.add_argument("--keyframe-interval", type=int, help="frames from one key frame to the next (default: "
                        "a second's)")
    args = parser.parse_args(argv)
    send(args.clip, args.url, loop=args.loop, max_frames=args.frames, codec=args.codec,
         keyframe_interval=args.keyframe_interval,
         on_started=lambda: print(f"sending {args.clip.name} to {args.url}", flush=True))


if __name__ == "__main__":
    main()
