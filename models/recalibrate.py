"""Recompute a trained model's batch-norm statistics on clean training faces.

    python -m models.recalibrate --model runs/teacher_w48/best.keras --data ../shared/datasets/fer2013 \\
        --output runs/teacher_w48/recalibrated.keras

A run without weight averaging keeps the batch-norm statistics gathered during training, on augmented
(with --mixup also blended) batches, which clean faces at inference do not match. This recomputes them on
--faces training faces outside the validation split (the split the run beside the model held out, from
its config.json, as export does), prints the validation accuracy before and after, plain and with flip
averaging, and writes the recalibrated model (float32; every other weight unchanged). Which of the two to
use is the caller's choice, made on those validation numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from models.data import DatasetError, FaceSet, load_fer2013
from models.emotions import model_inputs
from models.evaluate import evaluate
from models.predictor import keras_model_predictor, load_keras_model
from models.train import RECALIBRATION_FACES, split_as_recorded
from realtime.errors import ModelError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.recalibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained inference model (.keras), e.g. <run>/best.keras")
    parser.add_argument("--data", required=True, help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("--output", required=True,
                        help="recalibrated model to write (.keras); beside --model, so that export finds the "
                             "run's config.json")
    parser.add_argument("--faces", type=int, default=RECALIBRATION_FACES,
                        help="training faces (outside the validation split) to measure the statistics on")
    parser.add_argument("--seed", type=int, default=0, help="picks those faces")
    return parser.parse_args(argv)


def validation_accuracies(model, validation: FaceSet) -> tuple[float, float]:
    """Accuracy on the validation faces, plain and averaged with the mirror image."""
    metrics = evaluate(keras_model_predictor(model), validation)["metrics"]
    return metrics["plain"]["accuracy"], metrics["flip_tta"]["accuracy"]


def model_job_inputs(model_path: Path, output: Path | None, faces: int, data: str) -> dict[str, FaceSet]:
    """FER2013's splits for a job that reads one .keras model and writes another (recalibrate, resize; soup
    checks its own output folder and passes None); raises ValueError with a one-line reason when the paths,
    --faces or the data are wrong."""
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise ValueError(f"{model_path}: no such .keras model")
    if output is not None and (output.suffix != ".keras" or not output.parent.is_dir()):
        raise ValueError(f"{output}: output must be a .keras file in an existing folder")
    if faces < 1:
        raise ValueError(f"--faces must be at least 1 (got {faces})")
    try:
        return load_fer2013(data, folders=("train",))
    except DatasetError as error:
        raise ValueError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_path, output = Path(args.model), Path(args.output)
    try:
        splits = model_job_inputs(model_path, output, args.faces, args.data)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from models.architecture import save_model
    from models.averaging import recalibrate_batch_norm

    training_part, validation, split = split_as_recorded(model_path, splits["train"])
    chosen = np.random.default_rng(args.seed).permutation(len(training_part))[: args.faces]
    print(f"validation: {len(validation)} faces of train/ (fraction {split['fraction']}, split seed "
          f"{split['split_seed']}, from {split['from']}); statistics from {len(chosen)} other training faces")

    try:
        model = load_keras_model(model_path)  # one line for a file that is not an emotion model
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    before = validation_accuracies(model, validation)
    recalibrate_batch_norm(model, model_inputs(training_part.images[chosen]))
    after = validation_accuracies(model, validation)
    for name, (plain, flipped) in (("as trained", before), ("recalibrated", after)):
        print(f"{name:<13} validation accuracy {plain:.2%}, with flip averaging {flipped:.2%}")

    save_model(model, output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
