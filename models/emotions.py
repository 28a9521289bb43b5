"""The seven FER2013 emotion classes in the order the model outputs them, and the model's input form."""

import numpy as np

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# fer2013.csv numbers its labels 0-6 as angry, disgust, fear, happy, sad, surprise, neutral.
CSV_LABEL_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CSV_LABEL_TO_INDEX = {csv_label: EMOTIONS.index(name) for csv_label, name in enumerate(CSV_LABEL_NAMES)}

IMAGE_SIZE = 48

# The CNN sees pixel values scaled to [0, 1]; the export writes this into the ONNX metadata.
INPUT_SCALE = 1 / 255


def model_inputs(faces: np.ndarray) -> np.ndarray:
    """The CNN's input for uint8 faces (n, 48, 48): float32 (n, 48, 48, 1) scaled to [0, 1]."""
    return (faces.astype(np.float32) * np.float32(INPUT_SCALE))[..., None]
