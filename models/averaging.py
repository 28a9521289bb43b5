"""Stochastic weight averaging: a running mean of the weights of several epochs, with batch-norm
statistics recomputed for the averaged network (Izmailov et al., "Averaging Weights Leads to Wider
Optima and Better Generalization", 2018)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


class WeightAverage:
    """Running mean of a model's weights, one sample per epoch; saved to .npz so training can resume."""

    def __init__(self, weights: list[np.ndarray] | None = None, count: int = 0, last_epoch: int = 0):
        self.weights = weights
        self.count = count
        self.last_epoch = last_epoch

    def add(self, weights: list[np.ndarray], epoch: int) -> None:
        """Fold the weights after `epoch` (1-based) into the mean; an epoch already folded in is ignored."""
        if epoch <= self.last_epoch:
            return
        weights = [np.asarray(w, dtype=np.float64) for w in weights]
        if self.weights is None:
            self.weights = weights
        else:
            self.weights = [mean + (w - mean) / (self.count + 1) for mean, w in zip(self.weights, weights)]
        self.count += 1
        self.last_epoch = epoch

    def save(self, path: Path) -> None:
        """Write the mean atomically (a temporary file renamed over the old one)."""
        temporary = path.with_name(path.stem + ".partial.npz")
        arrays = {f"w{i}": w for i, w in enumerate(self.weights or [])}
        np.savez(temporary, count=self.count, last_epoch=self.last_epoch, **arrays)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> WeightAverage:
        """The average saved by `save`, or an empty one when the file does not exist."""
        if not path.exists():
            return cls()
        with np.load(path) as saved:
            n_weights = len([key for key in saved.files if key.startswith("w")])
            weights = [saved[f"w{i}"] for i in range(n_weights)] or None
            return cls(weights, int(saved["count"]), int(saved["last_epoch"]))


def recalibrate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> None:
    """Recompute every BatchNormalization layer's moving mean and variance on `images`.

    Averaged weights need statistics of their own: the averaged statistics belong to no network.
    Each layer's statistics become the mean over batches of its batch statistics (momentum t/(t+1)
    for batch t), with dropout switched off so later layers see inference-time activations.
    """
    layers = list(model._flatten_layers(include_self=False))
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    saved_momenta = [layer.momentum for layer in batch_norms]
    saved_rates = [layer.rate for layer in dropouts]
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for batch_index, start in enumerate(range(0, len(images), batch_size)):
            for layer in batch_norms:
                layer.momentum = batch_index / (batch_index + 1)
            model(images[start : start + batch_size], training=True)
    finally:
        for layer, momentum in zip(batch_norms, saved_momenta):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, saved_rates):
            layer.rate = rate
