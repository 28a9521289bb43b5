"""Faces found, kept and labelled: measurements on ../shared (not a test; prints tables, asserts nothing).

    python -m benchmarks.faces                      # every table
    python -m benchmarks.faces photos edges         # some of them: photos groups closeups edges fer timing
                                                    # flicker reaction occlusion crossing cuts calls

photos     faces found in the ../shared photos and faceless media by each detector choice
groups     large photos whose faces are small against them (group photos, a panorama): with and without tiles
closeups   each face of the photos cropped to itself and scaled to 256x256 gray
edges      each face of the photos moved partly out of the frame (left, right, top, bottom)
fer        FER2013 PublicTest faces (48x48): found by each detector; accuracy through the command line
           with --whole-image and with the automatic whole-image fallback
timing     detector milliseconds per frame on the clips
flicker    label changes on the clips (also scaled down), the tracker settings before issue 12 and now
reaction   frames a real change (a neutral face replaced by a surprised one) takes to show
occlusion  a face blanked out for 30 frames of a clip: does it keep its id
crossing   two real faces pasted on a real background walk past each other: ids kept, swapped or new
cuts       scene cuts: how much frames differ within the clips' shots, at their cuts and between clips
calls      video-call layouts built from the clips (2x2 grid, side by side): faces found per frame, with and
           without following faces the whole-frame passes miss
gray       the photos (whole, cut, scaled) and clips in black and white: faces found in colour, in gray as the
           detector was given it before, and tinted a skin tone (now)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

import realtime.detector
from realtime.classifier import EmotionClassifier
from realtime.crops import crop_square
from realtime.demo import demo_source
from realtime.detector import DETECTOR_CHOICES, FaceDetector
from realtime.io.images import read_image
from realtime.io.video import VideoFileSource
from realtime.pipeline import EmotionAnalyzer
from realtime.scene_cuts import (
    CUT_THRESHOLD,
    RELIT_CORRELATION,
    SceneCutDetector,
    ShotChange,
    detail_correlation,
    frame_difference,
    hsv_thumbnail,
    moved_difference,
)
from realtime.tracker import FaceTracker
from realtime.types import FaceDetection

SHARED = Path(__file__).resolve().parents[2] / "shared"
MEDIA = SHARED / "media"
FER2013_TEST = SHARED / "datasets" / "fer2013" / "test"
# Faces a person points at in each photo (BWPictureHuman: one soldier, face turned and shouting).
PHOTO_FACES = {"single_face.jpg": 1, "justin.jpg": 1, "img1.jpg": 1, "img2.jpg": 1, "img5.jpg": 1, "img12.jpg": 1,
               "multi_face.jpg": 5, "couple.jpg": 2, "BWPictureHuman.jpg": 1, "no-faces.jpg": 0,
               "free-mountain-vector-01.jpg": 0}
FACE_PHOTOS = ["single_face.jpg", "justin.jpg", "img1.jpg", "img2.jpg", "img5.jpg", "img12.jpg", "couple.jpg",
               "multi_face.jpg"]
CLIPS = ["single_face.mp4", "test.mp4", "noface_face.mov"]
# The tracker as it was before issue 12: no initialisation delay, 15 frames of survival, no hysteresis.
TRACKER_BEFORE = dict(smoothing=0.6, max_missed=15, min_hits=1, label_margin=0.0)
CLOSE_UP_SIDE = 256
# Pairs of photos whose faces cross (the second is pasted over the first), and the crossings' settings.
CROSSING_FACES = [("single_face.jpg", "justin.jpg"), ("justin.jpg", "single_face.jpg"), ("img1.jpg", "justin.jpg"),
                  ("single_face.jpg", "img1.jpg")]
CROSSING_SPEEDS = (6, 10, 16, 24)  # pixels per frame
CROSSING_HEIGHTS = (0, 40)  # pixels between the two faces' heights
# A second set of crossings, for checking a change made while looking at the first: other speeds and heights,
# and other faces.
CROSSING_CHECKS = [(CROSSING_FACES, (4, 8, 13, 20), (0, 10, 30)),
                   ([("img2.jpg", "img5.jpg"), ("img12.jpg", "img2.jpg"), ("img5.jpg", "single_face.jpg")], (5, 9, 15),
                    (0, 25))]
CROSSING_SIDE = 130


def close_up(image: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0) -> np.ndarray:
    """The face at ``box`` cropped to a square (``margin``: extra share of its side) as 256x256 gray."""
    crop = crop_square(image, box, margin, 0.0)
    return cv2.cvtColor(cv2.resize(crop, (CLOSE_UP_SIDE, CLOSE_UP_SIDE), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2GRAY)


def cut_at_edge(image: np.ndarray, box: tuple[int, int, int, int], keep: float, edge: str) -> np.ndarray:
    """The image cut so that only ``keep`` of the face at ``box`` is left, the rest beyond ``edge``
    ("left", "right", "top" or "bottom"), as if the face had moved out of the frame."""
    x1, y1, x2, y2 = box
    if edge == "left":
        cut = image[:, int(round(x2 - keep * (x2 - x1))):]
    elif edge == "right":
        cut = image[:, :int(round(x1 + keep * (x2 - x1)))]
    elif edge == "top":
        cut = image[int(round(y2 - keep * (y2 - y1))):]
    elif edge == "bottom":
        cut = image[:int(round(y1 + keep * (y2 - y1)))]
    else:
        raise ValueError(f"edge must be left, right, top or bottom, got {edge!r}")
    return np.ascontiguousarray(cut)


def label_changes(labels_by_face: dict[int, list[str]]) -> int:
    """How often the label of a face differs from its label in the face's previous result."""
    return sum(sum(a != b for a, b in zip(labels, labels[1:])) for labels in labels_by_face.values())


