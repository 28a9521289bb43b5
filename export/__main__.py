"""Export the trained Keras emotion CNN to ONNX for the runtime.

    python -m export --model runs/emotion_cnn_w32/best.keras --output models/emotion_cnn.onnx \\
        --data ../shared/datasets/fer2013 --int8

Converts with tf2onnx (fixed opset, dynamic batch), checks on real validation faces that Keras and
onnxruntime agree (every probability within 1e-4, same labels) and fails without writing anything
otherwise, and writes the classes, input format, normalisation and the model's numbers into its metadata.
The validation split is the one the training run held out of train/ (--val-fraction and --split-seed
from the config.json beside the model; training's defaults without one): it decides everything here,
including the temperature stored for the runtime, fitted there so that the confidence the runtime reports
(with flip averaging, its default) matches how often it is right.
FER2013 PublicTest is only evaluated, for the reported final numbers.
With --int8 it also writes an INT8-quantised copy (--int8-output, default <output>_int8.onnx), calibrated
on the rest of train/, but only if it loses less than --max-int8-loss points of validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.onnx_export import (
    INT8_MIN_OPSET,
    OPSET,
    ExportError,
    check_opset,
    check_parity,
    keras_to_onnx,
    model_metadata,
    set_metadata,
)
from export.quantize import quantize_int8
from models.data import DatasetError, FaceSet, load_fer2013
from models.emotions import model_inputs
from models.evaluate import evaluate
from models.metrics import expected_calibration_error, fit_temperature
from models.predictor import load_keras_model, onnx_predictor
from models.train import BEST_NAME, CONFIG_NAME, STATE_NAME, split_as_recorded
from realtime.classifier import with_temperature
from realtime.cli import positive_int_type
from realtime.errors import ModelError, OutputError, one_line
from realtime.io.files import check_output_path, write_atomically

EXIT_CODES = """exit codes:
  0    written
  1    failed after the work began (Keras and onnxruntime disagree, tf2onnx cannot convert the model, the disk
       is full): nothing written
  2    bad input or options (a model, data set or output path that will not do, an opset it cannot convert to),
       refused before any work: nothing written
  3    the float32 model written, the INT8 copy not (it loses more validation accuracy than --max-int8-loss); a
       file already at the INT8 path is left as it was, and is not this model's
  130  interrupted by Ctrl-C: nothing written"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained inference model (.keras), e.g. <run>/best.keras")
    parser.add_argument("--output", required=True, help="ONNX file to write, e.g. models/emotion_cnn.onnx")
    parser.add_argument("--data", required=True,
                        help="FER2013 folder, fer2013.csv or a .npz packed by python -m models.data: the validation "
                             "split of train/ for the checks, PublicTest for the reported numbers")
    parser.add_argument("--parity-faces", type=positive_int_type, default=512,
                        help="validation faces used for the parity check")
    parser.add_argument("--int8", action="store_true", help="also write an INT8-quantised copy")
    parser.add_argument("--int8-output",
                        help="where the INT8 copy goes (default: <output>_int8.onnx beside --output; the runtime "
                             "ships realtime/model/emotion_cnn_int8.onnx)")
    parser.add_argument("--max-int8-loss", type=float, default=0.5,
                        help="the INT8 copy is written only if it loses less than this many points of validation "
                             "accuracy (default 0.5)")
    parser.add_argument("--calibration-faces", type=positive_int_type, default=2048,
                        help="training faces to calibrate INT8 on")
    parser.add_argument("--opset", type=positive_int_type, default=OPSET,
                        help=f"ONNX opset to convert to (default {OPSET}, which the runtime's onnxruntime reads; "
                             f"--int8 needs at least {INT8_MIN_OPSET})")
    return parser.parse_args(argv)


def training_facts(model_path: Path) -> dict:
    """What the training run beside the model recorded (settings, best validation accuracy)."""
    facts = {}
    config, state = model_path.parent / CONFIG_NAME, model_path.parent / STATE_NAME
    if config.is_file():
        settings = json.loads(config.read_text())
        recorded = ("width", "separable_from", "epochs", "batch_size", "learning_rate", "weight_decay", "label_smoothing",
                    "class_weight_power", "val_fraction", "precision", "seed", "split_seed", "init_weights",
                    "lr_schedule", "swa_start_epoch", "teacher", "teacher_weight", "mixup", "soup_of", "batch_norm")
        facts["training"] = {key: settings[key] for key in recorded if key in settings}
        if not settings.get("teacher"):  # no distillation: its weight was never used
            facts["training"].pop("teacher_weight", None)
        if "validation_accuracy" in settings:  # a soup (models.soup) records its own
            facts["validation_accuracy"] = settings["validation_accuracy"]
    if state.is_file() and model_path.name == BEST_NAME:  # the run's best score is best.keras's, not final's
        facts["validation_accuracy"] = round(json.loads(state.read_text())["best_val_accuracy"], 4)
    return facts


