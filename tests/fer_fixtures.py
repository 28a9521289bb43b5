"""Tiny generated FER2013 datasets in both formats users get (Kaggle folders and fer2013.csv)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.emotions import CSV_LABEL_NAMES, EMOTIONS


def synthetic_face(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 uint8 image whose pattern depends on the class, so a model can learn it."""
    image = rng.normal(110, 20, (48, 48))
    row = 4 + 6 * label
    image[row:row + 5, 8:40] += 90
    return np.clip(image, 0, 255).astype(np.uint8)


def make_fer_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """train/<class>/Training_<i>.jpg and test/<class>/PublicTest_<i>.jpg with ``per_class`` faces each."""
    rng = np.random.default_rng(seed)
    for split, prefix in (("train", "Training"), ("test", "PublicTest")):
        for label, emotion in enumerate(EMOTIONS):
            folder = root / split / emotion
            folder.mkdir(parents=True)
            for i in range(per_class):
                cv2.imwrite(str(folder / f"{prefix}_{label * 1000 + i}.jpg"), synthetic_face(label, rng))
    return root


def make_fer_csv(path: Path, per_class: int = 3, seed: int = 0) -> Path:
    """A fer2013.csv (emotion, pixels, Usage) with the original label numbering."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for csv_label, name in enumerate(CSV_LABEL_NAMES):
            for _ in range(per_class):
                face = synthetic_face(EMOTIONS.index(name), rng)
                lines.append(f"{csv_label},{' '.join(map(str, face.ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path
