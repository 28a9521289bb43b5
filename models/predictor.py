"""Run a trained emotion model (.keras or exported .onnx) on batches of 48x48 uint8 faces."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.emotions import EMOTIONS, IMAGE_SIZE, model_inputs
from realtime.errors import ModelError, one_line

Predictor = Callable[[np.ndarray], np.ndarray]


def load_predictor(model_path: str | Path, batch_size: int = 256) -> Predictor:
    """A function mapping uint8 faces (n, 48, 48) to class probabilities (n, 7).

    ``.onnx`` files run with onnxruntime and the normalisation in their metadata;
    ``.keras`` files run with Keras and the training normalisation.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model not found: {model_path}")
    if model_path.suffix == ".onnx":
        return onnx_predictor(model_path, batch_size)
    if model_path.suffix == ".keras":
        return _keras_predictor(model_path, batch_size)
    raise ValueError(f"{model_path}: expected a .keras or .onnx model")


def onnx_predictor(model: Path | bytes, batch_size: int = 256) -> Predictor:
    """Predictor for an ONNX model file or serialised model through the runtime's own classifier
    (its normalisation from the model's metadata), so measured accuracy is what users get."""
    from realtime.classifier import EmotionClassifier

    classifier = EmotionClassifier(model, threads=None)

    def predict(faces: np.ndarray) -> np.ndarray:
        return np.concatenate([classifier.predict_faces(faces[start:start + batch_size])
                               for start in range(0, len(faces), batch_size)])

    return predict


def _keras_predictor(model_path: Path, batch_size: int) -> Predictor:
    return keras_model_predictor(load_keras_model(model_path), batch_size)


def load_keras_model(model_path: str | Path):
    """A trained emotion network from its .keras file (uncompiled), or ModelError saying what the file is not."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such .keras model", model_path)
    if not zipfile.is_zipfile(model_path):  # Keras would call it "not found"
        raise ModelError(f"{model_path}: not a Keras model file (a .keras file is a zip archive)", model_path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError... for what it cannot rebuild
        raise ModelError(f"{model_path}: not a readable Keras model ({one_line(error)[:200]})", model_path) from None
    takes, gives = tuple(model.input_shape[1:]), model.output_shape[-1]
    if takes != (IMAGE_SIZE, IMAGE_SIZE, 1) or gives != len(EMOTIONS):
        raise ModelError(f"{model_path}: not an emotion model: it takes {takes} and gives {gives} outputs, where "
                         f"an emotion model takes ({IMAGE_SIZE}, {IMAGE_SIZE}, 1) faces and gives {len(EMOTIONS)}",
                         model_path)
    return model


def keras_model_predictor(model, batch_size: int = 256) -> Predictor:
    """Predictor for a Keras model in memory, with the training normalisation."""

    def predict(faces: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(model_inputs(faces), batch_size=batch_size, verbose=0), dtype=np.float32)

    return predict


def predict_with_flip(predict: Predictor, faces: np.ndarray) -> np.ndarray:
    """Average of the predictions for the faces and their horizontal mirror images."""
    return (predict(faces) + predict(faces[:, :, ::-1].copy())) / 2


def mean_predictor(predictors: list[Predictor]) -> Predictor:
    """One predictor for an ensemble: the mean of the members' probabilities (one member: itself)."""
    if len(predictors) == 1:
        return predictors[0]
    return lambda faces: np.mean([predict(faces) for predict in predictors], axis=0)