def replay(tracker: FaceTracker, frames: list[tuple[list[FaceDetection], np.ndarray]],
           fps: float | None = None) -> dict[int, list[str]]:
    """Feed per-frame detections and raw probabilities to ``tracker`` (timed at ``fps``, or 30 frames/s);
    each face id's labels in order."""
    labels: dict[int, list[str]] = {}
    for index, (detections, probabilities) in enumerate(frames):
        for face in tracker.update(detections, probabilities, index / fps if fps else None):
            labels.setdefault(face.face_id, []).append(face.label)
    return labels


def clip_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of a clip and its frame rate."""
    with VideoFileSource(path) as source:
        return [frame.image for frame in source], source.info.fps


def raw_results(frames: list[np.ndarray], detector: FaceDetector,
                classifier: EmotionClassifier) -> list[tuple[list[FaceDetection], np.ndarray]]:
    """Each frame's detections and unsmoothed probabilities."""
    detector.reset()
    results = []
    for image in frames:
        detections = detector.detect(image, follow=True)  # a video's frames, as the runtime sees them
        results.append((detections, classifier.infer(image, [face.box for face in detections])))
    return results


def print_table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    print(flush=True)


def count_faces(detector: FaceDetector, image: np.ndarray, tiles: bool = False) -> int:
    """Detected faces in a photo (a whole-image fallback is not a detection)."""
    detector.reset()
    return sum(face.score is not None for face in detector.detect(image, tiles=tiles))


def group_photos() -> dict[str, tuple[np.ndarray, int]]:
    """Large photos whose faces are small against them, and how many faces each holds: multi_face.jpg (five
    faces of 70-100 px) in the middle of a wider scene (free-mountain-vector-01.jpg scaled around it), 2x2 to 4x4 copies of it
    side by side (a class photo), twice its size in a 12-megapixel scene, and justin.jpg's face in a 17000x800
    panorama."""
    group, scene = read_image(MEDIA / "multi_face.jpg"), read_image(MEDIA / "free-mountain-vector-01.jpg")

    def placed(image: np.ndarray, width: int, height: int) -> np.ndarray:
        canvas = cv2.resize(scene, (width, height), interpolation=cv2.INTER_CUBIC)
        top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
        canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
        return canvas

    photos = {f"multi_face.jpg in a scene {scale}x as wide": (
        placed(group, int(group.shape[1] * scale), int(group.shape[0] * scale)), 5) for scale in (1.5, 2, 3)}
    photos.update({f"{n}x{n} copies of multi_face.jpg": (np.vstack([np.hstack([group] * n)] * n), 5 * n * n)
                   for n in (2, 3, 4)})
    photos["multi_face.jpg twice as large in a 4000x3000 scene"] = (
        placed(cv2.resize(group, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), 4000, 3000), 5)
    panorama = np.full((800, 17000, 3), 180, np.uint8)
    face = read_image(MEDIA / "justin.jpg")
    panorama[100:100 + face.shape[0], 8000:8000 + face.shape[1]] = face
    photos["justin.jpg in a 17000x800 panorama"] = (panorama, 1)
    return photos


def table_groups() -> None:
    print("## Faces found in large photos whose faces are small against them (detector auto, min_confidence "
          "0.7), without and with tiles (photos get tiles)\n")
    rows = []
    with FaceDetector("auto") as detector:
        for name, (image, expected) in group_photos().items():
            row = [name, f"{image.shape[1]}x{image.shape[0]}", expected]
            for tiles in (False, True):
                started = time.perf_counter()
                row.append(count_faces(detector, image, tiles))
                row.append(f"{1000 * (time.perf_counter() - started):.0f}")
            rows.append(row)
    print_table(["photo", "size", "faces", "no tiles", "ms", "tiles", "ms"], rows)


def table_photos(detectors: dict[str, FaceDetector]) -> None:
    print("## Faces found in the ../shared photos (min_confidence 0.7)\n")
    rows = []
    for name, expected in PHOTO_FACES.items():
        image = read_image(MEDIA / name)
        rows.append([name, f"{image.shape[1]}x{image.shape[0]}", expected,
                     *(count_faces(detector, image) for detector in detectors.values())])
    for row, image in zip(rows, (read_image(MEDIA / name) for name in PHOTO_FACES)):
        row.append(count_faces(detectors["auto"], image, tiles=True))
    print_table(["photo", "size", "a person sees", *detectors, "auto, tiles"], rows)
    rows = []
    for clip in ("no_face.mp4", "noface_face.mov"):
        frames, _ = clip_frames(MEDIA / clip)
        row = [clip, len(frames)]
        for detector in detectors.values():
            detector.reset()
            counts = [sum(face.score is not None for face in detector.detect(image, follow=True)) for image in frames]
            row.append(f"{sum(c > 0 for c in counts)} ({max(counts)} at most)")
        rows.append(row)
    print("Frames with faces found in the clips (no_face.mp4 has none; noface_face.mov has one face in its "
          "last 72 frames)\n")
    print_table(["clip", "frames", *detectors], rows)


