"""Live latency benchmark (not a test): per frame, the time from capture to the annotated frame being
ready, p50 and p95, for a clip streamed live over UDP on loopback (as a network camera would send it).

    python -m benchmarks.latency                                 # ../shared/media/single_face.mp4
    python -m benchmarks.latency clip.mp4 --frames 600 --write   # also encode H.264 as --output does

"Capture" is when the receiver has decoded the frame (the camera's own encoding and the network are
not included: they cannot be timed without the camera's clock). Frames that arrive while the
previous one is being analysed are dropped, as live sources do; the table says how many.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from realtime.annotator import EmotionAnnotator
from realtime.io.stream import LatencyMeter, StreamSource
from realtime.io.video import H264VideoWriter
from realtime.pipeline import EmotionAnalyzer, process_source

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = PROJECT_ROOT.parent / "shared" / "media" / "single_face.mp4"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(clip: Path, frames: int, detector_range: str, write: bool) -> tuple[LatencyMeter, int, float]:
    """Stream ``clip`` live and analyse ``frames`` of it: the latency meter, frames dropped, frames analysed per second."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    sender = subprocess.Popen([sys.executable, "-m", "benchmarks.stream_sender", str(clip), url, "--loop"],
                              cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    try:
        with EmotionAnalyzer(detector_range=detector_range) as analyzer, StreamSource(url, open_timeout=30) as source, \
                tempfile.TemporaryDirectory() as folder:
            meter = LatencyMeter(source.clock_origin)
            sinks = [meter]
            writer = H264VideoWriter(Path(folder) / "out.mp4", source.info) if write else None
            if writer is not None:
                sinks.append(writer)
            seconds = 0.0
            last = None
            for last in process_source(source, analyzer, sinks=sinks, annotator=EmotionAnnotator(), max_frames=frames):
                seconds += last.seconds
            if writer is not None:
                writer.close()
            sent_during_run = round(last.frame.timestamp * source.info.fps) + 1
            return meter, max(0, sent_during_run - meter.frames), meter.frames / seconds
    finally:
        sender.kill()
        sender.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP, help="a video file to stream")
    parser.add_argument("--frames", type=int, default=300, help="frames to analyse (default: 300)")
    parser.add_argument("--detector", choices=("short", "full"), default="short", help="default: short (camera)")
    parser.add_argument("--write", action="store_true", help="also write annotated H.264, as --output does")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"{args.clip}: no such file")
    meter, dropped, fps = measure(args.clip, args.frames, args.detector, args.write)
    print(f"{'clip':<18}{'detector':>9}{'writing':>9}{'frames':>8}{'dropped':>9}{'frames/s':>10}{'p50 ms':>8}{'p95 ms':>8}")
    print(f"{args.clip.name:<18}{args.detector:>9}{'H.264' if args.write else 'no':>9}{meter.frames:>8}{dropped:>9}"
          f"{fps:>10.0f}{meter.percentile(50):>8.0f}{meter.percentile(95):>8.0f}")


if __name__ == "__main__":
    main()
