"""Evaluate a trained emotion model on the FER2013 test split (PublicTest in the Kaggle layout).

    python -m models.evaluate --model realtime/model/emotion_cnn_int8.onnx --data ../shared/datasets/fer2013

Prints accuracy, macro-F1 and per-class precision/recall/F1, with and without horizontal-flip
test-time averaging, and writes beside them (default folder: models/evaluation, the shipped INT8 model's
figures the README shows, which the command above regenerates; give other models an --output-dir of their own):
metrics.json, confusion_matrix.png, reliability.png (how often the label is right against the confidence
shown, with flip averaging), correct_examples.png and wrong_examples.png.

`--split validation` evaluates on the validation split training held out of train/: choose models there,
not on PublicTest. It is the split each model records (a .keras model: --val-fraction and --split-seed in the
config.json of its training run beside it; an exported .onnx model: the split its metadata records), training's
defaults for a model that records none; the report's split line says which. Models that record different splits
(an ensemble, --against) are refused, since each would be scored on faces another trained on, unless
--val-fraction and --split-seed choose the split. Several --model paths are evaluated as an ensemble (the mean
of their probabilities), after a line per model. --against REFERENCE also scores a reference model (e.g. the
shipped one) on the same faces and counts the faces each gets right where the other does not, with the exact
McNemar test's p-value: whether a difference is more than the luck of this split.

FER2013's train/ holds some images more than once, so some validation faces (about 7%) are exact copies of
training faces, which a model gets right far more often (85-90% against 68-70%). Every report therefore also gives
the accuracy on the "unseen" faces, those without an exact copy among the training faces (train/ less the
validation split), and --against compares the models on them too: the better guide to faces never seen.
PublicTest holds copies of training faces in the same share, so its unseen faces are reported as well.

With --through-pipeline (one exported .onnx model) every face also goes through the runtime's own path
(upscaled, detected, cropped), and metrics.json gets those numbers as "through_pipeline".

With --occlusion the faces are also scored with a flat gray band across them (OCCLUSION_BANDS: over the eyes,
over the mouth, or the lower half as a face mask would), as "occlusion" in metrics.json (with --against, for the
reference too): how much a model relies on one part of the face.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from models.data import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_VAL_FRACTION,
    DatasetError,
    FaceSet,
    has_copy_in,
    held_out,
    load_fer2013,
)
from models.emotions import EMOTIONS, IMAGE_SIZE
from models.metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    paired_comparison,
    reliability_bins,
)
from models.predictor import Predictor, load_predictor, mean_predictor, predict_with_flip
from models.train import CONFIG_NAME, recorded_validation_split
from realtime.errors import ModelError, OutputError, one_line
from realtime.io.files import check_output_folder, write_atomically

EXIT_CODES = """exit codes:
  0    evaluated, files written
  1    a file could not be written after the evaluation (e.g. disk full): files written whole or not at all
  2    bad input or options (a model, data set, split or output folder that will not do, models that record
       different validation splits), refused before the evaluation: nothing written
  130  interrupted by Ctrl-C: files already written are whole"""

EXAMPLES_PER_CLASS = 8
# rows [start, stop) of a 48x48 face covered by a flat band of gray across the whole width: on the mean FER2013
# face the first covers the eyes, the second the mouth
OCCLUSION_BANDS = {"eyes": (12, 24), "mouth": (30, 44), "lower_half": (26, 48)}
OCCLUSION_GRAY = 128


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, nargs="+",
                        help="trained model: .keras or exported .onnx; several are evaluated as an ensemble")
    parser.add_argument("--data", required=True, help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("--split", default="test",
                        help="which split to evaluate (default: test = PublicTest); 'validation' is the split "
                             "that training held out of train/, as the models record it")
    parser.add_argument("--val-fraction", type=float, metavar="FRACTION",
                        help="with --split-seed: the validation split to use instead of the one the models record "
                             "(models.train's options of that name)")
    parser.add_argument("--split-seed", type=int, metavar="SEED",
                        help="with --val-fraction: the seed of that split")
    parser.add_argument("--output-dir", default="models/evaluation", help="where metrics.json and the figures go")
    parser.add_argument("--seed", type=int, default=0, help="seed for picking the example faces")
    parser.add_argument("--against", metavar="REFERENCE",
                        help="also compare with this model on the same faces, face by face (plain and flip-averaged)")
    parser.add_argument("--through-pipeline", action="store_true",
                        help="also run every face, upscaled, through the runtime's EmotionAnalyzer (auto detection, "
                             "its crop or whole-image fallback; .onnx models only)")
    parser.add_argument("--occlusion", action="store_true",
                        help="also score the faces with a gray band over the eyes, over the mouth, or the lower half")
    parser.add_argument("--pipeline-size", type=int,
                        help="side of the upscaled face images for --through-pipeline (default: the detector's "
                             "WHOLE_IMAGE_MAX_SIDE, 160, the largest size at which its whole-image fallback applies)")
    args = parser.parse_args(argv)
    if (args.val_fraction is None) != (args.split_seed is None):
        parser.error("--val-fraction and --split-seed go together: give both to choose the validation split")
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be between 0 and 1, got {args.val_fraction:g}")
    return args


DEFAULT_SPLIT = {"fraction": DEFAULT_VAL_FRACTION, "split_seed": DEFAULT_SPLIT_SEED, "from": "training's defaults"}


def recorded_split(path: str, option: str) -> dict | None:
    """The validation split the training of the model at ``path`` held out of train/: fraction, split seed and
    where that is recorded; None where the model records none (a .keras model without its training run's
    config.json beside it, an exported model whose metadata names none or says that export used training's
    defaults). ModelError naming ``option`` for a record that cannot be read."""
    model = Path(path)
    if model.suffix == ".onnx":
        facts = exported_metadata(path).facts
        split, training = facts.get("validation_split"), facts.get("training")
        if isinstance(split, dict) and not str(split.get("from", "")).startswith("training defaults"):
            fraction, seed, source = split.get("fraction"), split.get("split_seed"), f"{path}'s metadata"
        elif isinstance(training, dict) and "val_fraction" in training:  # exported before validation_split
            fraction, seed = training["val_fraction"], training.get("split_seed", training.get("seed"))
            source = f"{path}'s metadata"
        else:
            return None
    else:
        config = model.parent / CONFIG_NAME
        if not config.is_file():
            return None
        try:
            split = recorded_validation_split(model)
        except (OSError, ValueError, AttributeError) as error:
            raise ModelError(f"{option} {path}: {config} cannot be read ({one_line(error)})", path) from None
        fraction, seed, source = split["fraction"], split["split_seed"], f"{config}"
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1 and isinstance(seed, int)):
        raise ModelError(f"{option} {path}: {source} records no usable validation split (fraction {fraction!r}, "
                         f"split seed {seed!r})", path)
    return {"fraction": float(fraction), "split_seed": seed, "from": source}


def validation_splits(models: list[tuple[str, str]], given: dict | None) -> list[dict]:
    """The validation splits the models (option, path) were trained with, each once: ``given`` where the user
    gave one, else what each records (``recorded_split``; training's defaults where it records none). The
    "from" of each says where it comes from."""
    if given is not None:
        return [given]
    found: dict[tuple[float, int], list[tuple[str, dict | None]]] = {}
    for option, path in models:
        split = recorded_split(path, option)
        key = (split or DEFAULT_SPLIT)["fraction"], (split or DEFAULT_SPLIT)["split_seed"]
        found.setdefault(key, []).append((path, split))
    splits = []
    for (fraction, seed), members in found.items():
        sources = list(dict.fromkeys(split["from"] for _, split in members if split is not None))
        unrecorded = sum(split is None for _, split in members)
        if not sources:
            source = f"training's defaults: {'the model records' if unrecorded == 1 else 'the models record'} none"
        else:
            source = f"as recorded in {', '.join(sources)}" + (
                "" if not unrecorded else f", and training's defaults for the {unrecorded} "
                f"model{'s that record' if unrecorded > 1 else ' that records'} none")
        splits.append({"fraction": fraction, "split_seed": seed, "from": source,
                       "models": [path for path, _ in members]})
    return splits


def check_one_split(trained_with: list[dict]) -> None:
    """ValueError, for --split validation, where the models were trained with different validation splits."""
    if len(trained_with) > 1:
        raise ValueError("--split validation: the models record different validation splits ("
                         + "; ".join(f"{', '.join(split['models'])}: {describe_split(split)}" for split in trained_with)
                         + "), so each would be scored on faces another trained on; evaluate them apart, or choose "
                         "one split with --val-fraction and --split-seed")


def describe_split(split: dict) -> str:
    """A validation split as the report names it."""
    return f"{split['fraction'] * 100:g}% of train/, split seed {split['split_seed']}, {split['from']}"


def split_faces(splits: dict[str, FaceSet], name: str, data: str,
                trained_with: list[dict] | None = None) -> tuple[FaceSet, str, np.ndarray | None]:
    """The faces of split `name`, how reports call it, and which of them are unseen: without an exact copy among
    the faces training learns from (train/ less validation; None when there is no train/).
    "validation" is training's held-out part of train/, as ``trained_with`` (validation_splits) says: one split
    (training's defaults when not given); for other splits, the training faces are those of every split given."""
    trained_with = trained_with or [DEFAULT_SPLIT]
    if name == "validation":
        check_one_split(trained_with)
    training = validation = None
    if "train" in splits:
        masks = [held_out(splits["train"], split["fraction"], split["split_seed"]) for split in trained_with]
        validation = splits["train"].subset(np.flatnonzero(masks[0]))
        # the faces any of the models trained on: those not held out by all of them
        training = splits["train"].subset(np.flatnonzero(~np.logical_and.reduce(masks)))
    if name == "validation" and validation is not None:
        faces, label = validation, f"validation ({describe_split(trained_with[0])})"
    elif name in splits:
        faces = splits[name]
        label = {"test": "FER2013 PublicTest", "private_test": "FER2013 PrivateTest"}.get(name, name)
    else:
        raise DatasetError(f"{data}: no '{name}' split (has {sorted(splits)})")
    if not len(faces):
        raise DatasetError(f"{data}: the {label} split holds no faces")
    return faces, label, None if training is None else ~has_copy_in(faces, training)


def checked_predictor(path: str, option: str) -> Predictor:
    """load_predictor for the model an option names, its outputs in EMOTIONS order (an exported model may list its
    classes in another); ModelError naming the option for a missing file, a folder, or a model whose classes are not
    FER2013's seven."""
    if not Path(path).is_file():
        what = "is a folder, not" if Path(path).is_dir() else "no such file; expected"
        raise ModelError(f"{option} {path}: {what} a .keras or .onnx model", path)
    predict = load_predictor(path)
    if Path(path).suffix != ".onnx":  # load_keras_model checks a .keras model's 7 outputs
        return predict
    classes = model_classes(path)
    if classes == list(EMOTIONS):
        return predict
    if sorted(classes) != sorted(EMOTIONS):
        raise ModelError(f"{option} {path}: its classes {classes} are not FER2013's {list(EMOTIONS)}", path)
    order = [classes.index(name) for name in EMOTIONS]
    return lambda faces: predict(faces)[:, order]


def model_classes(path: str | Path) -> list[str]:
    """The classes, in output order, that an exported model's metadata names."""
    return list(exported_metadata(path).classes)


def exported_metadata(path: str | Path):
    """An exported model's ModelMetadata (classes, facts...)."""
    from realtime.classifier import EmotionClassifier

    return EmotionClassifier(path, threads=None).metadata


def evaluate(predict, faces: FaceSet) -> dict:
    """Metrics with and without flip averaging, plus the raw predictions for the figures."""
    plain = predict(faces.images)
    flipped = predict_with_flip(predict, faces.images)
    results, correct = {}, {}
    for name, probabilities in (("plain", plain), ("flip_tta", flipped)):
        predicted = probabilities.argmax(axis=1)
        matrix = confusion_matrix(faces.labels, predicted, len(EMOTIONS))
        results[name] = {**classification_report(matrix, EMOTIONS), "confusion_matrix": matrix.tolist(),
                         "mean_confidence": float(probabilities.max(axis=1).mean()),
                         "calibration_error": expected_calibration_error(probabilities, faces.labels),
                         "reliability": reliability_bins(probabilities, faces.labels)}
        correct[name] = predicted == faces.labels
    return {"metrics": results, "correct": correct, "predicted": plain.argmax(axis=1), "confidence": plain.max(axis=1)}


def occluded(faces: FaceSet, rows: tuple[int, int]) -> FaceSet:
    """The faces with rows [start, stop) painted flat gray across their whole width."""
    images = faces.images.copy()
    images[:, rows[0]:rows[1], :] = OCCLUSION_GRAY
    return FaceSet(images, faces.labels, faces.names)


def evaluate_occlusion(predict, faces: FaceSet) -> dict:
    """With each of OCCLUSION_BANDS over the faces: accuracy, plain and flip-averaged, and, flip-averaged, the
    mean confidence and the label given most often with its share (does the model say that it cannot tell?)."""
    numbers = {}
    for name, rows in OCCLUSION_BANDS.items():
        metrics = evaluate(predict, occluded(faces, rows))["metrics"]
        plain, flip = metrics["plain"], metrics["flip_tta"]
        counts = np.array(flip["confusion_matrix"]).sum(axis=0)  # faces given each label
        numbers[name] = {"rows": list(rows), "accuracy": plain["accuracy"], "flip_accuracy": flip["accuracy"],
                         "flip_mean_confidence": flip["mean_confidence"],
                         "flip_most_common_label": EMOTIONS[int(counts.argmax())],
                         "flip_most_common_share": float(counts.max() / len(faces))}
    return numbers


def format_occlusion_report(numbers: dict, label: str = "occluded") -> str:
    """A line per occluding band: accuracy, and with flip averaging accuracy, mean confidence, commonest label."""
    return "\n".join([f"{label} (gray band):"] + [
        f"  {name.replace('_', ' ')} (rows {row['rows'][0]}-{row['rows'][1] - 1}): accuracy {row['accuracy']:.2%}; "
        f"with flip averaging {row['flip_accuracy']:.2%}, mean confidence {row['flip_mean_confidence']:.1%}, "
        f"{row['flip_most_common_share']:.0%} labelled {row['flip_most_common_label']}" for name, row in numbers.items()])


def compare(correct: dict[str, np.ndarray], reference_correct: dict[str, np.ndarray], reference_path: str,
            unseen: np.ndarray | None) -> dict:
    """Face-by-face comparison with a reference (which faces each gets right), plain and flip-averaged; with an
    ``unseen`` mask also on those faces alone."""

    def on(faces: np.ndarray) -> dict:
        return {name: {"reference_accuracy": float(reference_correct[name][faces].mean()),
                       **paired_comparison(correct[name][faces], reference_correct[name][faces])}
                for name in ("plain", "flip_tta")}

    comparison = {"reference": reference_path, **on(np.ones(len(correct["plain"]), dtype=bool))}
    if unseen is not None:
        comparison["unseen"] = {"faces": int(unseen.sum()), **on(unseen)}
    return comparison


def format_comparison(comparison: dict) -> str:
    """One line per mode (and per mode on the unseen faces): the reference's accuracy, the faces gained and lost
    against it, the p-value."""
    lines = [f"against {comparison['reference']}:"]
    parts = [("", comparison)] + ([(f"unseen faces ({comparison['unseen']['faces']}), ", comparison["unseen"])]
                                  if "unseen" in comparison else [])
    for prefix, numbers in parts:
        for name, label in (("plain", "plain"), ("flip_tta", "with flip averaging")):
            row = numbers[name]
            lines.append(f"  {prefix}{label}: reference accuracy {row['reference_accuracy']:.2%}; right where it is "
                         f"wrong {row['gained']}, wrong where it is right {row['lost']} (exact McNemar p = "
                         f"{row['p_value']:.3f})")
    return "\n".join(lines)


def unseen_accuracy(correct: dict[str, np.ndarray], unseen: np.ndarray) -> dict:
    """Accuracy, plain and flip-averaged, on the faces without an exact copy among the training faces, and on the
    copies ("copies": the same for the rest; None where there are no such faces)."""

    def on(faces: np.ndarray) -> dict:
        return {"faces": int(faces.sum()),
                **{name: float(correct[name][faces].mean()) if faces.any() else None for name in ("plain", "flip_tta")}}

    return {**on(unseen), "copies": on(~unseen)}


def format_unseen(numbers: dict, samples: int) -> str:
    """The unseen faces' accuracy line, with the copies' accuracy."""
    parts = [f"{label} {numbers[name]:.2%}" for name, label in (("plain", "accuracy"), ("flip_tta", "with flip averaging"))
             if numbers[name] is not None]
    copies = numbers["copies"]
    copied = (f"; the {copies['faces']} with a copy: {copies['plain']:.2%}, {copies['flip_tta']:.2%}" if copies["faces"]
              else "")
    return (f"unseen faces (no exact copy among the training faces), {numbers['faces']} of {samples}: "
            f"{', '.join(parts) or 'none'}{copied}")


def evaluate_through_pipeline(model_path: str | Path, faces: FaceSet, size: int) -> dict:
    """Accuracy when each face, upscaled (bicubic) to a ``size`` x ``size`` BGR image, goes through the runtime's
    own path: ``EmotionAnalyzer.analyze`` with "auto" detection and its crop, or, where no face is detected in an
    image of at most WHOLE_IMAGE_MAX_SIDE pixels, its whole-image fallback; no smoothing, no flip averaging.

    The best-scoring face of each image counts, an image without any face counts as wrong. "plain_*" is the
    model on the original 48x48 faces (the evaluation's plain accuracy), over all faces and over the detected ones.
    """
    from realtime.pipeline import EmotionAnalyzer

    found = np.zeros(len(faces), dtype=np.int8)  # 0: no face, 1: the whole image, 2: a detected face
    correct = np.zeros(len(faces), dtype=bool)
    with EmotionAnalyzer(model_path=model_path, detector_range="auto", smoothing=0, flip_tta=False,
                         threads=None) as analyzer:
        classes = np.array(analyzer.classifier.classes)  # by name: the model's order may differ from EMOTIONS
        plain_correct = classes[analyzer.classifier.predict_faces(faces.images).argmax(axis=1)] == \
            np.array(EMOTIONS)[faces.labels]
        for index, (face, label) in enumerate(zip(faces.images, faces.labels)):
            image = cv2.cvtColor(cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
            results = analyzer.analyze(image).faces
            if results:
                found[index] = 1 if results[0].detection_score is None else 2
                correct[index] = results[0].label == EMOTIONS[label]
    detected = found == 2

    def share(values: np.ndarray) -> float | None:
        return float(values.mean()) if len(values) else None

    return {"image_size": size, "faces": len(faces), "detected": int(detected.sum()),
            "whole_image": int((found == 1).sum()), "no_face": int((found == 0).sum()),
            "accuracy_detected": share(correct[detected]), "plain_accuracy_detected": share(plain_correct[detected]),
            "accuracy": share(correct), "plain_accuracy": share(plain_correct)}


def format_pipeline_report(numbers: dict) -> str:
    """The through-the-pipeline numbers in two lines."""
    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.2%}"

    return (f"through the pipeline ({numbers['image_size']}x{numbers['image_size']}): face detected in "
            f"{numbers['detected']} of {numbers['faces']}, whole image {numbers['whole_image']}, none {numbers['no_face']}\n"
            f"  detected faces: accuracy {percent(numbers['accuracy_detected'])} (plain on the same faces "
            f"{percent(numbers['plain_accuracy_detected'])}); all faces: {percent(numbers['accuracy'])} "
            f"(plain {percent(numbers['plain_accuracy'])})")


def save_confusion_matrix(matrix: np.ndarray, title: str, path: Path) -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(EMOTIONS)):
        for column in range(len(EMOTIONS)):
            axis.text(column, row, f"{rates[row, column]:.2f}\n({matrix[row, column]})", ha="center", va="center",
                      fontsize=7.5, color="white" if rates[row, column] > 0.5 else "black")
    axis.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    axis.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.colorbar(image, fraction=0.046, pad=0.04)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def save_figure(figure, path: Path, dpi: int) -> None:
    """A matplotlib figure as a PNG written atomically (never a half-written file), then closed."""
    import matplotlib.pyplot as plt

    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=dpi)
    plt.close(figure)
    write_atomically(path, image.getvalue())


