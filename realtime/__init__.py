"""Emotion Tracer: faces from MediaPipe, emotions from an ONNX CNN trained on FER2013, no TensorFlow.

    import realtime
    analyzer = realtime.EmotionAnalyzer()          # the shipped model, default options
    result = analyzer.analyze("photo.jpg")         # or a BGR uint8 array
    for face in result.faces:
        print(face.face_id, face.label, face.confidence, face.box, face.emotions)
    for result in analyzer.stream("clip.mp4"):     # one FrameResult per frame, ids tracked
        ...

Names are imported on first use, so ``import realtime`` stays cheap.
"""

from importlib import import_module

__version__ = "0.24.0"

_EXPORTS = {
    "EmotionAnalyzer": "realtime.pipeline",
    "process_source": "realtime.pipeline",
    "SourceWarning": "realtime.pipeline",
    "EmotionAnnotator": "realtime.annotator",
    "open_source": "realtime.sources",
    "Source": "realtime.sources",
    "Sink": "realtime.sinks",
    "Box": "realtime.types",
    "Frame": "realtime.types",
    "VideoInfo": "realtime.types",
    "FaceDetection": "realtime.types",
    "FaceResult": "realtime.types",
    "FrameResult": "realtime.types",
    "AnalyzedFrame": "realtime.types",
    "results_rows": "realtime.rows",
    "rows_dataframe": "realtime.rows",
    "EmotionTracerError": "realtime.errors",
    "SourceError": "realtime.errors",
    "OutputError": "realtime.errors",
    "ModelError": "realtime.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'realtime' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
