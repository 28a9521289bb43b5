"""Emotion Tracer against the `fer` package's video pipeline: whole runs on one 15 s real clip, side by side.

    python -m benchmarks.versus_fer [--fer-python /work/fer-venv/bin/python] [--rounds 3]

Builds the clip in a temporary folder: ../shared/media/test.mp4 (115 frames) played forwards, backwards,
forwards... (ping-pong, so there is no jump) to 450 frames, encoded H.264 at 30 fps (15 s) with PyAV.
Each round times, wall clock and start-up included, one subprocess of each tool (never both at once,
the order alternating between rounds):

    Emotion Tracer   python -m realtime --video CLIP --output out.mp4 --results out.csv   (defaults)
    fer              Video(CLIP).analyze(FER(mtcnn=False), display=False, save_video=True)  (fer's defaults)

fer lives in its own virtual environment (see docs/versus_fer.md). Prints each round's seconds and
frames per second, the medians and their ratio, then faces found and label changes of the first face.
Not a test: asserts nothing; exits 2 when ../shared or the fer python is missing, 1 when a run fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from benchmarks.faces import label_changes

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE_CLIP = PROJECT_ROOT.parent / "shared" / "media" / "test.mp4"
CLIP_FRAMES, CLIP_FPS = 450, 30
DEFAULT_FER_PYTHON = Path("/work/fer-venv/bin/python")
# Run by the fer python in a folder of its own: labels.json lists, for each frame where fer found a face,
# the top emotion of its face 0.
FER_SCRIPT = """
import json, sys
from fer.classes import Video
from fer.fer import FER
detector = FER(mtcnn=False)
rows = Video(sys.argv[1]).analyze(detector, display=False, save_video=True)
labels = list(detector._get_labels().values())
with open("labels.json", "w") as file:
    json.dump([max(labels, key=lambda e: row.get(e + "0", -1.0)) for row in rows], file)
"""


def build_clip(path: Path) -> None:
    """Write SOURCE_CLIP ping-ponged (forwards, backwards, ...) to CLIP_FRAMES frames, H.264 at CLIP_FPS."""
    with av.open(str(SOURCE_CLIP)) as source:
        frames = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    cycle = frames + frames[-2:0:-1]  # the turning frames once each
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=CLIP_FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for index in range(CLIP_FRAMES):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(cycle[index % len(cycle)], format="rgb24")))
        output.mux(stream.encode())


def run_timed(command: list[str], cwd: Path, log: Path) -> float:
    """Seconds one subprocess run in ``cwd`` takes, wall clock; its output goes to ``log``, shown if it fails."""
    with log.open("w") as out:
        started = time.perf_counter()
        code = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).returncode
        seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{command[0]} exited {code}:\n{log.read_text()[-2000:]}")
    return seconds


def run_tracer(clip: Path, folder: Path) -> tuple[float, int, int]:
    """Seconds, frames with a face and label changes of the first face for one Emotion Tracer run."""
    command = [sys.executable, "-m", "realtime", "--video", str(clip),
               "--output", str(folder / "out.mp4"), "--results", str(folder / "out.csv")]
    seconds = run_timed(command, PROJECT_ROOT, folder / "log.txt")
    with (folder / "out.csv").open() as file:
        rows = list(csv.DictReader(file))
    first = rows[0]["face_id"] if rows else None
    labels = [row["label"] for row in sorted(rows, key=lambda r: int(r["frame"])) if row["face_id"] == first]
    return seconds, len({row["frame"] for row in rows}), label_changes({0: labels})


def run_fer(fer_python: Path, clip: Path, folder: Path) -> tuple[float, int, int]:
    """Seconds, frames with a face and label changes of face 0 for one fer run (its outputs go in folder)."""
    seconds = run_timed([str(fer_python), "-c", FER_SCRIPT, str(clip)], folder, folder / "log.txt")
    labels = json.loads((folder / "labels.json").read_text())
    return seconds, len(labels), label_changes({0: labels})


def table_row(label: str, tracer_seconds: float, fer_seconds: float) -> str:
    """One line of the timing table: each tool's seconds and frames per second, and their ratio."""
    return (f"{label:<8}" + "".join(f"{seconds:>9.1f} s {CLIP_FRAMES / seconds:>6.1f} fps"
                                     for seconds in (tracer_seconds, fer_seconds))
            + f"{fer_seconds / tracer_seconds:>13.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus_fer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer-python", type=Path, default=DEFAULT_FER_PYTHON,
                        help=f"python of a virtual environment with fer installed (default: {DEFAULT_FER_PYTHON})")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one run of each tool (default: 3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not SOURCE_CLIP.is_file():
        print(f"error: no such video: {SOURCE_CLIP} (../shared is needed)", file=sys.stderr)
        return 2
    if not os.access(args.fer_python, os.X_OK):
        print(f"error: no fer python: {args.fer_python} (see docs/versus_fer.md to install it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as temp:
        clip = Path(temp) / "clip_15s.mp4"
        build_clip(clip)
        print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}; clip: {SOURCE_CLIP.name} "
              f"ping-ponged to {CLIP_FRAMES} frames, {CLIP_FRAMES / CLIP_FPS:.0f} s, H.264\n")
        print(f"{'round':<8}{'Emotion Tracer':>22}{'fer':>22}{'fer / Tracer':>14}")
        tracer, fer = [], []
        for round_number in range(1, args.rounds + 1):
            runs = {}
            for name in ("tracer", "fer") if round_number % 2 else ("fer", "tracer"):
                folder = Path(tempfile.mkdtemp(dir=temp))
                try:
                    runs[name] = run_fer(args.fer_python, clip, folder) if name == "fer" else run_tracer(clip, folder)
                except RuntimeError as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 1
            tracer.append(runs["tracer"])
            fer.append(runs["fer"])
            print(table_row(str(round_number), runs["tracer"][0], runs["fer"][0]), flush=True)
        medians = [statistics.median(run[0] for run in runs) for runs in (tracer, fer)]
        print(table_row("median", *medians) + "  (of the medians)")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
        print(f"{'last round':<22}{'frames with a face':>20}{'first face label changes':>26}")
        for name, (_, faces, changes) in (("Emotion Tracer", tracer[-1]), ("fer", fer[-1])):
            print(f"{name:<22}{faces:>14} / {CLIP_FRAMES}{changes:>26}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