def photo_faces() -> list[tuple[str, np.ndarray, tuple[int, int, int, int]]]:
    """(photo name, photo, face box) for every face the full-range model finds in the face photos."""
    faces = []
    with FaceDetector("full") as detector:
        for name in FACE_PHOTOS:
            image = read_image(MEDIA / name)
            faces.extend((name, image, face.box) for face in detector.detect(image))
    return faces


def table_closeups(detectors: dict[str, FaceDetector]) -> None:
    faces = photo_faces()
    print(f"## Close-ups: the {len(faces)} faces of the photos, each cropped to a square around its box "
          f"(plus a margin) and scaled to {CLOSE_UP_SIDE}x{CLOSE_UP_SIDE} gray: close-ups found\n")
    rows = []
    for margin in (0.0, 0.2, 0.5):
        images = [close_up(image, box, margin) for _, image, box in faces]
        rows.append([f"{margin:.0%}", *(f"{sum(count_faces(d, im) > 0 for im in images)} of {len(images)}"
                                        for d in detectors.values())])
    print_table(["margin", *detectors], rows)


def table_edges(detectors: dict[str, FaceDetector]) -> None:
    faces = photo_faces()
    edges = ("left", "right", "top", "bottom")
    print(f"## Faces cut by the frame's edge: each of the {len(faces)} faces of the photos moved out of the "
          f"frame over each of the 4 edges until only a share of its box is left; faces found\n")
    rows = []
    for keep in (0.3, 0.4, 0.5, 0.6, 0.75):
        images = [cut_at_edge(image, box, keep, edge) for _, image, box in faces for edge in edges]
        rows.append([f"{keep:.0%}", *(f"{sum(count_faces(d, im) > 0 for im in images)} of {len(images)}"
                                      for d in detectors.values())])
    print_table(["face left in the frame", *detectors], rows)


def run_cli(arguments: list[str]) -> None:
    """``python -m realtime`` in this process, its summary swallowed."""
    from realtime.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(arguments)
    if code != 0:
        raise RuntimeError(f"python -m realtime {' '.join(arguments)} exited with {code}")


def cli_accuracy(folder: Path, arguments: list[str]) -> tuple[float, int, int]:
    """(accuracy, faces with a detection score, rows) of ``python -m realtime`` on every class folder."""
    correct = rows = detected = 0
    with tempfile.TemporaryDirectory() as scratch:
        for class_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
            results = Path(scratch) / f"{class_folder.name}.csv"
            run_cli([str(class_folder), "--results", str(results), *arguments])
            with open(results, newline="") as file:
                for row in csv.DictReader(file):
                    rows += 1
                    correct += row["label"] == class_folder.name
                    detected += row["detection_score"] != ""
    return correct / rows, detected, rows


def table_fer(detectors: dict[str, FaceDetector], per_class: int | None) -> None:
    files = {c.name: sorted(c.glob("*.jpg"))[:per_class] for c in sorted(FER2013_TEST.iterdir()) if c.is_dir()}
    total = sum(len(paths) for paths in files.values())
    print(f"## FER2013 PublicTest faces (48x48 gray, {total} images): faces detected\n")
    rows = []
    for name, detector in detectors.items():
        found = sum(count_faces(detector, read_image(path)) > 0 for paths in files.values() for path in paths)
        rows.append([name, f"{found} of {total} ({found / total:.1%})"])
    print_table(["detector", "faces detected"], rows)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, paths in files.items():  # the command line gets a folder per class with the sample
            (folder / name).mkdir()
            for path in paths:
                shutil.copy(path, folder / name / path.name)
        print(f"Accuracy of `python -m realtime <class folder> --results x.csv ...` over the {total} faces "
              f"(label == folder)\n")
        rows = []
        for arguments in (["--whole-image", "--no-flip-tta"], ["--whole-image"], ["--no-flip-tta"], []):
            accuracy, detected, count = cli_accuracy(folder, arguments)
            rows.append([" ".join(arguments) or "(defaults)", f"{accuracy:.1%}", count, detected])
        print_table(["options", "accuracy", "faces", "of them detected (the rest taken whole)"], rows)


def table_timing(repeat: int = 3) -> None:
    print(f"## Detector cost, milliseconds per frame (best of {repeat})\n")
    rows = []
    for clip in CLIPS + ["no_face.mp4"]:
        frames, _ = clip_frames(MEDIA / clip)
        row = [clip, f"{frames[0].shape[1]}x{frames[0].shape[0]}"]
        for choice in DETECTOR_CHOICES:
            with FaceDetector(choice) as detector:
                best = float("inf")
                for _ in range(repeat):
                    detector.reset()
                    started = time.perf_counter()
                    for image in frames:
                        detector.detect(image, follow=True)
                    best = min(best, (time.perf_counter() - started) / len(frames) * 1000)
            row.append(f"{best:.2f}")
        rows.append(row)
    print_table(["clip", "size", *DETECTOR_CHOICES], rows)


def tracker_settings() -> dict[str, dict]:
    return {"before (smoothing 0.6, no hysteresis)": TRACKER_BEFORE,
            "smoothing 0.6, margin 0.10": dict(label_margin=0.10),
            "now: smoothing 0.6, margin 0.15": {},
            "smoothing 0.6, margin 0.25": dict(label_margin=0.25),
            "smoothing 0.8, no hysteresis": dict(smoothing=0.8, label_margin=0.0)}


