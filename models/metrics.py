"""Classification metrics computed from a confusion matrix."""

from __future__ import annotations

from math import comb

import numpy as np


def confusion_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true_labels, predicted_labels), 1)
    return matrix


def classification_report(matrix: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict:
    """Accuracy, macro-F1 and per-class precision, recall, F1 and support from a confusion matrix."""
    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positives), where=denominator > 0)
    return {
        "accuracy": float(true_positives.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
    }


def paired_comparison(correct: np.ndarray, reference_correct: np.ndarray) -> dict:
    """How two models differ on the same faces (boolean arrays: right or wrong per face).

    ``gained``: faces the model gets right and the reference wrong; ``lost``: the other way round;
    ``p_value``: the exact two-sided McNemar test, the chance of a split at least this uneven between
    gained and lost if the two models were equally good.
    """
    gained = int((correct & ~reference_correct).sum())
    lost = int((~correct & reference_correct).sum())
    differing, fewer = gained + lost, min(gained, lost)
    tail = sum(comb(differing, k) for k in range(fewer + 1)) / 2 ** differing
    return {"gained": gained, "lost": lost, "p_value": min(1.0, 2 * tail)}


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict]:
    """Confidence (the top probability) against accuracy in ``bins`` equal-width confidence bins: for each bin
    that holds faces, its bounds, the number of faces, their mean confidence and how many of them are right."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"low": index / bins, "high": (index + 1) / bins, "faces": int((which == index).sum()),
             "mean_confidence": float(confidence[which == index].mean()),
             "accuracy": float(correct[which == index].mean())} for index in np.unique(which)]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """How far confidence is from accuracy: the face-weighted mean of |mean confidence - accuracy| over
    ``bins`` equal-width confidence bins (reliability_bins; 0: calibrated)."""
    return float(sum(row["faces"] * abs(row["mean_confidence"] - row["accuracy"])
                     for row in reliability_bins(probabilities, labels, bins)) / len(labels))


def fit_temperature(passes: list[np.ndarray], labels: np.ndarray) -> float:
    """The temperature (0.25-4, 1% steps) that minimises the negative log-likelihood of ``labels`` under the
    mean of ``passes`` (one face's probabilities per row; two passes with flip averaging), each tempered as the
    runtime does (``realtime.classifier.with_temperature``)."""
    from realtime.classifier import with_temperature

    def negative_log_likelihood(temperature: float) -> float:
        mean = np.mean([with_temperature(p, temperature) for p in passes], axis=0)
        return float(-np.log(np.maximum(mean[np.arange(len(labels)), labels], 1e-12)).mean())

    candidates = np.exp(np.arange(np.log(0.25), np.log(4.0), 0.01))
    return round(float(min(candidates, key=negative_log_likelihood)), 3)