def evaluated_facts(model_bytes: bytes, precision: str, validation: FaceSet, test_faces: FaceSet) -> dict:
    """Validation accuracy (what export decides on) and PublicTest numbers (reported only) for a serialised
    ONNX model that already carries its metadata."""
    predict = onnx_predictor(model_bytes)
    validation_accuracy = float((predict(validation.images).argmax(axis=1) == validation.labels).mean())
    metrics = evaluate(predict, test_faces)["metrics"]
    return {
        f"validation_accuracy_{precision}": round(validation_accuracy, 4),
        "publictest_accuracy": round(metrics["plain"]["accuracy"], 4),
        "publictest_macro_f1": round(metrics["plain"]["macro_f1"], 4),
        "publictest_accuracy_flip_tta": round(metrics["flip_tta"]["accuracy"], 4),
        "publictest_samples": len(test_faces),
    }


def with_facts(model_proto, facts: dict, temperature: float = 1.0) -> bytes:
    """The model serialised with metadata carrying ``facts`` and ``temperature``."""
    set_metadata(model_proto, model_metadata(facts, temperature))
    return model_proto.SerializeToString()


def calibration_facts(model_proto, facts: dict, validation: FaceSet) -> dict:
    """The temperature that makes the model's flip-averaged confidence match its accuracy on the validation faces
    (fit_temperature), with the calibration error and mean confidence before and after."""
    predict = onnx_predictor(with_facts(model_proto, facts))  # temperature 1: the net's own probabilities
    passes = [predict(validation.images), predict(validation.images[:, :, ::-1].copy())]
    temperature = fit_temperature(passes, validation.labels)
    before = np.mean(passes, axis=0)
    after = np.mean([with_temperature(p, temperature) for p in passes], axis=0)
    return {"temperature": temperature,
            "validation_ece_flip_tta_uncalibrated": round(expected_calibration_error(before, validation.labels), 4),
            "validation_ece_flip_tta": round(expected_calibration_error(after, validation.labels), 4),
            "validation_mean_confidence_flip_tta_uncalibrated": round(float(before.max(axis=1).mean()), 4),
            "validation_mean_confidence_flip_tta": round(float(after.max(axis=1).mean()), 4)}


def calibrated(model_proto, facts: dict, precision: str, validation: FaceSet, test_faces: FaceSet) -> tuple[dict, bytes]:
    """``facts`` with the model's calibration and evaluation added, and the model serialised with them."""
    facts = {**facts, "calibration": calibration_facts(model_proto, facts, validation)}
    temperature = facts["calibration"]["temperature"]
    facts.update(evaluated_facts(with_facts(model_proto, facts, temperature), precision, validation, test_faces))
    calibration = facts["calibration"]
    print(f"calibration ({precision}): temperature {temperature:.3f} on validation (flip averaging): "
          f"calibration error {calibration['validation_ece_flip_tta_uncalibrated']:.3f} -> "
          f"{calibration['validation_ece_flip_tta']:.3f}, mean confidence "
          f"{calibration['validation_mean_confidence_flip_tta_uncalibrated']:.1%} -> "
          f"{calibration['validation_mean_confidence_flip_tta']:.1%}")
    return facts, with_facts(model_proto, facts, temperature)


@dataclass
class Inputs:
    """What the export reads and writes, checked before any work."""

    keras_model: object
    output: Path
    int8_output: Path
    test_faces: FaceSet
    training_part: FaceSet
    validation: FaceSet
    split: dict
    training_facts: dict


