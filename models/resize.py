"""Resize a trained emotion CNN to other block widths: cut filters out, or widen with copies of its best ones.

    python -m models.resize --model runs/teacher_w48/final_recalibrated.keras --data ../shared/datasets/fer2013 \\
        --width 32 80 160 320 --output runs/pruned_w32-80-160-320.keras
    python -m models.resize --model models/emotion_cnn.keras --data ../shared/datasets/fer2013 \\
        --width 32 80 160 320 --output runs/widened_w32-80-160-320.keras

A starting point for a student of another width that inherits a trained net's filters (then train it with
`python -m models.train --init-weights OUT --width ...`). Each convolution's filters are ranked by how much
their output contributes to the next layer: the mean activation after ReLU on --faces training faces times
the norm of the next layer's weights on that channel (measured on the whole network, one layer at a time).
A narrower block keeps its highest-ranked filters. A wider block keeps all of them and adds copies of the
highest-ranked ones (Net2Net's widening); the next layer splits its weight on a channel among the copies in
unequal shares that sum to the original, so the wider net computes what the given one does while its copies
start apart and learn different things. A net with a narrower block gets batch-norm statistics of its own,
measured on training faces outside the validation split (the split recorded beside --model, as export and recalibrate
read it). Prints the validation accuracy of the model before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from models.emotions import model_inputs
from models.predictor import load_keras_model
from models.recalibrate import model_job_inputs, validation_accuracies
from models.train import RECALIBRATION_FACES, split_as_recorded
from realtime.errors import ModelError

BLOCKS = (1, 2, 3, 4)
CONVOLUTIONS = [f"block{block}_conv{conv}" for block in BLOCKS for conv in (1, 2)]
BLOCK_OF = {f"block{block}_conv{conv}": block for block in BLOCKS for conv in (1, 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.resize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained inference model (.keras) to resize")
    parser.add_argument("--data", required=True, help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("--width", required=True, type=int, nargs="+", metavar="FILTERS",
                        help="the new network's filters per block: one number (doubling) or four")
    parser.add_argument("--output", required=True, help="the resized model to write (.keras)")
    parser.add_argument("--faces", type=int, default=2048, help="training faces that rank the filters")
    parser.add_argument("--seed", type=int, default=0, help="picks the training faces and the copies' shares")
    return parser.parse_args(argv)


def block_widths_of(model) -> tuple[int, ...]:
    """The filters of each block of a built emotion CNN."""
    return tuple(model.get_layer(f"block{block}_conv1").filters for block in BLOCKS)


def filter_importance(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Per convolution, each filter's contribution: mean post-ReLU activation x norm of the next layer's
    weights on that channel."""
    import keras

    relus = [model.get_layer(name.replace("conv", "relu")).output for name in CONVOLUTIONS]
    activations = keras.Model(model.inputs, relus)
    sums = [np.zeros(output.shape[-1]) for output in relus]
    for start in range(0, len(images), 256):
        for index, batch in enumerate(activations(images[start : start + 256], training=False)):
            sums[index] += keras.ops.convert_to_numpy(batch).sum(axis=(0, 1, 2))
    importance = {}
    dense = model.get_layer("dense").get_weights()[0]
    for index, name in enumerate(CONVOLUTIONS):
        mean_activation = sums[index] / (len(images) * np.prod(relus[index].shape[1:3]))
        if index + 1 < len(CONVOLUTIONS):
            following = model.get_layer(CONVOLUTIONS[index + 1]).get_weights()[0]  # (3, 3, in, out)
            weight_norms = np.sqrt((following ** 2).sum(axis=(0, 1, 3)))
        else:  # the flattened (3, 3, channels) features feed the dense layer
            channels = len(mean_activation)
            weight_norms = np.sqrt((dense.reshape(-1, channels, dense.shape[1]) ** 2).sum(axis=(0, 2)))
        importance[name] = mean_activation * weight_norms
    return importance