def save_reliability_diagram(bins: list[dict], title: str, path: Path) -> None:
    """How often the label is right against the confidence shown, per confidence bin, as a PNG: bars on the
    diagonal mean the confidence can be taken at its word."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    axis.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    for row in bins:
        width = row["high"] - row["low"]
        axis.bar(row["low"] + width / 2, row["accuracy"], width=width * 0.9, color="tab:blue", alpha=0.8)
        axis.plot(row["mean_confidence"], row["accuracy"], "o", color="tab:orange", markersize=4)
        axis.text(row["low"] + width / 2, row["accuracy"] + 0.01, f"{row['faces']}", ha="center", fontsize=7)
    axis.plot([], [], "o", color="tab:orange", markersize=4, label="mean confidence of the bin")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("confidence shown (bars: bins of 0.1; numbers: faces)")
    axis.set_ylabel("share of those faces labelled right")
    axis.set_title(title)
    axis.legend(loc="upper left")
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def save_example_grid(faces: FaceSet, predicted: np.ndarray, confidence: np.ndarray, correct: bool,
                      title: str, path: Path, seed: int) -> None:
    """One row per true class of randomly picked faces the model got right (or wrong), labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(len(EMOTIONS), EXAMPLES_PER_CLASS,
                                figsize=(EXAMPLES_PER_CLASS * 1.25, len(EMOTIONS) * 1.45))
    for label, row in zip(range(len(EMOTIONS)), axes):
        matches = (faces.labels == label) & ((predicted == label) == correct)
        chosen = rng.permutation(np.flatnonzero(matches))[:EXAMPLES_PER_CLASS]
        for column, axis in enumerate(row):
            axis.axis("off")
            if column < len(chosen):
                index = chosen[column]
                axis.imshow(faces.images[index], cmap="gray", vmin=0, vmax=255)
                axis.set_title(f"{EMOTIONS[predicted[index]]} {confidence[index]:.0%}", fontsize=7,
                               color="green" if correct else "red")
        row[0].text(-0.15, 0.5, f"true: {EMOTIONS[label]}", transform=row[0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_figure(figure, path, dpi=100)


def format_report(metrics: dict, split_label: str) -> str:
    """A plain-text table of the metrics."""
    plain, flip = metrics["plain"], metrics["flip_tta"]
    lines = [
        f"{split_label}: accuracy {plain['accuracy']:.2%}, macro-F1 {plain['macro_f1']:.4f}; "
        f"with flip averaging {flip['accuracy']:.2%}, macro-F1 {flip['macro_f1']:.4f}",
        f"confidence: mean {plain['mean_confidence']:.1%}, calibration error {plain['calibration_error']:.3f}; "
        f"with flip averaging {flip['mean_confidence']:.1%}, {flip['calibration_error']:.3f}",
        f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name, row in plain["per_class"].items():
        lines.append(f"{name:<10}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>9d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): files already written are whole; the rest keep their earlier contents",
              file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    """``main``'s work: 2 and an error line for bad input (found before the evaluation), 1 where an output cannot
    be written."""
    try:
        predictors = [checked_predictor(path, "--model") for path in args.model]
        reference = checked_predictor(args.against, "--against") if args.against else None
        if args.through_pipeline and (len(args.model) > 1 or Path(args.model[0]).suffix != ".onnx"):
            raise ValueError(f"{' '.join(args.model)}: --through-pipeline runs the runtime, which needs one exported "
                             ".onnx model")
        if args.pipeline_size is not None and not args.through_pipeline:
            raise ValueError("--pipeline-size: give --through-pipeline too (it sizes the images of that run)")
        if args.pipeline_size is not None and args.pipeline_size < IMAGE_SIZE:
            raise ValueError(f"--pipeline-size must be at least {IMAGE_SIZE}, got {args.pipeline_size}")
        models = [("--model", path) for path in args.model] + ([("--against", args.against)] if args.against else [])
        given = None if args.val_fraction is None else {"fraction": args.val_fraction, "split_seed": args.split_seed,
                                                         "from": "as given", "models": list(args.model)}
        trained_with = validation_splits(models, given)
        if args.split == "validation":  # before the data's loading
            check_one_split(trained_with)
        splits = load_fer2013(args.data)
        faces, split_label, unseen = split_faces(splits, args.split, args.data, trained_with)
        output_dir = Path(args.output_dir)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"--output-dir {output_dir}: cannot create it ({one_line(error)})") from None
        check_output_folder(output_dir)  # one that cannot be written in fails now, not after the evaluation
    except (DatasetError, ValueError, ModelError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if len(predictors) > 1:
        for path, predict in zip(args.model, predictors):
            plain = predict(faces.images).argmax(axis=1) == faces.labels
            flipped = predict_with_flip(predict, faces.images).argmax(axis=1) == faces.labels
            print(f"{path}: accuracy {plain.mean():.2%}, with flip averaging {flipped.mean():.2%}")
        split_label = f"{split_label}, ensemble of {len(predictors)}"
    evaluation = evaluate(mean_predictor(predictors), faces)
    metrics = evaluation["metrics"]
    report = {"model": " + ".join(args.model), "data": str(args.data), "split": split_label, "samples": len(faces),
              "classes": list(EMOTIONS), **metrics}
    if args.split == "validation":
        report["validation_split"] = {key: trained_with[0][key] for key in ("fraction", "split_seed", "from")}
    if unseen is not None:
        report["unseen"] = unseen_accuracy(evaluation["correct"], unseen)
    if reference is not None:
        report["against"] = compare(evaluation["correct"], evaluate(reference, faces)["correct"], args.against,
                                    unseen if unseen is not None and unseen.any() else None)
    if args.occlusion:
        report["occlusion"] = evaluate_occlusion(mean_predictor(predictors), faces)
        if reference is not None:
            report["against"]["occlusion"] = evaluate_occlusion(reference, faces)
    if args.through_pipeline:
        from realtime.detector import WHOLE_IMAGE_MAX_SIDE

        report["through_pipeline"] = evaluate_through_pipeline(args.model[0], faces, args.pipeline_size or WHOLE_IMAGE_MAX_SIDE)
    try:
        write_atomically(output_dir / "metrics.json", json.dumps(report, indent=2).encode())
        save_confusion_matrix(np.array(metrics["plain"]["confusion_matrix"]),
                              f"{split_label}: accuracy {metrics['plain']['accuracy']:.1%}",
                              output_dir / "confusion_matrix.png")
        save_reliability_diagram(metrics["flip_tta"]["reliability"], f"{split_label}, flip averaging: calibration "
                                 f"error {metrics['flip_tta']['calibration_error']:.3f}", output_dir / "reliability.png")
        for correct, name in ((True, "correct"), (False, "wrong")):
            save_example_grid(faces, evaluation["predicted"], evaluation["confidence"], correct,
                              f"{split_label}: {'correctly' if correct else 'wrongly'} classified (title: predicted)",
                              output_dir / f"{name}_examples.png", args.seed)
    except OutputError as error:  # a full disk, a folder made read-only meanwhile: no half-written file is left
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(metrics, split_label))
    if unseen is not None:
        print(format_unseen(report["unseen"], len(faces)))
    if args.occlusion:
        print(format_occlusion_report(report["occlusion"]))
    if reference is not None:
        print(format_comparison(report["against"]))
        if args.occlusion:
            print(format_occlusion_report(report["against"]["occlusion"], "reference occluded"))
    if args.through_pipeline:
        print(format_pipeline_report(report["through_pipeline"]))
    print(f"wrote metrics.json, confusion_matrix.png, reliability.png, correct_examples.png, wrong_examples.png to "
          f"{output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
