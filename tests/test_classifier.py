"""EmotionClassifier with the tiny test model: batching, empty input, flip TTA and model errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import realtime
from realtime.classifier import EmotionClassifier, default_model_path
from realtime.errors import ModelError
from tests.conftest import EMOTIONS, build_tiny_onnx_model


class CountingSession:
    """Wraps an onnxruntime session and counts its runs and the batch sizes it saw."""

    def __init__(self, session):
        self._session = session
        self.batch_sizes: list[int] = []

    def run(self, outputs, feeds):
        self.batch_sizes.append(len(next(iter(feeds.values()))))
        return self._session.run(outputs, feeds)


@pytest.fixture()
def classifier(tiny_model):
    return EmotionClassifier(tiny_model)


def random_crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 48, 48, 1), dtype=np.float32)


def test_reads_input_and_classes_from_the_model(classifier):
    assert classifier.input_name == "face"
    assert classifier.input_shape[1:] == [48, 48, 1]
    assert classifier.classes == EMOTIONS
    assert classifier.metadata.color == "gray"


def test_one_batched_run_equals_single_runs(classifier):
    counter = CountingSession(classifier._session)
    classifier._session = counter
    crops = random_crops(5)
    batched = classifier.predict(crops)
    assert counter.batch_sizes == [5]
    singles = np.concatenate([classifier.predict(crops[i:i + 1]) for i in range(5)])
    assert batched.shape == (5, len(EMOTIONS)) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, singles, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # different faces, different answers


def test_empty_input_gives_an_empty_result_without_running(classifier):
    counter = CountingSession(classifier._session)
    classifier._session = counter
    result = classifier.predict(np.zeros((0, 48, 48, 1), np.float32))
    assert result.shape == (0, len(EMOTIONS)) and result.dtype == np.float32
    assert counter.batch_sizes == []


def test_flip_tta_averages_the_mirror_image_in_the_same_run(tiny_model):
    plain = EmotionClassifier(tiny_model)
    tta = EmotionClassifier(tiny_model, flip_tta=True)
    counter = CountingSession(tta._session)
    tta._session = counter
    crops = random_crops(3, seed=1)
    mirrored = np.ascontiguousarray(crops[:, :, ::-1, :])
    expected = (plain.predict(crops) + plain.predict(mirrored)) / 2
    np.testing.assert_allclose(tta.predict(crops), expected, rtol=1e-5, atol=1e-6)
    assert counter.batch_sizes == [6]
    # A mirror-symmetric face gets the same answer either way.
    symmetric = (crops + crops[:, :, ::-1, :]) / 2
    np.testing.assert_allclose(tta.predict(symmetric), plain.predict(symmetric), rtol=1e-5, atol=1e-6)


def test_temperature_in_the_metadata_scales_the_logits_of_every_pass(tmp_path):
    """Probabilities are softmax(logits / temperature), computed here from the model's own weights; flip
    averaging averages the two tempered passes."""
    from onnx import numpy_helper

    path = build_tiny_onnx_model(tmp_path / "tempered.onnx", temperature=0.5)
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(path).graph.initializer}
    crops = random_crops(4, seed=2)

    def softmax_of_logits(faces: np.ndarray, temperature: float) -> np.ndarray:
        logits = (faces.reshape(len(faces), -1).astype(np.float64) @ weights["weights"] + weights["bias"]) / temperature
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exponentials / exponentials.sum(axis=1, keepdims=True)

    tempered = EmotionClassifier(path)
    assert tempered.metadata.temperature == 0.5
    np.testing.assert_allclose(tempered.predict(crops), softmax_of_logits(crops, 0.5), rtol=1e-4, atol=1e-6)
    mirrored = np.ascontiguousarray(crops[:, :, ::-1, :])
    np.testing.assert_allclose(EmotionClassifier(path, flip_tta=True).predict(crops),
                               (softmax_of_logits(crops, 0.5) + softmax_of_logits(mirrored, 0.5)) / 2,
                               rtol=1e-4, atol=1e-6)
    plain = EmotionClassifier(build_tiny_onnx_model(tmp_path / "plain.onnx"))
    np.testing.assert_allclose(plain.predict(crops), softmax_of_logits(crops, 1.0), rtol=1e-4, atol=1e-6)
    assert (tempered.predict(crops).max(axis=1) > plain.predict(crops).max(axis=1)).all()  # sharper, same ranking
    assert (tempered.predict(crops).argmax(axis=1) == plain.predict(crops).argmax(axis=1)).all()


def test_infer_crops_the_boxes_of_a_frame(classifier):
    frame = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = [(10, 10, 60, 60), (100, 50, 160, 120)]
    probabilities = classifier.infer(frame, boxes)
    assert probabilities.shape == (2, len(EMOTIONS))
    assert classifier.infer(frame, []).shape == (0, len(EMOTIONS))


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        EmotionClassifier(tmp_path / "missing.onnx")


def test_file_that_is_not_onnx(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("this is not a model")
    with pytest.raises(ModelError, match="not a readable ONNX model") as error:
        EmotionClassifier(bogus)
    assert str(error.value) == f"{bogus}: not a readable ONNX model (not an ONNX file at all)"


def test_a_keras_model_or_a_folder_is_told_what_to_give(tmp_path):
    """``--model runs/x/best.keras`` said "not an ONNX file at all", a folder "model file not found"."""
    keras_model = tmp_path / "best.keras"
    keras_model.write_bytes(b"PK a zip")
    with pytest.raises(ModelError) as error:
        EmotionClassifier(keras_model)
    assert str(error.value) == (f"{keras_model}: a Keras model; the runtime takes ONNX: export it first (python -m "
                                "export --model MODEL.keras --output MODEL.onnx --data FER2013 [--int8])")
    with pytest.raises(ModelError) as error:
        EmotionClassifier(tmp_path)
    assert str(error.value) == f"{tmp_path}: is a folder; give the model's .onnx file"


def test_onnx_model_without_emotion_tracer_metadata(tiny_model, tmp_path):
    model = onnx.load(tiny_model)
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, plain)
    with pytest.raises(ModelError, match="not an Emotion Tracer model"):
        EmotionClassifier(plain)


def test_metadata_that_disagrees_with_the_model(tiny_model, tmp_path):
    from realtime.model_metadata import METADATA_KEY, ModelMetadata
    model = onnx.load(tiny_model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: ModelMetadata(classes=EMOTIONS, input_size=(64, 64)).to_json()})
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, wrong)
    with pytest.raises(ModelError, match="does not match"):
        EmotionClassifier(wrong)


def test_default_model_is_the_int8_model_inside_the_package():
    path = default_model_path()
    assert path.name == "emotion_cnn_int8.onnx" and path.parent.name == "model"
    assert path.parent.parent == Path(realtime.__file__).parent
    assert EmotionClassifier().model_path == path

