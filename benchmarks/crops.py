"""How the runtime's face crop should be cut: measured on training's validation faces (not a test; prints tables).

    python -m benchmarks.crops [--side PIXELS] [--limit N] [--model PATH]

The faces are FER2013 train/ faces that training held out for validation (its default split), so the
choices made here never look at PublicTest. Each 48x48 face is upscaled (bicubic) to 160x160 (--side),
optionally tilted, and goes through the runtime's detector ("auto", every pass, as for a photo); the best face found
is cropped and classified by the shipped model (or --model), without flip averaging.

margin    crop margin (``realtime.crops.CROP_MARGIN``): accuracy on the faces found, upright
tilt      faces turned by 0-30 degrees (alternately left and right): found, and accuracy without roll
          correction and with it (``FaceDetection.roll``: the crop turned by the tilt beyond a tolerance,
          ``realtime.crops.ROLL_TOLERANCE``) for several tolerances
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks.faces import SHARED
from models.data import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, load_fer2013, stratified_split
from models.emotions import EMOTIONS
from realtime.classifier import EmotionClassifier
from realtime.crops import CROP_MARGIN, ROLL_TOLERANCE, prepare_crops
from realtime.detector import FaceDetector

IMAGE_SIDE = 160
MARGINS = (0.0, 0.1, 0.2, 0.3, 0.4)
TILTS = (0, 10, 20, 30)
ROLL_TOLERANCES = (0, 5, 10, 15)


def tilted(face: np.ndarray, degrees: float, side: int = IMAGE_SIDE) -> np.ndarray:
    """A 48x48 gray face scaled to ``side`` pixels, turned counter-clockwise by ``degrees``, as BGR."""
    image = face if side == face.shape[0] else cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if degrees:
        turn = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), degrees, 1.0)
        image = cv2.warpAffine(image, turn, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def detect_all(detector: FaceDetector, faces: np.ndarray, degrees: float, side: int) -> list:
    """(image, best detected face or None) for every face, tilted alternately by +degrees and -degrees."""
    found = []
    for index, face in enumerate(tqdm(faces, desc=f"detect, tilt {degrees}", unit="face", leave=False)):
        image = tilted(face, degrees if index % 2 else -degrees, side)
        detector.reset()  # every pass, as for a photo
        detections = [d for d in detector.detect(image) if d.score is not None]
        found.append((image, detections[0] if detections else None))
    return found


def accuracy(classifier: EmotionClassifier, found: list, labels: np.ndarray, margin: float,
             roll_tolerance: float | None) -> float:
    """Accuracy on the faces that were detected, heads turned by their tilt beyond ``roll_tolerance``
    degrees (None: no roll correction)."""
    correct = []
    for (image, face), label in zip(found, labels):
        if face is not None:
            rolls = None if roll_tolerance is None else [face.roll]
            crops = prepare_crops(image, [face.box], classifier.metadata, margin, rolls, roll_tolerance or 0.0)
            correct.append(int(np.argmax(classifier.predict(crops)[0])) == label)
    return float(np.mean(correct)) if correct else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "datasets" / "fer2013"), help="FER2013 folder")
    parser.add_argument("--model", help="exported .onnx model (default: the shipped INT8 model)")
    parser.add_argument("--side", type=int, default=IMAGE_SIDE, help="pixels the faces are scaled to (default 160)")
    parser.add_argument("--limit", type=int, default=0, help="only N validation faces, drawn at random (0: all)")
    args = parser.parse_args(argv)
    _, validation = stratified_split(load_fer2013(args.data)["train"], DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)
    order = np.random.default_rng(0).permutation(len(validation))[: args.limit or None]  # the split is class-sorted
    faces, labels = validation.images[order], validation.labels[order]
    classifier = EmotionClassifier(args.model, flip_tta=False)
    assert list(classifier.classes) == list(EMOTIONS)
    print(f"{len(faces)} validation faces (FER2013 train/, training's held-out split), scaled to {args.side}x{args.side}")
    with FaceDetector("auto") as detector:
        by_tilt = {degrees: detect_all(detector, faces, degrees, args.side) for degrees in TILTS}

    upright = by_tilt[0]
    found_upright = np.array([face is not None for _, face in upright])
    as_stored = classifier.predict_faces(faces[found_upright]).argmax(axis=1) == labels[found_upright]
    print(f"the model on the stored 48x48 faces: {np.mean(classifier.predict_faces(faces).argmax(axis=1) == labels):.2%} "
          f"of all, {as_stored.mean():.2%} of the {found_upright.sum()} found upright")
    print(f"\nmargin (upright faces, roll tolerance {ROLL_TOLERANCE:g} degrees; "
          f"{found_upright.sum()} found)")
    print(f"{'margin':>8}{'accuracy':>10}")
    for margin in MARGINS:
        note = "  <- CROP_MARGIN" if margin == CROP_MARGIN else ""
        print(f"{margin:>8.1f}{accuracy(classifier, upright, labels, margin, ROLL_TOLERANCE):>10.2%}{note}")

    print(f"\ntilt (margin {CROP_MARGIN}): accuracy as cut, and with the crop turned by the tilt beyond "
          f"a tolerance of N degrees (ROLL_TOLERANCE is {ROLL_TOLERANCE:g})")
    print(f"{'degrees':>8}{'found':>8}{'|roll| median':>15}{'as cut':>9}"
          + "".join(f"{f'N = {t}':>9}" for t in ROLL_TOLERANCES))
    for degrees, found in by_tilt.items():
        rolls = [abs(face.roll) for _, face in found if face is not None]
        print(f"{degrees:>8d}{len(rolls) / len(found):>8.1%}{np.median(rolls):>14.1f}°"
              f"{accuracy(classifier, found, labels, CROP_MARGIN, None):>9.2%}"
              + "".join(f"{accuracy(classifier, found, labels, CROP_MARGIN, t):>9.2%}" for t in ROLL_TOLERANCES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
