"""Shared fixtures: the real media in ../shared (skipped when absent) and a tiny ONNX emotion model."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from realtime.model_metadata import METADATA_KEY, ModelMetadata

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
SHARED_MEDIA = SHARED / "media"
SHARED_FER2013 = SHARED / "datasets" / "fer2013"
EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]

# The tests press Ctrl-C and hang up on the programs they start, which leave a signal ignored when they were started
# with it ignored (nohup): a suite run under nohup, or as a script's background job (Ctrl-C ignored), would hand that
# on. A handler of Python's own is reset to the default in a started program.
for _number in (signal.SIGINT, signal.SIGHUP):
    if signal.getsignal(_number) == signal.SIG_IGN:
        signal.signal(_number, signal.default_int_handler if _number == signal.SIGINT else lambda *_: None)


@pytest.fixture(scope="session")
def media() -> Path:
    """../shared/media, or skip the test when this machine does not have it."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"real media not available ({SHARED_MEDIA} is missing)")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def fer2013() -> Path:
    """../shared/datasets/fer2013, or skip."""
    if not SHARED_FER2013.is_dir():
        pytest.skip(f"FER2013 not available ({SHARED_FER2013} is missing)")
    return SHARED_FER2013


def build_tiny_onnx_model(path: Path, seed: int = 0, temperature: float = 1.0) -> Path:
    """A real but tiny ONNX classifier (flatten -> linear -> softmax) with Emotion Tracer metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(0, 0.05, (48 * 48, len(EMOTIONS))).astype(np.float32), "weights")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, len(EMOTIONS)).astype(np.float32), "bias")
    shape = numpy_helper.from_array(np.array([-1, 48 * 48], dtype=np.int64), "flat_shape")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["face", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits_no_bias"]),
            helper.make_node("Add", ["logits_no_bias", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny_emotion_model",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["batch", 48, 48, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(EMOTIONS)])],
        initializer=[weights, bias, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = ModelMetadata(classes=EMOTIONS, temperature=temperature, facts={"dataset": "none: random test weights"})
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Path to a tiny ONNX emotion model built for the tests."""
    return build_tiny_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def without_escaping_ctrl_c(main, argv: list[str]) -> int:
    """``main(argv)``; a KeyboardInterrupt it lets through fails the test instead of stopping pytest."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C went through main as a traceback")


def cut_short_mp4(clip: Path, folder: Path) -> Path:
    """``clip`` rewritten as the command line's --output does (its index first), then cut at half: a download
    broken off."""
    from realtime.io.video import H264VideoWriter, VideoFileSource

    whole = folder / "whole.mp4"
    with VideoFileSource(clip) as source, H264VideoWriter(whole, source.info) as writer:
        for frame in source:
            writer.write(frame.image, frame.timestamp)
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut
