"""Static INT8 quantisation of the exported model with onnxruntime.quantization."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from export.onnx_export import INPUT_NAME


def first_convolution(model_path: Path) -> str:
    """The name of the graph's first Conv node (the one that reads the one-channel face)."""
    import onnx

    return next(node.name for node in onnx.load(str(model_path)).graph.node if node.op_type == "Conv")


def quantize_int8(float_model_bytes: bytes, calibration_inputs: np.ndarray) -> bytes:
    """INT8 (QDQ, per-channel weights) copy of a float ONNX model, calibrated on normalised inputs.

    The first convolution stays float32: it reads one channel, so INT8 saves no arithmetic there,
    while onnxruntime's quantised kernel for it is slower than the float one (it costs about 5% of the
    whole model's time at batch 1).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(np.array_split(calibration_inputs, max(1, len(calibration_inputs) // 64)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as folder:
        float_path, prepared_path, int8_path = (Path(folder) / name for name in ("f.onnx", "p.onnx", "q.onnx"))
        float_path.write_bytes(float_model_bytes)
        quant_pre_process(str(float_path), str(prepared_path), skip_symbolic_shape=True)
        quantize_static(str(prepared_path), str(int8_path), Batches(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        nodes_to_exclude=[first_convolution(prepared_path)])
        return int8_path.read_bytes()