def table_flicker(classifier: EmotionClassifier, scales: tuple[float, ...] = (1.0, 0.5, 0.25)) -> None:
    print("## Label changes on the clips, as they are and scaled down (smaller, noisier faces); "
          "detector auto, shipped model with flip averaging\n")
    recorded = []
    with FaceDetector("auto") as detector:
        for clip in CLIPS:
            frames, fps = clip_frames(MEDIA / clip)
            for scale in scales:
                scaled = frames if scale == 1 else [cv2.resize(image, None, fx=scale, fy=scale,
                                                               interpolation=cv2.INTER_AREA) for image in frames]
                name = clip if scale == 1 else f"{clip} x{scale:g}"
                recorded.append((name, raw_results(scaled, detector, classifier), fps))
    rows = []
    for name, settings in tracker_settings().items():
        row, changes_all, minutes_all = [name], 0, 0.0
        for _clip, results, fps in recorded:
            labels = replay(FaceTracker(classifier.classes, **settings), results, fps)
            changes = label_changes(labels)
            minutes = sum(len(face_labels) for face_labels in labels.values()) / fps / 60
            row.append(str(changes))
            changes_all, minutes_all = changes_all + changes, minutes_all + minutes
        rows.append([*row, f"{changes_all / minutes_all:.0f}"])
    print_table(["tracker", *(clip for clip, _, _ in recorded), "per minute, all"], rows)


def change_sequences(classifier: EmotionClassifier, pairs: int, frames_each: int = 30,
                     seed: int = 0) -> list[list[np.ndarray]]:
    """Per pair, per-frame probabilities of a neutral FER2013 face followed by a surprised one.

    Each face (one the model labels right) is upscaled to 144x144 and classified in every frame from a box
    moved and resized by a few pixels, as a detector's box jitters on a still face.
    """
    rng = np.random.default_rng(seed)

    def recognised(folder: str) -> list[np.ndarray]:
        faces = []
        for path in sorted((FER2013_TEST / folder).glob("*.jpg")):
            image = cv2.resize(read_image(path), (144, 144), interpolation=cv2.INTER_CUBIC)
            if classifier.classes[int(np.argmax(classifier.infer(image, [(24, 30, 120, 126)])[0]))] == folder:
                faces.append(image)
            if len(faces) == pairs:
                return faces
        return faces

    def jittered(image: np.ndarray) -> np.ndarray:
        boxes = []
        for _ in range(frames_each):
            dx, dy, grow = rng.integers(-4, 5), rng.integers(-4, 5), rng.integers(-4, 5)
            boxes.append((24 + dx - grow, 30 + dy - grow, 120 + dx + grow, 126 + dy + grow))
        return list(classifier.infer(image, boxes))

    return [jittered(neutral) + jittered(surprise)
            for neutral, surprise in zip(recognised("neutral"), recognised("surprise"))]


def reaction_frames(tracker: FaceTracker, sequence: list[np.ndarray], change_at: int) -> int | None:
    """Frames after ``change_at`` until the label is "surprise" and stays so; None if it never settles."""
    box = (24, 30, 120, 126)
    labels = [tracker.update([FaceDetection(box, 0.9)], probabilities[None])[0].label for probabilities in sequence]
    for index in range(change_at, len(labels)):
        if all(label == "surprise" for label in labels[index:]):
            return index - change_at + 1
    return None


def table_reaction(classifier: EmotionClassifier, pairs: int = 20) -> None:
    sequences = change_sequences(classifier, pairs)
    print(f"## Reaction to a real change: {len(sequences)} neutral FER2013 faces, each followed by a surprised "
          f"one (30 jittered frames each); frames until the label shows surprise for good\n")
    rows = []
    for name, settings in tracker_settings().items():
        frames = [reaction_frames(FaceTracker(classifier.classes, **settings), sequence, 30)
                  for sequence in sequences]
        settled = [f for f in frames if f is not None]
        flips_before = sum(label_changes(replay(FaceTracker(classifier.classes, **settings),
                                                [([FaceDetection((24, 30, 120, 126), 0.9)], p[None])
                                                 for p in sequence[:30]])) for sequence in sequences)
        rows.append([name, f"{np.mean(settled):.1f}", max(settled), len(frames) - len(settled), flips_before])
    print_table(["tracker", "mean frames", "most", "never settled", "label changes on the neutral parts"], rows)


def table_occlusion() -> None:
    frames, fps = clip_frames(MEDIA / "single_face.mp4")
    with FaceDetector("auto") as detector:
        (face,) = detector.detect(frames[20])
        x1, y1, x2, y2 = face.box
        hidden = [image.copy() for image in frames]
        for image in hidden[20:50]:  # 30 frames: the face is covered
            image[max(0, y1 - 20):y2 + 20, max(0, x1 - 20):x2 + 20] = 0
        recorded = [(detector.detect(image, follow=True), None) for image in hidden]
    print(f"## single_face.mp4 with the face blanked in frames 20-49 (30 frames, {30 / fps:.1f} s)\n")
    rows = []
    for name, settings in {"before": TRACKER_BEFORE, "now": {}}.items():
        tracker = FaceTracker(["x"], **settings)
        ids = [[r.face_id for r in tracker.update(d, np.ones((len(d), 1), np.float32))] for d, _ in recorded]
        rows.append([name, sorted({i for frame_ids in ids[:20] for i in frame_ids}),
                     sorted({i for frame_ids in ids[50:] for i in frame_ids})])
    print_table(["tracker", "ids before", "ids after"], rows)


