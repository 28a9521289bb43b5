"""Convert the Keras emotion CNN to ONNX, describe it in the metadata and check parity."""

from __future__ import annotations

import os

import numpy as np

from models.emotions import EMOTIONS, IMAGE_SIZE, INPUT_SCALE, model_inputs
from realtime.errors import one_line
from realtime.model_metadata import METADATA_KEY, ModelMetadata

OPSET = 17
MIN_OPSET = 7  # the oldest onnxruntime supports
INT8_MIN_OPSET = 13  # export.quantize's per-channel weights: DequantizeLinear's axis came with opset 13
INPUT_NAME = "face"
OUTPUT_NAME = "probabilities"
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The export failed a check; nothing was written."""


def check_opset(opset: int, int8: bool) -> None:
    """ExportError unless tf2onnx converts to ``opset`` (onnxruntime reads opsets from 7 on) and, for ``int8``,
    the quantised copy can be made in it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf2onnx.constants import OPSET_TO_IR_VERSION

    newest = max(OPSET_TO_IR_VERSION)
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(f"--opset {opset}: choose {MIN_OPSET}-{newest} (what tf2onnx converts to and onnxruntime reads)")
    if int8 and opset < INT8_MIN_OPSET:
        raise ExportError(f"--opset {opset}: --int8 needs opset {INT8_MIN_OPSET} or later")


def keras_to_onnx(keras_model, opset: int = OPSET):
    """The Keras model as an ONNX ModelProto with a dynamic batch dimension.

    tf2onnx's ``from_keras`` fails on Keras 3 models, so the model is wrapped in a
    ``tf.function`` with an explicit input signature and converted with ``from_function``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE, 1), tf.float32, name=INPUT_NAME)]
    function = tf.function(lambda face: keras_model(face, training=False), input_signature=signature)
    try:
        model_proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    except Exception as error:  # tf2onnx raises ValueError, NotImplementedError... for what it cannot convert to
        raise ExportError(f"tf2onnx cannot convert the model to opset {opset}: {one_line(error)[:200]}") from None
    _rename_output(model_proto, OUTPUT_NAME)
    return model_proto


def _rename_output(model_proto, new_name: str) -> None:
    old_name = model_proto.graph.output[0].name
    for node in model_proto.graph.node:
        node.output[:] = [new_name if name == old_name else name for name in node.output]
        node.input[:] = [new_name if name == old_name else name for name in node.input]
    model_proto.graph.output[0].name = new_name


def model_metadata(facts: dict, temperature: float = 1.0) -> ModelMetadata:
    """The metadata the runtime needs: classes, input size, color, normalisation, temperature; plus ``facts``."""
    return ModelMetadata(classes=list(EMOTIONS), input_size=(IMAGE_SIZE, IMAGE_SIZE), color="gray",
                         scale=INPUT_SCALE, mean=0.0, std=1.0, temperature=temperature, facts=facts)


def set_metadata(model_proto, metadata: ModelMetadata) -> None:
    """Store ``metadata`` in the model's ``metadata_props`` (replacing an earlier copy)."""
    kept = [prop for prop in model_proto.metadata_props if prop.key != METADATA_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()


def onnx_session(model_bytes: bytes):
    """An onnxruntime CPU session for a serialised model."""
    import onnxruntime

    return onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def check_parity(keras_model, model_bytes: bytes, faces: np.ndarray) -> dict:
    """Compare Keras and onnxruntime on uint8 faces (n, 48, 48); raise ExportError unless they agree.

    Agreement means every probability within PARITY_TOLERANCE and the same argmax for every face.
    """
    inputs = model_inputs(faces)
    expected = np.asarray(keras_model.predict(inputs, batch_size=256, verbose=0))
    session = onnx_session(model_bytes)
    actual = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    max_difference = float(np.abs(expected - actual).max())
    argmax_mismatches = int((expected.argmax(1) != actual.argmax(1)).sum())
    if max_difference > PARITY_TOLERANCE or argmax_mismatches:
        raise ExportError(f"Keras and onnxruntime disagree on {len(faces)} faces: max |difference| "
                          f"{max_difference:.2e} (limit {PARITY_TOLERANCE:.0e}), {argmax_mismatches} different labels")
    return {"faces": len(faces), "max_abs_difference": max_difference}
