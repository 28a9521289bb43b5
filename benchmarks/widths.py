"""Cost benchmark (not a test): what a network of given block widths would cost per face, before training it.

    python -m benchmarks.widths 32 36 40 "32 80 160 320" "48 128 256 512 sep2"

Each argument is one network: one number (doubling per block) or four (one per block), as
`python -m models.train --width` takes them, optionally followed by sepN for depthwise-separable blocks
from block N on (`--separable-from N`). Each is built untrained, exported to ONNX and quantised to
INT8 the way `python -m export --int8` does (calibrated on random faces: the cost does not depend on the
weights), then timed like `python -m benchmarks.pipeline --classifier-only`, on one CPU thread.
Needs the training requirements (TensorFlow, tf2onnx). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.pipeline import benchmark_classifier
from models.emotions import IMAGE_SIZE
from realtime.classifier import EmotionClassifier

CALIBRATION_FACES = 256
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices would bury the table


def untrained_int8_model(widths: tuple[int, ...], separable_from: int) -> bytes:
    """The INT8 ONNX model (with runtime metadata) of an untrained net with these block widths."""
    from export.onnx_export import keras_to_onnx, model_metadata, set_metadata
    from export.quantize import quantize_int8
    from models.architecture import build_classifier

    model = build_classifier(widths, dtype_policy="float32", separable_from=separable_from)
    proto = keras_to_onnx(model)
    set_metadata(proto, model_metadata({"architecture": model.name, "parameters": model.count_params()}))
    calibration = np.random.default_rng(0).random((CALIBRATION_FACES, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    return quantize_int8(proto.SerializeToString(), calibration)


def parse_network(text: str) -> tuple[tuple[int, ...], int]:
    """'32', '32 80 160 320' or '48 128 256 512 sep2' -> (the four block widths, the first separable block or 0),
    checked the way training checks them."""
    from models.architecture import block_widths, check_separable_from

    words = text.split()
    try:
        separable_from = int(words.pop()[3:]) if words and words[-1].startswith("sep") else 0
        return block_widths([int(word) for word in words]), check_separable_from(separable_from)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give one positive number or four, then optionally sep2, sep3 "
                                         "or sep4, e.g. 32, '32 80 160 320' or '48 128 256 512 sep2'") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.widths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="+", type=parse_network,
                        help="block widths of each network to time, optionally followed by sepN")
    args = parser.parse_args(argv)
    from models.architecture import model_name

    with tempfile.TemporaryDirectory() as folder:
        classifiers = {}
        for widths, separable_from in args.networks:
            path = Path(folder) / f"{model_name(widths, separable_from).removeprefix('emotion_cnn_')}_int8.onnx"
            path.write_bytes(untrained_int8_model(widths, separable_from))
            classifiers[path] = EmotionClassifier(path, threads=1)
        print("untrained networks, INT8 as exported; parameters: "
              + ", ".join(f"{path.stem.removesuffix('_int8')} {c.metadata.facts['parameters'] / 1e6:.2f} M"
                          for path, c in classifiers.items()))
        benchmark_classifier(classifiers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
