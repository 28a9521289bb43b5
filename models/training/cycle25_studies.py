"""Cycle 25's three studies on validation, each checked on faces its choice did not see (README, "Training", 25).

    PYTHONPATH=. python models/training/cycle25_studies.py --data ../shared/datasets/fer2013 \
        --students models/emotion_cnn.keras runs/gpu6/student_w32_shipped_*.keras \
        runs/gpu5/student_w32_shipped_lr{1e-3_mix0.0,2e-3_mix0.2,5e-4_mix0.2}/best.keras \
        runs/gpu_try4_students/*/best.keras

with the runs laid out as in cycle 24's commands: the twelve width-32 nets of the cycle-16 lineage.
(a) test-time views beyond the mirror image, (b) per-class offsets on the flip-averaged log-probabilities,
(c) the 90-epoch teachers' file averaged with the students. Nothing here touches PublicTest.
"""

import argparse

import cv2
import numpy as np
from scipy.optimize import minimize

from models.data import load_fer2013
from models.evaluate import split_faces
from models.predictor import load_predictor, predict_with_flip

TEACHERS_FILE = "models/training/teachers_w64x6_90ep_probabilities.npz"


def warped(images: np.ndarray, angle: float = 0.0, scale: float = 1.0, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Each 48x48 face rotated by ``angle`` degrees, scaled about its centre and shifted, edges repeated."""
    matrix = cv2.getRotationMatrix2D((23.5, 23.5), angle, scale)
    matrix[:, 2] += shift
    return np.stack([cv2.warpAffine(image, matrix, (48, 48), borderMode=cv2.BORDER_REPLICATE) for image in images])


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return 100 * float((probabilities.argmax(1) == labels).mean())


def halves(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    return order[: count // 2], order[count // 2:]


def study_views(predict, faces) -> np.ndarray:
    """(a): each view with its mirror image, summed log-probabilities; the best second view chosen on one half,
    scored on the other. Returns the face-and-mirror probabilities for (b)."""
    views = {"face": faces.images, "shift right": warped(faces.images, shift=(2, 0)),
             "shift left": warped(faces.images, shift=(-2, 0)), "shift down": warped(faces.images, shift=(0, 2)),
             "shift up": warped(faces.images, shift=(0, -2)), "zoom 1.1": warped(faces.images, scale=1.1),
             "zoom 0.9": warped(faces.images, scale=0.9), "rotation 8": warped(faces.images, angle=8),
             "rotation -8": warped(faces.images, angle=-8)}
    passes = {name: (predict(images), predict(images[:, :, ::-1].copy())) for name, images in views.items()}
    log_sum = {name: sum(np.log(np.maximum(p, 1e-12)) for p in pair) for name, pair in passes.items()}
    print("(a) each view alone, plain / with its mirror image:")
    for name, (plain, mirrored) in passes.items():
        print(f"    {name}: {accuracy(plain, faces.labels):.2f}% / {accuracy(plain + mirrored, faces.labels):.2f}%")
    pairs = [("face", name) for name in views if name != "face"]
    for pair in pairs:
        print(f"    face + {pair[1]}, each mirrored: {accuracy(log_sum['face'] + log_sum[pair[1]], faces.labels):.2f}%")
    rng, gains = np.random.default_rng(1), []
    for _ in range(50):
        chosen_on, scored_on = halves(len(faces), rng)
        best = max(pairs, key=lambda pair: accuracy(sum(log_sum[n] for n in pair)[chosen_on], faces.labels[chosen_on]))
        gains.append(accuracy(sum(log_sum[n] for n in best)[scored_on], faces.labels[scored_on])
                     - accuracy(log_sum["face"][scored_on], faces.labels[scored_on]))
    print(f"    best second view chosen on a random half, gain on the other half: {np.mean(gains):.2f} points "
          f"(sd {np.std(gains):.2f}, 50 splits)")
    return sum(passes["face"]) / 2


def study_offsets(flip_averaged: np.ndarray, labels: np.ndarray) -> None:
    """(b): seven per-class offsets on the log-probabilities, fitted by likelihood, 5-fold cross-validated."""
    logs = np.log(np.maximum(flip_averaged, 1e-12))

    def negative_log_likelihood(offsets, rows):
        shifted = logs[rows] + offsets
        shifted -= shifted.max(1, keepdims=True)
        return -(shifted[np.arange(len(rows)), labels[rows]] - np.log(np.exp(shifted).sum(1))).mean()

    rng, gains = np.random.default_rng(0), []
    for _ in range(20):
        folds = np.array_split(rng.permutation(len(labels)), 5)
        predicted = np.empty(len(labels), dtype=int)
        for fold in folds:
            fitted_on = np.setdiff1d(np.arange(len(labels)), fold)
            offsets = minimize(negative_log_likelihood, np.zeros(7), args=(fitted_on,), method="L-BFGS-B").x
            predicted[fold] = (logs[fold] + offsets).argmax(1)
        gains.append(100 * (predicted == labels).mean() - accuracy(logs, labels))
    print(f"(b) per-class offsets, 5-fold cross-validation: {np.mean(gains):.2f} points (sd {np.std(gains):.2f}, 20 repeats)")


def study_teachers(student_paths: list[str], faces) -> None:
    """(c): the teachers' file averaged with the students' ensemble, the weight chosen on one half."""
    teachers = np.load(TEACHERS_FILE)["validation"]
    students = np.mean([predict_with_flip(load_predictor(path), faces.images) for path in student_paths], axis=0)
    labels = faces.labels
    print(f"(c) teachers' file {accuracy(teachers, labels):.2f}%; ensemble of the {len(student_paths)} students "
          f"{accuracy(students, labels):.2f}%")
    for weight in (0.25, 0.5, 0.75):
        print(f"    students' weight {weight}: {accuracy((1 - weight) * teachers + weight * students, labels):.2f}%")
    rng, gains = np.random.default_rng(0), []
    for _ in range(50):
        chosen_on, scored_on = halves(len(labels), rng)
        mixed = {w: (1 - w) * teachers + w * students for w in np.linspace(0, 1, 11)}
        best = max(mixed, key=lambda w: accuracy(mixed[w][chosen_on], labels[chosen_on]))
        gains.append(accuracy(mixed[best][scored_on], labels[scored_on]) - accuracy(teachers[scored_on], labels[scored_on]))
    print(f"    weight chosen on a random half, gain over the teachers on the other half: {np.mean(gains):.2f} points "
          f"(sd {np.std(gains):.2f}, 50 splits)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 folder with train/")
    parser.add_argument("--model", default="realtime/model/emotion_cnn_int8.onnx", help="model for (a) and (b)")
    parser.add_argument("--students", nargs="+", required=True, help="the students for (c)")
    args = parser.parse_args()
    faces, label, _ = split_faces(load_fer2013(args.data), "validation", args.data)
    print(f"{label}: {len(faces)} faces; model {args.model}")
    study_offsets(study_views(load_predictor(args.model), faces), faces.labels)
    study_teachers(args.students, faces)


if __name__ == "__main__":
    main()
