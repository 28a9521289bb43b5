"""Emotion classification of face crops with the exported ONNX model (onnxruntime, CPU).

Everything about the model (input name and shape, classes, color, normalisation) is read from
the file itself; the runtime has no list of emotions of its own.
"""

from __future__ import annotations

import numbers
import os
import re
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from realtime.crops import normalize_faces, prepare_crops
from realtime.errors import ModelError
from realtime.model_metadata import ModelMetadata, read_metadata

SHIPPED_MODEL = "emotion_cnn_int8.onnx"  # inside the package's model/ folder


def default_model_path() -> Path:
    """The INT8 model shipped inside the installed package."""
    path = Path(str(resources.files("realtime") / "model" / SHIPPED_MODEL))
    if not path.is_file():
        raise ModelError(f"the shipped model {path} is missing; reinstall emotion-tracer or pass --model PATH", path)
    return path


def with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / temperature)`` per row (float32): the same ranking, confidence sharpened (< 1) or
    softened (> 1); the probabilities unchanged at 1."""
    if temperature == 1.0:
        return probabilities
    scaled = np.log(np.maximum(probabilities.astype(np.float64), 1e-12)) / temperature
    scaled = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def check_threads(threads: int) -> int:
    """``threads`` if it is a whole number from 1 to the machine's CPU cores (more only slow every
    thread down), else ValueError."""
    cores = os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"threads must be a whole number of at least 1, not {threads!r}")
    threads = int(threads)
    if threads > cores:
        raise ValueError(f"{threads} threads is more than this machine's {cores} CPU cores")
    return threads


class EmotionClassifier:
    """Emotion probabilities for face crops; all faces of a frame go through one batched run.

    ``model_path``: an exported .onnx model (a path, or the serialised model as bytes), by default
    the shipped one (``default_model_path()``).
    ``threads``: onnxruntime intra-op threads (None: onnxruntime's default).
    ``flip_tta``: average each face's probabilities with those of its mirror image.
    """

    def __init__(self, model_path: str | Path | bytes | None = None, threads: int | None = None,
                 flip_tta: bool = False):
        model = model_path if isinstance(model_path, bytes) else None
        self.model_path = Path("model") if model is not None else \
            Path(model_path) if model_path is not None else default_model_path()
        self.flip_tta = flip_tta
        if model is None and self.model_path.is_dir():
            raise ModelError(f"{self.model_path}: is a folder; give the model's .onnx file", self.model_path)
        if model is None and not self.model_path.is_file():
            raise ModelError(f"model file not found: {self.model_path}", self.model_path)
        if model is None and self.model_path.suffix.lower() in (".keras", ".h5"):
            raise ModelError(f"{self.model_path}: a Keras model; the runtime takes ONNX: export it first (python -m "
                             "export --model MODEL.keras --output MODEL.onnx --data FER2013 [--int8])", self.model_path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = check_threads(threads)
        try:
            self._session = ort.InferenceSession(model if model is not None else str(self.model_path),
                                                 sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if "INVALID_PROTOBUF" in detail:
                raise ModelError(f"{self.model_path}: not a readable ONNX model (not an ONNX file at all)") from None
            detail = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", detail)  # onnxruntime's status code
            raise ModelError(f"{self.model_path}: not a readable ONNX model ({detail[:200]})") from None
        self.metadata: ModelMetadata = read_metadata(self._session.get_modelmeta().custom_metadata_map,
                                                     str(self.model_path))
        model_input = self._session.get_inputs()[0]
        self.input_name: str = model_input.name
        self.input_shape: list = list(model_input.shape)
        self._check_model()

    @property
    def classes(self) -> list[str]:
        """Class names in the order of the probability columns."""
        return list(self.metadata.classes)

    def _check_model(self) -> None:
        """The model's input and output must agree with its metadata."""
        channels = 1 if self.metadata.color == "gray" else 3
        expected = [*self.metadata.input_size, channels]
        if len(self.input_shape) != 4 or any(isinstance(size, int) and size != want
                                             for size, want in zip(self.input_shape[1:], expected)):
            raise ModelError(f"{self.model_path}: input shape {self.input_shape} does not match its metadata "
                             f"(batch, {expected[0]}, {expected[1]}, {expected[2]})")
        output_shape = self._session.get_outputs()[0].shape
        if len(output_shape) != 2 or (isinstance(output_shape[1], int)
                                      and output_shape[1] != len(self.metadata.classes)):
            raise ModelError(f"{self.model_path}: output shape {output_shape} does not match its "
                             f"{len(self.metadata.classes)} classes")

    def _preprocess(self, image_bgr: np.ndarray, boxes: list[tuple[int, int, int, int]],
                    rolls: list[float] | None) -> np.ndarray:
        return prepare_crops(image_bgr, boxes, self.metadata, rolls=rolls)

    def infer(self, image_bgr: np.ndarray, boxes: list[tuple[int, int, int, int]],
              rolls: list[float] | None = None) -> np.ndarray:
        """Probabilities (n_boxes, n_classes) for the faces at ``boxes`` in a BGR frame; ``rolls`` (degrees,
        one per box) turns tilted heads towards upright in their crops (see ``realtime.crops.crop_square``)."""
        return self.predict(self._preprocess(image_bgr, boxes, rolls))

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (n, n_classes) for uint8 faces already cut to the model's input size, (n, H, W)
        gray or (n, H, W, 3) BGR: the path evaluation takes, with the runtime's normalisation."""
        return self.predict(normalize_faces(faces, self.metadata))

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (n, n_classes) float32 for prepared crops (n, H, W, C); one run for all n."""
        n_classes = len(self.metadata.classes)
        if len(crops) == 0:
            return np.zeros((0, n_classes), dtype=np.float32)
        batch = np.ascontiguousarray(crops, dtype=np.float32)
        if self.flip_tta:
            batch = np.concatenate([batch, np.ascontiguousarray(np.flip(batch, axis=2))])
        output = self._session.run(None, {self.input_name: batch})[0]
        return self._postprocess(output, len(crops))

    def _postprocess(self, output: np.ndarray, n_faces: int) -> np.ndarray:
        probabilities = with_temperature(np.asarray(output, dtype=np.float32).reshape(-1, len(self.metadata.classes)),
                                         self.metadata.temperature)
        if self.flip_tta:  # rows n..2n are the mirrored faces
            probabilities = (probabilities[:n_faces] + probabilities[n_faces:]) / 2.0
        return probabilities
