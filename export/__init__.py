"""Keras -> ONNX export of the emotion CNN, with metadata, parity check and optional INT8 variant."""