def pan_frames(photo: np.ndarray, frames: int, width: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A slow pan and zoom (to 1.15) across ``photo``, ``width`` px wide, with camera noise."""
    height, photo_width = photo.shape[0], photo.shape[1]
    pan = []
    for index in range(frames):
        zoom = 1.0 + 0.15 * index / frames
        crop_width, crop_height = photo_width / zoom, height / zoom
        left, top, scale = (photo_width - crop_width) * index / frames, (height - crop_height) / 2, width / crop_width
        image = cv2.warpAffine(photo, np.float32([[scale, 0, -left * scale], [0, scale, -top * scale]]),
                               (width, round(height * width / photo_width)))
        pan.append(np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8))
    return pan


def table_boxes() -> None:
    """Box sizes of the faces of a group video: the pan over multi_face.jpg, encoded as H.264 and streamed as a
    video file is (detector auto, tracking), at three widths."""
    print("## Box sizes in a group video: a 90-frame pan and zoom over multi_face.jpg (5 faces), H.264; jumps of a "
          "face's box side by more than 25% from one frame to the next\n")
    rng, rows = np.random.default_rng(0), []
    photo = read_image(MEDIA / "multi_face.jpg")
    with tempfile.TemporaryDirectory() as scratch, EmotionAnalyzer() as analyzer:
        for width in (640, 1000, 1920):
            path = Path(scratch) / f"pan{width}.mp4"
            frames = pan_frames(photo, 90, width, rng)
            with av.open(str(path), "w") as container:  # as a camera's encoder would (B-frames, long GOP)
                stream = container.add_stream("libx264", rate=30)
                stream.width, stream.height, stream.pix_fmt = width, frames[0].shape[0] // 2 * 2, "yuv420p"
                for image in frames:
                    picture = av.VideoFrame.from_ndarray(image[:stream.height], format="bgr24")
                    container.mux(stream.encode(picture))
                container.mux(stream.encode(None))
            sides: dict[int, list[tuple[int, int]]] = {}
            for result in analyzer.stream(path):
                for face in result.faces:
                    sides.setdefault(face.face_id, []).append((result.index, face.box.x2 - face.box.x1))
            jumps = sum(later == earlier + 1 and max(a, b) > 1.25 * min(a, b)
                        for track in sides.values() for (earlier, a), (later, b) in zip(track, track[1:]))
            rows.append([f"{width}x{frames[0].shape[0]}", len(sides), sum(map(len, sides.values())), jumps])
    print_table(["frame size", "face ids", "face rows", "box jumps over 25%"], rows)
    print()


def face_patch(detector: FaceDetector, name: str) -> np.ndarray:
    """The face of a shared photo with a margin around it, as a CROSSING_SIDE square."""
    image = read_image(MEDIA / name)
    detector.reset()
    x1, y1, x2, y2 = detector.detect(image)[0].box
    margin = int(0.35 * (x2 - x1))
    crop = image[max(0, y1 - margin):y2 + margin, max(0, x1 - margin):x2 + margin]
    return cv2.resize(crop, (CROSSING_SIDE, CROSSING_SIDE), interpolation=cv2.INTER_AREA)


def crossing_frames(detector: FaceDetector, behind: str, in_front: str, speed: int,
                    height: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Frames (640x360, no_face.mp4's first frame behind) of the face of photo ``behind`` walking right and
    that of ``in_front`` walking left over it, ``speed`` pixels a frame, ``height`` pixels lower; and each
    frame's true x centres of the two faces."""
    with VideoFileSource(MEDIA / "no_face.mp4") as source:
        background = cv2.resize(next(iter(source)).image, (640, 360), interpolation=cv2.INTER_AREA)
    patches = [face_patch(detector, behind), face_patch(detector, in_front)]
    frames, centres = [], []
    for step in range(480 // speed + 1):
        xs, ys = (20 + speed * step, 500 - speed * step), (90, 90 + height)
        image = background.copy()
        for patch, x, y in zip(patches, xs, ys):
            image[y:y + CROSSING_SIDE, x:x + CROSSING_SIDE] = patch
        frames.append(image)
        centres.append((xs[0] + CROSSING_SIDE // 2, xs[1] + CROSSING_SIDE // 2))
    return frames, centres


def crossing_outcome(tracker: FaceTracker, detections: list[list[FaceDetection]],
                     centres: list[tuple[int, int]]) -> str:
    """"kept" when each face keeps one id of its own throughout, "swapped" when an id passes from one
    face to the other, else "new id" (a face hidden while they cross came back as a new face)."""
    ids: tuple[set[int], set[int]] = (set(), set())
    for frame_detections, frame_centres in zip(detections, centres):
        for face in tracker.update(frame_detections, np.ones((len(frame_detections), 1), np.float32)):
            distances = [abs((face.box[0] + face.box[2]) / 2 - centre) for centre in frame_centres]
            nearest = int(np.argmin(distances))
            if distances[nearest] < 30 <= distances[1 - nearest]:  # unambiguous: not where the two overlap
                ids[nearest].add(face.face_id)
    if ids[0] & ids[1]:
        return "swapped"
    return "kept" if len(ids[0]) == len(ids[1]) == 1 else "new id"


def crossing_outcomes(detector: FaceDetector, pairs: list[tuple[str, str]], speeds: tuple[int, ...],
                      heights: tuple[int, ...]) -> dict[tuple[str, str], list[str]]:
    """Each pair's crossing outcomes with the default tracker, speeds by heights."""
    outcomes = {}
    for behind, in_front in pairs:
        outcomes[behind, in_front] = []
        for speed in speeds:
            for height in heights:
                frames, centres = crossing_frames(detector, behind, in_front, speed, height)
                detector.reset()
                outcomes[behind, in_front].append(
                    crossing_outcome(FaceTracker(["x"]), [detector.detect(image, follow=True) for image in frames],
                                     centres))
    return outcomes


def outcome_counts(outcomes: list[str]) -> str:
    return ", ".join(f"{outcomes.count(outcome)} {outcome}" for outcome in ("kept", "swapped", "new id"))


def table_crossing() -> None:
    print(f"## Two faces crossing: {len(CROSSING_FACES)} pairs of photo faces ({CROSSING_SIDE} px), one walking "
          f"over the other at {', '.join(map(str, CROSSING_SPEEDS))} px a frame, at the same height or "
          f"{CROSSING_HEIGHTS[-1]} px apart; detector auto, default tracker\n")
    with FaceDetector("auto") as detector:
        outcomes = crossing_outcomes(detector, CROSSING_FACES, CROSSING_SPEEDS, CROSSING_HEIGHTS)
        print_table(["faces", *(f"{speed} px, {height} px" for speed in CROSSING_SPEEDS for height in CROSSING_HEIGHTS)],
                    [[f"{in_front} over {behind}", *row] for (behind, in_front), row in outcomes.items()])
        print(outcome_counts([outcome for row in outcomes.values() for outcome in row]) + "\n")
        rows = []
        for pairs, speeds, heights in CROSSING_CHECKS:
            checked = [o for row in crossing_outcomes(detector, pairs, speeds, heights).values() for o in row]
            rows.append([", ".join(f"{in_front} over {behind}" for behind, in_front in pairs),
                         ", ".join(map(str, speeds)), ", ".join(map(str, heights)), outcome_counts(checked)])
    print("More crossings, to check a change against: other speeds and heights, other faces\n")
    print_table(["faces", "px a frame", "px apart", "outcomes"], rows)
    print()


def table_cuts() -> None:
    print(f"## Frame differences (mean absolute HSV difference of 64x36 thumbnails; a cut above "
          f"{CUT_THRESHOLD:g}, unless their brightness correlates {RELIT_CORRELATION:g} or more)\n")
    first_and_last, rows, seconds, count, flashes = {}, [], 0.0, 0, []
    for clip in [*CLIPS, "no_face.mp4", "demo"]:
        if clip == "demo":
            with demo_source() as source:
                frames = [frame.image for frame in source]
        else:
            frames, _ = clip_frames(MEDIA / clip)
        started = time.perf_counter()
        thumbnails = [hsv_thumbnail(image) for image in frames]
        seconds, count = seconds + time.perf_counter() - started, count + len(frames)
        differences = [frame_difference(a, b) for a, b in zip(thumbnails, thumbnails[1:])]
        detector = SceneCutDetector()
        cuts = [index for index, image in enumerate(frames) if detector.shot_change(image) is ShotChange.NEW]
        within = [d for index, d in enumerate(differences) if index + 1 not in cuts]
        rows.append([clip, len(frames), f"{max(within):.1f}", ", ".join(f"frame {c}: {differences[c - 1]:.1f}"
                                                                        for c in cuts) or "none"])
        first_and_last[clip] = (frames[0], frames[-1])
        for name, light in FLASHES.items():  # frame 30 lit by a flash: the same picture, no cut
            detector = SceneCutDetector()
            lit = [light(image) if index == 30 else image for index, image in enumerate(frames[:40])]
            flashes.append((clip, name, [detector.shot_change(image) for image in lit][30] is ShotChange.NEW))
    print_table(["clip", "frames", "most within a shot", "cuts found"], rows)
    pairs = [(first_and_last[a][1], cv2.resize(first_and_last[b][0], first_and_last[a][1].shape[1::-1]))
             for a in first_and_last for b in first_and_last if a != b]
    between = [frame_difference(hsv_thumbnail(last), hsv_thumbnail(first)) for last, first in pairs]
    joins_cut = 0
    for last, first in pairs:
        detector = SceneCutDetector()
        joins_cut += [detector.shot_change(image) for image in (last, first)][1] is ShotChange.NEW
    print(f"Last frame of one clip against the first of another: {min(between):.1f} to {max(between):.1f} "
          f"({len(between)} pairs, {joins_cut} taken for cuts); a frame's thumbnail takes "
          f"{1000 * seconds / count:.2f} ms\n")
    print_table(["flash on frame 30", "taken for a cut"],
                [[name, f"{sum(cut for _, kind, cut in flashes if kind == name)} of {len(CLIPS) + 2} clips"]
                 for name in FLASHES])
    print()
    table_shaken()
    table_relit()


def table_shaken() -> None:
    """Each shared clip at 640x360 with every frame moved at random (a handheld camera's jolts): frames taken for
    cuts."""
    clips = {name: [cv2.resize(image, (640, 360)) for image in clip_frames(MEDIA / name)[0]]
             for name in [*CLIPS, "no_face.mp4"]}
    rows = []
    for most in SHAKES:
        rng, cuts, frames = np.random.default_rng(0), 0, 0
        for images in clips.values():
            detector = SceneCutDetector()
            for image in images:
                shift = np.float32([[1, 0, rng.integers(-most, most + 1)], [0, 1, rng.integers(-most, most + 1)]])
                moved = cv2.warpAffine(image, shift, (640, 360), borderMode=cv2.BORDER_REFLECT)
                cuts += detector.shot_change(moved) is ShotChange.NEW
                frames += 1
        rows.append([f"up to {most} px each way", f"{cuts} of {frames}"])
    print_table(["frames of the clips moved (640x360)", "taken for cuts"], rows)
    print()


def table_relit() -> None:
    """Every 8th frame of each shared clip (at 640x360) against every 8th of each other clip, framed alike in
    several ways, and against itself lit by each flash: of the pairs that differ as cuts do, how many pass for
    the same picture relit (no cut)."""
    clips = {name: [cv2.resize(image, (640, 360)) for image in clip_frames(MEDIA / name)[0][::8]]
             for name in [*CLIPS, "no_face.mp4"]}
    rows = []
    for framing, framed in FRAMINGS.items():
        thumbnails = {name: [hsv_thumbnail(framed(image)) for image in images] for name, images in clips.items()}
        pairs = [(a, b) for one, other in itertools.permutations(thumbnails, 2)
                 for a in thumbnails[one] for b in thumbnails[other] if frame_difference(a, b) > CUT_THRESHOLD]
        relit = sum(detail_correlation(a, b) >= RELIT_CORRELATION for a, b in pairs)
        moved = sum(moved_difference(a, b) <= CUT_THRESHOLD for a, b in pairs)
        rows.append([f"another clip's frame, {framing}", f"{relit} of {len(pairs)}", f"{moved} of {len(pairs)}"])
    for name, light in FLASHES.items():
        pairs = [(hsv_thumbnail(image), hsv_thumbnail(light(image))) for images in clips.values() for image in images]
        pairs = [(a, b) for a, b in pairs if frame_difference(a, b) > CUT_THRESHOLD]
        relit = sum(detail_correlation(a, b) >= RELIT_CORRELATION for a, b in pairs)
        rows.append([f"the same frame lit: {name}", f"{relit} of {len(pairs)}", ""])
    print_table(["pairs of frames that differ as cuts do", "taken for one picture relit (no cut)",
                 "taken for one picture moved (no cut)"], rows)
    print()


def _vignetted(image: np.ndarray, strength: float = 0.8) -> np.ndarray:
    """``image`` darkened towards its corners, as a strong vignette does."""
    height, width = image.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width]
    radius = ((columns - width / 2) / (width / 2)) ** 2 + ((rows - height / 2) / (height / 2)) ** 2
    return (image * np.clip(1 - strength * radius, 0, 1)[..., None]).astype(np.uint8)


def _boxed(image: np.ndarray, top: float = 0.0, side: float = 0.0) -> np.ndarray:
    """``image`` with black bars over ``top`` of its height at top and bottom, ``side`` of its width at each side."""
    boxed, (height, width) = image.copy(), image.shape[:2]
    rows, columns = round(height * top), round(width * side)
    boxed[:rows], boxed[height - rows:], boxed[:, :columns], boxed[:, width - columns:] = 0, 0, 0, 0
    return boxed


SHAKES = (15, 30, 45, 60)  # most pixels a frame is moved each way, at 640x360
FRAMINGS = {"as it is": lambda image: image, "letterboxed 2.39:1": lambda image: _boxed(image, top=0.128),
            "letterboxed 1.85:1": lambda image: _boxed(image, top=0.0625),
            "pillarboxed 4:3": lambda image: _boxed(image, side=0.125), "vignetted": _vignetted}


# A camera's flash, as it lights a frame: most of the way to white; brighter with its highlights burnt out; a
# white frame in an edit
FLASHES = {"70% white": lambda image: cv2.addWeighted(image, 0.3, np.full_like(image, 255), 0.7, 0),
           "x1.5 + 60": lambda image: cv2.convertScaleAbs(image, alpha=1.5, beta=60),
           "x2 + 100": lambda image: cv2.convertScaleAbs(image, alpha=2.0, beta=100),
           "all white": lambda image: np.full_like(image, 255)}


TABLES = ("photos", "groups", "closeups", "edges", "fer", "timing", "flicker", "reaction", "occlusion", "crossing", "cuts",
          "calls", "boxes", "gray")


def call_layouts(frames: int = 40) -> dict[str, tuple[list[np.ndarray], int]]:
    """Video-call layouts of ``frames`` frames built from test.mp4 and single_face.mp4, and how many faces each
    frame holds: a 2x2 grid of 640x360 cells (1280x720; the bottom row plays the clips backwards), the two side by
    side (1280x360), and a 4x4 grid of 320x180 cells (1280x720; the clips alternate, each cell 7 frames on from the
    one before)."""
    first, second = ([cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA) for image in clip_frames(MEDIA / name)[0]]
                     for name in ("test.mp4", "single_face.mp4"))
    grid = [np.vstack([np.hstack([first[i], second[i]]), np.hstack([second[-1 - i], first[-1 - i]])])
            for i in range(frames)]

    def small_cell(index: int, cell: int) -> np.ndarray:
        clip = first if cell % 2 == cell // 4 % 2 else second
        return cv2.resize(clip[(index + 7 * cell) % len(clip)], (320, 180), interpolation=cv2.INTER_AREA)

    grid16 = [np.vstack([np.hstack([small_cell(i, 4 * row + column) for column in range(4)]) for row in range(4)])
              for i in range(frames)]
    return {"2x2 grid, 1280x720": (grid, 4),
            "side by side, 1280x360": ([np.hstack([first[i], second[i]]) for i in range(frames)], 2),
            "4x4 grid, 1280x720": (grid16, 16)}


def table_calls() -> None:
    print("## Video calls: the faces of test.mp4 and single_face.mp4 in cells of a larger frame (40 frames), detector "
          "auto: face detections (of all the faces there) and milliseconds per frame\n")
    rows = []
    with FaceDetector("auto") as detector:
        for name, (frames, faces) in call_layouts().items():
            row = [name]
            for follow in (False, True):
                detector.reset()
                started = time.perf_counter()
                found = [len(detector.detect(image, whole_image_fallback=False, follow=follow)) for image in frames]
                seconds = (time.perf_counter() - started) / len(frames)
                row += [f"{sum(found)} of {faces * len(frames)}", f"{seconds * 1000:.1f}"]
            rows.append(row)
    print_table(["layout", "whole frame", "ms", "and followed (now)", "ms"], rows)


@contextlib.contextmanager
def gray_untinted():
    """The detector given gray pictures as they are, as before they were tinted a skin tone."""
    tinted = realtime.detector.skin_toned_if_gray
    realtime.detector.skin_toned_if_gray = lambda rgb: rgb
    try:
        yield
    finally:
        realtime.detector.skin_toned_if_gray = tinted


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def table_gray() -> None:
    print("## Black-and-white pictures: faces found (detector auto) in colour, in gray as it was, and tinted (now)\n")
    rows = []
    with FaceDetector("auto") as detector:
        for name in [*FACE_PHOTOS, "no-faces.jpg", "free-mountain-vector-01.jpg"]:
            image = read_image(MEDIA / name)
            height = image.shape[0]
            variants = [image, *(image[:round(height * share)] for share in (0.6, 0.75, 0.9)),
                        *(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                          for scale in (0.5, 0.35))]
            colour = sum(count_faces(detector, variant, tiles=True) for variant in variants)
            with gray_untinted():
                before = sum(count_faces(detector, gray(variant), tiles=True) for variant in variants)
            now = sum(count_faces(detector, gray(variant), tiles=True) for variant in variants)
            rows.append([f"{name} (whole, top 60/75/90%, scaled 0.5/0.35)", colour, before, now])
        for clip in CLIPS + ["no_face.mp4"]:
            frames = clip_frames(MEDIA / clip)[0][::3]
            counts = []
            for picture, untinted in ((lambda image: image, False), (gray, True), (gray, False)):
                with gray_untinted() if untinted else contextlib.nullcontext():
                    detector.reset()
                    counts.append(sum(len(detector.detect(picture(image), whole_image_fallback=False, follow=True))
                                      for image in frames))
            rows.append([f"{clip} (every 3rd frame: {len(frames)})", *counts])
    print_table(["picture", "colour", "gray, before", "gray, tinted (now)"], rows)
    totals = [sum(row[column] for row in rows) for column in (1, 2, 3)]
    print(f"All: {totals[0]} in colour, {totals[1]} in gray before, {totals[2]} in gray now\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="*", metavar="TABLE",
                        help=f"tables to print: {', '.join(TABLES)} (default: all)")
    parser.add_argument("--fer-per-class", type=int, metavar="N",
                        help="first N FER2013 PublicTest faces per class (default: all 3,589)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tables) - set(TABLES))
    if unknown:
        parser.error(f"no such table: {', '.join(unknown)} (choose from {', '.join(TABLES)})")
    if not MEDIA.is_dir() or not FER2013_TEST.is_dir():
        print(f"error: needs {MEDIA} and {FER2013_TEST}", file=sys.stderr)
        return 2
    tables = args.tables or TABLES
    detectors = {choice: FaceDetector(choice) for choice in DETECTOR_CHOICES}
    classifier = EmotionClassifier(threads=1, flip_tta=True)
    for table in tables:
        if table == "photos":
            table_photos(detectors)
        elif table == "groups":
            table_groups()
        elif table == "closeups":
            table_closeups(detectors)
        elif table == "edges":
            table_edges(detectors)
        elif table == "fer":
            table_fer(detectors, args.fer_per_class)
        elif table == "timing":
            table_timing()
        elif table == "flicker":
            table_flicker(classifier)
        elif table == "reaction":
            table_reaction(classifier)
        elif table == "occlusion":
            table_occlusion()
        elif table == "crossing":
            table_crossing()
        elif table == "cuts":
            table_cuts()
        elif table == "calls":
            table_calls()
        elif table == "boxes":
            table_boxes()
        elif table == "gray":
            table_gray()
    return 0


if __name__ == "__main__":
    sys.exit(main())
