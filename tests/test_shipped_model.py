"""The trained models in models/: what they say about themselves holds, and they get real faces right."""

from __future__ import annotations

import pytest

from realtime.classifier import EmotionClassifier, default_model_path
from realtime.demo import sample_photo_bgr
from realtime.pipeline import EmotionAnalyzer
from tests.conftest import EMOTIONS, PROJECT_ROOT

SHIPPED = [PROJECT_ROOT / "realtime" / "model" / "emotion_cnn_int8.onnx", PROJECT_ROOT / "models" / "emotion_cnn.onnx"]


def test_the_runtime_loads_the_shipped_int8_model_by_default():
    assert default_model_path() == SHIPPED[0]


@pytest.mark.parametrize("model_path", SHIPPED, ids=lambda path: path.name)
def test_shipped_model_metadata(model_path):
    metadata = EmotionClassifier(model_path).metadata
    assert metadata.classes == EMOTIONS
    assert (metadata.input_size, metadata.color, metadata.scale) == ((48, 48), "gray", 1 / 255)
    facts = metadata.facts
    assert facts["dataset"] == "FER2013" and facts["publictest_samples"] == 3589
    assert facts["precision"] == ("int8" if "int8" in model_path.name else "float32")
    assert facts["publictest_accuracy"] >= 0.67 and facts["publictest_accuracy_flip_tta"] >= 0.68  # the floor


def test_the_astronaut_sample_photo_is_happy():
    """Golden result on the real photo the demo uses (it ships with scikit-image, so no ../shared needed)."""
    with EmotionAnalyzer(smoothing=0) as analyzer:
        faces = analyzer.analyze(sample_photo_bgr()).faces
    assert len(faces) == 1
    assert faces[0].label == "happy" and faces[0].confidence > 0.8


@pytest.mark.parametrize("model_path", SHIPPED, ids=lambda path: path.name)
def test_publictest_accuracy_in_the_metadata_is_reproduced(model_path, fer2013):
    """Running the model on FER2013 PublicTest gives exactly the accuracies it claims, plain and with
    flip averaging (the runtime default)."""
    from models.data import load_fer2013

    test = load_fer2013(fer2013)["test"]
    plain = EmotionClassifier(model_path).predict_faces(test.images)
    flip_averaged = EmotionClassifier(model_path, flip_tta=True).predict_faces(test.images)  # the runtime's own path
    facts = EmotionClassifier(model_path).metadata.facts
    for probabilities, claimed in ((plain, facts["publictest_accuracy"]),
                                   (flip_averaged, facts["publictest_accuracy_flip_tta"])):
        accuracy = float((probabilities.argmax(axis=1) == test.labels).mean())
        assert accuracy == pytest.approx(claimed, abs=1e-4)


@pytest.mark.parametrize("model_path", SHIPPED, ids=lambda path: path.name)
def test_confidence_on_publictest_is_close_to_accuracy(model_path, fer2013):
    """The confidence the runtime reports (flip averaging, the calibrated temperature) means what it says on
    faces it was not calibrated on: PublicTest's mean confidence within 6 points of its accuracy, and nearer
    than the net's own probabilities (temperature 1), which under-state it by about 10 points."""
    from models.data import load_fer2013
    from models.metrics import expected_calibration_error
    from realtime.classifier import with_temperature

    test = load_fer2013(fer2013)["test"]
    classifier = EmotionClassifier(model_path, flip_tta=True)
    assert classifier.metadata.temperature == classifier.metadata.facts["calibration"]["temperature"] < 1
    reported = classifier.predict_faces(test.images)
    accuracy = float((reported.argmax(axis=1) == test.labels).mean())
    assert abs(float(reported.max(axis=1).mean()) - accuracy) < 0.06
    plain = EmotionClassifier(model_path).predict_faces(test.images)
    mirrored = EmotionClassifier(model_path).predict_faces(test.images[:, :, ::-1].copy())
    untempered = (with_temperature(plain, 1 / classifier.metadata.temperature)
                  + with_temperature(mirrored, 1 / classifier.metadata.temperature)) / 2  # the net's own output
    assert expected_calibration_error(reported, test.labels) < expected_calibration_error(untempered, test.labels)
