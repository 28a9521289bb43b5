"""Static INT8 quantisation of the exported model with onnxruntime.quantization."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from export.onnx_export import INPUT_NAME


def quantize_int8(float_model_bytes: bytes, calibration_inputs: np.ndarray) -> bytes:
    """INT8 (QDQ, per-channel weights) copy of a float ONNX model, calibrated on normalised inputs."""
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
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        return int8_path.read_bytes()
