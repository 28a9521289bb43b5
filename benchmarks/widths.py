"""Cost benchmark (not a test): what a network of given block widths would cost per face, before training it.

    python -m benchmarks.widths 32 36 40 "32 80 160 320" "48 128 256 512 sep2" "residual 48"

Each argument is one network: one number (doubling per block) or four (one per block), as
`python -m models.train --width` takes them, optionally followed by sepN for depthwise-separable blocks
from block N on (`--separable-from N`), or led by "residual" for the residual teachers' net
(`--architecture residual`). Each is built untrained, its parameters and multiply-adds per face counted,
exported to ONNX and quantised to INT8 the way `python -m export --int8` does (calibrated on random faces: the
cost does not depend on the weights), then timed like `python -m benchmarks.pipeline --classifier-only`, on one CPU thread.
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


def untrained_int8_model(architecture: str, widths: tuple[int, ...], separable_from: int) -> tuple[bytes, int]:
    """The INT8 ONNX model (with runtime metadata) of an untrained net of this architecture and these block widths,
    and its multiply-adds per face."""
    from export.onnx_export import keras_to_onnx, model_metadata, set_metadata
    from export.quantize import quantize_int8
    from models.architecture import build_network, multiply_adds

    model = build_network(architecture, widths, dtype_policy="float32", separable_from=separable_from)
    proto = keras_to_onnx(model)
    set_metadata(proto, model_metadata({"architecture": model.name, "parameters": model.count_params()}))
    calibration = np.random.default_rng(0).random((CALIBRATION_FACES, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    return quantize_int8(proto.SerializeToString(), calibration), multiply_adds(model)


def parse_network(text: str) -> tuple[str, tuple[int, ...], int]:
    """'32', '32 80 160 320', '48 128 256 512 sep2' or 'residual 48' -> (the architecture, the four block widths,
    the first separable block or 0), checked the way training checks them."""
    from models.architecture import ARCHITECTURES, block_widths, check_architecture, check_separable_from

    words = text.split()
    architecture = words.pop(0) if words and words[0] in ARCHITECTURES else "vgg"
    try:
        separable_from = int(words.pop()[3:]) if words and words[-1].startswith("sep") else 0
        widths = block_widths([int(word) for word in words])
        return check_architecture(architecture, check_separable_from(separable_from)), widths, separable_from
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give one positive number or four, then optionally sep2, sep3 "
                                         "or sep4, e.g. 32, '32 80 160 320' or '48 128 256 512 sep2'; or 'residual' "
                                         "and widths, e.g. 'residual 48'") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.widths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="+", type=parse_network,
                        help="block widths of each network to time, optionally followed by sepN or led by residual")
    args = parser.parse_args(argv)
    from models.architecture import model_name

    with tempfile.TemporaryDirectory() as folder:
        classifiers, operations = {}, {}
        for architecture, widths, separable_from in args.networks:
            name = model_name(widths, separable_from, architecture).removeprefix("emotion_cnn_")
            path = Path(folder) / f"{name}_int8.onnx"
            model, operations[name] = untrained_int8_model(architecture, widths, separable_from)
            path.write_bytes(model)
            classifiers[path] = EmotionClassifier(path, threads=1)
        print("untrained networks, INT8 as exported; parameters: "
              + ", ".join(f"{path.stem.removesuffix('_int8')} {c.metadata.facts['parameters'] / 1e6:.2f} M"
                          for path, c in classifiers.items()))
        print("multiply-adds per face: " + ", ".join(f"{name} {count / 1e6:.0f} M" for name, count in operations.items()))
        benchmark_classifier(classifiers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