def channel_sources(importance: np.ndarray, width: int) -> np.ndarray:
    """For each of ``width`` new channels, the given channel it copies: the ``width`` highest-ranked ones for a
    narrower layer; all of them and copies of the highest-ranked ones for a wider one (sorted)."""
    ranked = np.argsort(-importance, kind="stable")
    return np.sort(np.resize(ranked, width) if width > len(ranked) else ranked[:width])


def input_shares(sources: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    """What share of a given channel's outgoing weights each new channel carries: 1 for a channel kept once;
    for n copies, unequal shares (1 + noise) / n whose noise sums to zero, so the copies add up to the original."""
    shares = np.ones(len(sources))
    for source in np.unique(sources):
        copies = np.flatnonzero(sources == source)
        if len(copies) > 1:
            noise = rng.uniform(-spread, spread, len(copies))
            shares[copies] = (1 + noise - noise.mean()) / len(copies)
    return shares


def resize(model, widths: tuple[int, ...], importance: dict[str, np.ndarray], seed: int = 0, spread: float = 0.5):
    """A float32 network of ``widths`` computing what ``model`` computes with the channels ``channel_sources``
    picks (all of them when every block is at least as wide; statistics copied too)."""
    from models.architecture import build_classifier

    rng = np.random.default_rng(seed)
    sources = {name: channel_sources(importance[name], widths[BLOCK_OF[name] - 1]) for name in CONVOLUTIONS}
    resized = build_classifier(list(widths), dtype_policy="float32")
    inputs, shares = np.arange(1), np.ones(1)  # the gray channel
    for name in CONVOLUTIONS:
        kernel = model.get_layer(name).get_weights()[0]
        resized.get_layer(name).set_weights([kernel[:, :, inputs][:, :, :, sources[name]] * shares[:, None]])
        norm = name.replace("conv", "bn")
        resized.get_layer(norm).set_weights([w[sources[name]] for w in model.get_layer(norm).get_weights()])
        inputs, shares = sources[name], input_shares(sources[name], rng, spread)
    dense_kernel = model.get_layer("dense").get_weights()[0]
    channels = dense_kernel.shape[0] // 9
    rows = (np.arange(9)[:, None] * channels + inputs[None, :]).ravel()  # NHWC flatten order
    resized.get_layer("dense").set_weights([dense_kernel[rows] * np.tile(shares, 9)[:, None]])
    for name in ("dense_bn", "probabilities"):
        resized.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return resized


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_path, output = Path(args.model), Path(args.output)
    try:
        splits = model_job_inputs(model_path, output, args.faces, args.data)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from models.architecture import block_widths, save_model
    from models.averaging import recalibrate_batch_norm

    try:
        model = load_keras_model(model_path)
        widths = block_widths(args.width)
    except (ValueError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if any(isinstance(layer, keras.layers.SeparableConv2D) for layer in model.layers):
        print(f"error: {model_path} has depthwise-separable blocks; resizing handles plain convolutions only",
              file=sys.stderr)
        return 2
    source = block_widths_of(model)
    training_part, validation, split = split_as_recorded(model_path, splits["train"])
    order = np.random.default_rng(args.seed).permutation(len(training_part))
    ranking = model_inputs(training_part.images[order[: args.faces]])
    resized = resize(model, widths, filter_importance(model, ranking), args.seed)
    if any(target < width for target, width in zip(widths, source)):  # a cut changes what each layer sees
        statistics = model_inputs(training_part.images[order[-RECALIBRATION_FACES:]])
        recalibrate_batch_norm(resized, statistics)
        origin = f"statistics from {len(statistics)}"
    else:
        origin = "statistics copied"
    print(f"validation: {len(validation)} faces of train/ (from {split['from']}); filters ranked on {len(ranking)} "
          f"training faces, {origin}")
    for name, network in ((f"{'-'.join(map(str, source))} (given)", model),
                          (f"{'-'.join(map(str, widths))} (resized)", resized)):
        plain, flipped = validation_accuracies(network, validation)
        print(f"{name:<24} {network.count_params() / 1e6:.2f} M parameters, validation accuracy {plain:.2%}, "
              f"with flip averaging {flipped:.2%}")
    save_model(resized, output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