def checked_inputs(args: argparse.Namespace) -> Inputs:
    """The model, the data and the output paths, checked (ExportError, DatasetError, OutputError or ModelError
    otherwise) before any work, so that bad input is refused with nothing written."""
    model_path, output = Path(args.model), Path(args.output)
    if not model_path.is_file():
        raise ExportError(f"{model_path}: {'is a folder, not a' if model_path.is_dir() else 'no such'} .keras model")
    if model_path.suffix != ".keras":
        raise ExportError(f"{model_path}: not a .keras model (export turns a trained Keras model into ONNX)")
    if args.int8_output and not args.int8:
        raise ExportError("--int8-output: give --int8 too (without it no INT8 copy is made)")
    check_opset(args.opset, args.int8)
    int8_output = Path(args.int8_output) if args.int8_output else output.with_name(f"{output.stem}_int8.onnx")
    for path in [output, int8_output] if args.int8 else [output]:  # before any work: nothing half-written
        if path.suffix != ".onnx" or not path.parent.is_dir():
            raise ExportError(f"{path}: output must be a .onnx file in an existing folder")
        check_output_path(path, (".onnx",))
    if args.int8 and int8_output.resolve() == output.resolve():
        raise ExportError(f"{int8_output}: the INT8 copy would overwrite the float32 model; give it another name")
    keras_model = load_keras_model(model_path)
    splits = load_fer2013(args.data)
    if "test" not in splits:
        raise ExportError(f"{args.data}: no test split (PublicTest) to evaluate on")
    test_faces = splits["test"]
    try:
        training_part, validation, split = split_as_recorded(model_path, splits["train"])
        recorded = training_facts(model_path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ExportError(f"{model_path.parent}: the training run's {CONFIG_NAME} or state.json beside the model "
                          f"cannot be read ({one_line(error)})") from None
    if not len(validation):
        raise ExportError(f"{args.data}: the validation split (fraction {split['fraction']}) holds no faces")
    return Inputs(keras_model, output, int8_output, test_faces, training_part, validation, split, recorded)


def run(args: argparse.Namespace, inputs: Inputs) -> int:
    """The export of checked ``inputs``: conversion, parity check, calibration, INT8 copy, files written."""
    import onnx

    keras_model, output, int8_output = inputs.keras_model, inputs.output, inputs.int8_output
    test_faces, training_part, validation, split = inputs.test_faces, inputs.training_part, inputs.validation, inputs.split
    print(f"validation: {len(validation)} faces of train/, fraction {split['fraction']}, split seed "
          f"{split['split_seed']}, from {split['from']}")

    model_proto = keras_to_onnx(keras_model, args.opset)
    facts = {"dataset": "FER2013", "architecture": keras_model.name, "parameters": keras_model.count_params(),
             "opset": args.opset, "precision": "float32", **inputs.training_facts,
             "validation_split": {**split, "samples": len(validation)}}
    parity = check_parity(keras_model, with_facts(model_proto, facts), validation.images[: args.parity_faces])
    print(f"parity: {parity['faces']} validation faces, max |keras - onnxruntime| {parity['max_abs_difference']:.1e}, "
          "same labels")
    facts, float_bytes = calibrated(model_proto, facts, "float32", validation, test_faces)
    rows = [("float32", output, facts, float_bytes)]

    int8_refused = None
    if args.int8:
        rng = np.random.default_rng(0)
        calibration_faces = training_part.images[rng.permutation(len(training_part))[: args.calibration_faces]]
        int8_proto = onnx.load_from_string(quantize_int8(float_bytes, model_inputs(calibration_faces)))
        int8_facts, int8_bytes = calibrated(int8_proto, {**facts, "precision": "int8"}, "int8", validation, test_faces)
        loss = 100 * (facts["validation_accuracy_float32"] - int8_facts["validation_accuracy_int8"])
        if loss < args.max_int8_loss:
            rows.append(("int8", int8_output, int8_facts, int8_bytes))
        else:
            int8_refused = f"it loses {loss:.2f} points of validation accuracy (limit {args.max_int8_loss})"
            print(f"int8 not written: {int8_refused}")

    for precision, path, model_facts, data in rows:
        write_atomically(path, data)
        print(f"{precision:8s} {path}  {len(data) / 1e6:.1f} MB  validation accuracy "
              f"{model_facts[f'validation_accuracy_{precision}']:.2%}; PublicTest accuracy "
              f"{model_facts['publictest_accuracy']:.2%} (flip averaging {model_facts['publictest_accuracy_flip_tta']:.2%}), "
              f"macro-F1 {model_facts['publictest_macro_f1']:.4f}")
    if int8_refused is None:
        return 0
    earlier = (f"; {int8_output} is left as it was: an earlier export, not this model's INT8 copy"
               if int8_output.exists() else "")
    print(f"warning: the INT8 copy was not written ({int8_refused}){earlier}", file=sys.stderr)
    return 3


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (EXIT_CODES)."""
    args = parse_args(argv)
    try:
        try:
            inputs = checked_inputs(args)
        except (ExportError, DatasetError, OutputError, ModelError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        try:
            return run(args, inputs)
        except (ExportError, DatasetError, OutputError, ModelError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): a model file is written only at the end, whole", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
