"""What an exported emotion model says about itself, stored as JSON in the ONNX metadata.

The export tool writes it, the runtime reads it: class names, input size, color and
normalisation are never hard-coded in the runtime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from realtime.errors import ModelError

METADATA_KEY = "emotion_tracer"


class ModelMetadataError(ModelError):
    """The model file lacks the metadata the runtime needs, or it is malformed."""


@dataclass
class ModelMetadata:
    """How to feed the model and what its outputs mean.

    A face crop is converted to ``color`` ("gray" or "bgr"), resized to ``input_size``
    (height, width) and normalised as ``(pixel * scale - mean) / std`` before inference.
    Outputs are probabilities over ``classes``, in order; the runtime reports ``softmax(log(p) / temperature)``
    of each run's (before flip averaging, so that every pass, and any evaluation built on single passes, sees
    the same numbers); export fits ``temperature`` on validation so that confidence matches accuracy (1: as
    the net says). A single pass ranks the classes the same either way.
    """

    classes: list[str]
    input_size: tuple[int, int] = (48, 48)
    color: str = "gray"
    scale: float = 1 / 255
    mean: float = 0.0
    std: float = 1.0
    temperature: float = 1.0
    facts: dict = field(default_factory=dict)  # training and evaluation facts (dataset, accuracy...)

    def to_json(self) -> str:
        """Serialise for the ONNX ``metadata_props``."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse what ``to_json`` wrote, checking the fields the runtime depends on."""
        try:
            data = json.loads(text)
            metadata = cls(
                classes=[str(name) for name in data["classes"]],
                input_size=tuple(int(v) for v in data["input_size"]),
                color=str(data["color"]),
                scale=float(data["scale"]),
                mean=float(data["mean"]),
                std=float(data["std"]),
                temperature=float(data.get("temperature", 1.0)),  # models exported before it: uncalibrated
                facts=dict(data.get("facts", {})),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ModelMetadataError(f"malformed {METADATA_KEY} metadata: {error}") from None
        if not metadata.classes or len(metadata.input_size) != 2 or metadata.color not in ("gray", "bgr") \
                or metadata.std == 0 or not metadata.temperature > 0:
            raise ModelMetadataError(f"unusable {METADATA_KEY} metadata: {text[:200]}")
        return metadata


def read_metadata(custom_metadata_map: dict[str, str], source: str) -> ModelMetadata:
    """The ModelMetadata in an onnxruntime ``get_modelmeta().custom_metadata_map``."""
    if METADATA_KEY not in custom_metadata_map:
        raise ModelMetadataError(f"{source}: not an Emotion Tracer model (no '{METADATA_KEY}' metadata); "
                                 "export one with `python -m export`")
    return ModelMetadata.from_json(custom_metadata_map[METADATA_KEY])
