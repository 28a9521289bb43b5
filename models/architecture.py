"""The emotion CNN for 48x48 grayscale faces (VGG-style, the shipped kind, or residual, for teachers that err
differently) and its training augmentation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers

from models.emotions import EMOTIONS, IMAGE_SIZE


def block_widths(width: int | Sequence[int]) -> tuple[int, ...]:
    """Filters of the four blocks: one number (alone or in a list) doubles per block (32 -> 32, 64, 128, 256);
    four are taken as given."""
    numbers = [width] if isinstance(width, int) else [int(filters) for filters in width]
    widths = tuple(numbers[0] * 2 ** block for block in range(4)) if len(numbers) == 1 else tuple(numbers)
    if len(widths) != 4 or min(widths) < 1:
        raise ValueError(f"width {list(widths)}: give one number or four positive ones (one per block)")
    return widths


def check_separable_from(block: int) -> int:
    """The first block built of depthwise-separable convolutions: 2-4, or 0 for none (the first block, on
    one input channel, has nothing to separate)."""
    if block not in (0, 2, 3, 4):
        raise ValueError(f"separable from block {block}: give 2, 3 or 4 (0: no separable blocks)")
    return block


ARCHITECTURES = ("vgg", "residual")


def check_architecture(architecture: str, separable_from: int = 0) -> str:
    """``architecture`` if it is one of ARCHITECTURES and goes with ``separable_from`` (VGG-style nets only)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r}: give one of {', '.join(ARCHITECTURES)}")
    if architecture != "vgg" and separable_from:
        raise ValueError("depthwise-separable blocks (separable from) are built for the vgg architecture only")
    return architecture


def model_name(width: int | Sequence[int], separable_from: int = 0, architecture: str = "vgg") -> str:
    """emotion_cnn_w32 for doubling widths, emotion_cnn_w32-80-160-320 for four given ones; "_sep2" ends the
    name of a net whose blocks from the second on are depthwise-separable; a residual net is
    emotion_cnn_residual_w64."""
    widths = block_widths(width)
    kind = "emotion_cnn" if check_architecture(architecture, separable_from) == "vgg" else f"emotion_cnn_{architecture}"
    name = f"{kind}_w{widths[0]}" if widths == block_widths(widths[0]) else f"{kind}_w{'-'.join(map(str, widths))}"
    return name + (f"_sep{check_separable_from(separable_from)}" if separable_from else "")


def build_classifier(width: int | Sequence[int] = 32, dropout: float = 0.5, dtype_policy: str | None = None,
                     separable_from: int = 0) -> keras.Model:
    """The inference network: (batch, 48, 48, 1) pixels scaled to [0, 1] -> 7 softmax probabilities.

    Four blocks of two 3x3 conv + batch-norm + ReLU layers, each followed by 2x2 max pooling, with
    ``block_widths(width)`` filters (width, 2*width, 4*width, 8*width for one number); then a 256-unit
    dense layer and the classifier. From block ``separable_from`` on (0: none), each 3x3 convolution is
    depthwise-separable (a 3x3 filter per channel, then a 1x1 convolution): about 1/9 of the multiply-adds
    of a full one, so those blocks can be wider at the same cost.
    """
    policy = dtype_policy or keras.config.dtype_policy().name
    check_separable_from(separable_from)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = inputs
    for block, filters in enumerate(block_widths(width), start=1):
        convolution = layers.SeparableConv2D if separable_from and block >= separable_from else layers.Conv2D
        for conv in (1, 2):
            x = convolution(filters, 3, padding="same", use_bias=False, dtype=policy, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(dtype=policy, name=f"block{block}_bn{conv}")(x)
            x = layers.Activation("relu", dtype=policy, name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, dtype=policy, name=f"block{block}_pool")(x)
        x = layers.SpatialDropout2D(0.05 * block, dtype=policy, name=f"block{block}_dropout")(x)
    x = layers.Flatten(dtype=policy, name="flatten")(x)
    x = layers.Dense(256, use_bias=False, dtype=policy, name="dense")(x)
    x = layers.BatchNormalization(dtype=policy, name="dense_bn")(x)
    x = layers.Activation("relu", dtype=policy, name="dense_relu")(x)
    x = layers.Dropout(dropout, dtype=policy, name="dense_dropout")(x)
    outputs = layers.Dense(len(EMOTIONS), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=model_name(width, separable_from))


def build_residual_classifier(width: int | Sequence[int] = 64, dropout: float = 0.3,
                              dtype_policy: str | None = None) -> keras.Model:
    """A residual network (ResNet-18's layout sized for 48x48 faces) with the same input and output as
    ``build_classifier``: a 3x3 stem, then four stages of two basic blocks (two 3x3 conv + batch-norm layers
    added to a shortcut, then ReLU) with ``block_widths(width)`` filters, the first block of stages 2-4 halving
    the resolution with stride 2 (48 -> 24 -> 12 -> 6, a strided 1x1 convolution on its shortcut); then global
    average pooling and the classifier. Where the VGG-style net flattens a 3x3 map into a dense layer, this one
    pools a 6x6 map and trains 16 convolutions deep, so as a teacher it errs on other faces.
    """
    policy = dtype_policy or keras.config.dtype_policy().name

    def conv_bn(x, filters: int, kernel: int, stride: int, name: str):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, dtype=policy,
                          name=f"{name}_conv")(x)
        return layers.BatchNormalization(dtype=policy, name=f"{name}_bn")(x)

    widths = block_widths(width)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = layers.Activation("relu", dtype=policy, name="stem_relu")(conv_bn(inputs, widths[0], 3, 1, "stem"))
    for stage, filters in enumerate(widths, start=1):
        for block in (1, 2):
            name = f"stage{stage}_block{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            shortcut = x if stride == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, stride, f"{name}_shortcut")
            residual = layers.Activation("relu", dtype=policy, name=f"{name}_relu1")(
                conv_bn(x, filters, 3, stride, f"{name}_1"))
            residual = conv_bn(residual, filters, 3, 1, f"{name}_2")
            x = layers.Add(dtype=policy, name=f"{name}_add")([shortcut, residual])
            x = layers.Activation("relu", dtype=policy, name=f"{name}_relu2")(x)
    x = layers.GlobalAveragePooling2D(dtype=policy, name="pool")(x)
    x = layers.Dropout(dropout, dtype=policy, name="dropout")(x)
    outputs = layers.Dense(len(EMOTIONS), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=model_name(width, architecture="residual"))


def build_network(architecture: str, width: int | Sequence[int], dtype_policy: str | None = None,
                  separable_from: int = 0) -> keras.Model:
    """The inference network of ``architecture`` (one of ARCHITECTURES) at ``width``."""
    if check_architecture(architecture, separable_from) == "residual":
        return build_residual_classifier(width, dtype_policy=dtype_policy)
    return build_classifier(width, dtype_policy=dtype_policy, separable_from=separable_from)


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds per face of ``model``'s convolutions and dense layers (the rest is a small share)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.SeparableConv2D):
            height, width, _ = layer.output.shape[1:]
            rows, columns, channels, multiplier = layer.depthwise_kernel.shape
            total += height * width * (rows * columns * channels * multiplier + channels * multiplier * layer.filters)
        elif isinstance(layer, layers.Conv2D):
            height, width, _ = layer.output.shape[1:]
            total += height * width * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return int(total)


AUGMENTATION_NAME = "augmentation"  # the training model's augmentation layer (models.sharpness finds it by name)


def build_augmentation(seed: int) -> keras.Sequential:
    """Face-appropriate augmentation on [0, 1] images: flip, small rotation/shift/zoom, brightness, contrast."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed + 1),
            layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 2),
            layers.RandomZoom((-0.15, 0.15), fill_mode="nearest", seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0.0, 1.0), seed=seed + 4),
            layers.RandomContrast(0.25, value_range=(0.0, 1.0), seed=seed + 5),
        ],
        name=AUGMENTATION_NAME,
    )


def float32_copy(model: keras.Model, weights: list | None = None) -> keras.Model:
    """The same network in float32 (whatever precision it trained in), holding ``weights`` (default: its own)."""
    return policy_copy(model, "float32", weights)


def policy_copy(model: keras.Model, policy: str, weights: list | None = None) -> keras.Model:
    """The same network computing in dtype policy ``policy`` (its probabilities in float32, as built), holding
    ``weights`` (default: its own) as float32 variables."""
    config = model.get_config()
    for layer in config["layers"]:
        if "dtype" in layer["config"] and layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "float32" if layer["config"]["name"] == "probabilities" else policy
    copy = keras.Model.from_config(config)
    copy.set_weights([weight.astype("float32") for weight in (model.get_weights() if weights is None else weights)])
    return copy


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save ``model`` as ``path`` (.keras) through a partial file: an interrupted save leaves the old file or none."""
    path = Path(path)
    partial = path.with_name(f"{path.stem}.partial.keras")
    try:
        model.save(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
