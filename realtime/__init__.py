"""Emotion Tracer runtime: faces from MediaPipe, emotions from the exported ONNX CNN, no TensorFlow."""
