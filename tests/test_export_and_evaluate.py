"""Export (parity, metadata, INT8, nothing written on failure) and evaluation outputs."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest

pytest.importorskip("tensorflow", reason="export needs the training requirements (requirements-dev.txt)")

from export import __main__ as export_cli  # noqa: E402
from export.onnx_export import ExportError, check_parity, keras_to_onnx  # noqa: E402
from models import evaluate as evaluate_cli  # noqa: E402
from models.data import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, FaceSet, load_fer2013, stratified_split  # noqa: E402
from models.emotions import EMOTIONS  # noqa: E402
from models.metrics import (  # noqa: E402
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    paired_comparison,
    reliability_bins,
)
from models.predictor import load_predictor  # noqa: E402
from realtime.crops import crop_square  # noqa: E402
from realtime.demo import sample_photo_bgr  # noqa: E402
from realtime.model_metadata import METADATA_KEY, ModelMetadata, read_metadata  # noqa: E402
from tests.conftest import PROJECT_ROOT, build_tiny_onnx_model, without_escaping_ctrl_c  # noqa: E402
from tests.fer_fixtures import make_fer_folder, synthetic_face  # noqa: E402


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A small trained-for-a-moment Keras model and the tiny dataset it saw."""

    from models.architecture import build_classifier

    folder = tmp_path_factory.mktemp("export")
    data = make_fer_folder(folder / "fer", per_class=6)
    train = load_fer2013(data)["train"]
    model = build_classifier(width=4, dtype_policy="float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(train.images[..., None] / 255.0, train.labels, epochs=2, verbose=0)
    path = folder / "small.keras"
    model.save(path)
    return path, data


def test_export_writes_a_model_that_matches_keras_and_describes_itself(small_model, tmp_path, capsys):
    import keras

    model_path, data = small_model
    output = tmp_path / "model.onnx"
    assert export_cli.main(["--model", str(model_path), "--output", str(output), "--data", str(data)]) == 0
    assert "same labels" in capsys.readouterr().out

    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    metadata = read_metadata(session.get_modelmeta().custom_metadata_map, str(output))
    assert metadata.classes == list(EMOTIONS) and metadata.input_size == (48, 48) and metadata.color == "gray"
    assert metadata.scale == pytest.approx(1 / 255)
    assert metadata.facts["dataset"] == "FER2013" and 0 <= metadata.facts["publictest_accuracy"] <= 1
    calibration = metadata.facts["calibration"]  # fitted on validation, stored where the runtime reads it
    assert metadata.temperature == calibration["temperature"] and 0.25 <= metadata.temperature <= 4
    assert all(0 <= calibration[key] <= 1 for key in ("validation_ece_flip_tta", "validation_ece_flip_tta_uncalibrated",
                                                      "validation_mean_confidence_flip_tta"))

    # dynamic batch: 1 and 5 faces both run and agree with Keras
    test_faces = load_fer2013(data)["test"].images[:5]
    inputs = (test_faces.astype(np.float32) * metadata.scale)[..., None]
    expected = keras.models.load_model(model_path).predict(inputs, verbose=0)
    assert np.abs(session.run(None, {"face": inputs})[0] - expected).max() < 1e-4
    assert np.abs(session.run(None, {"face": inputs[:1]})[0] - expected[:1]).max() < 1e-4

    # the accuracy in the metadata is what evaluating the exported file gives
    metrics_dir = tmp_path / "evaluation"
    assert evaluate_cli.main(["--model", str(output), "--data", str(data), "--output-dir", str(metrics_dir)]) == 0
    metrics = json.loads((metrics_dir / "metrics.json").read_text())
    assert metrics["plain"]["accuracy"] == pytest.approx(metadata.facts["publictest_accuracy"], abs=1e-4)


def test_parity_failure_raises_and_export_writes_nothing(small_model, tmp_path, monkeypatch, capsys):
    import keras

    model_path, data = small_model
    model = keras.models.load_model(model_path)
    model_bytes = keras_to_onnx(model).SerializeToString()
    other = keras.models.load_model(model_path)
    other.layers[-1].bias.assign(other.layers[-1].bias + np.linspace(-2, 2, 7))  # a different model
    faces = load_fer2013(data)["test"].images
    check_parity(model, model_bytes, faces)
    with pytest.raises(ExportError, match="disagree"):
        check_parity(other, model_bytes, faces)

    def failing_parity(*args, **kwargs):
        raise ExportError("Keras and onnxruntime disagree (simulated)")

    monkeypatch.setattr(export_cli, "check_parity", failing_parity)
    output = tmp_path / "model.onnx"  # a failure after the work began: 1, not bad input's 2
    assert export_cli.main(["--model", str(model_path), "--output", str(output), "--data", str(data)]) == 1
    assert "disagree" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_bad_paths_are_one_line_errors(small_model, tmp_path, capsys):
    """Bad input, refused before any work: exit 2 (as models.evaluate and models.data), one line, nothing written."""
    model_path, data = small_model
    assert export_cli.main(["--model", str(tmp_path / "none.keras"), "--output", str(tmp_path / "m.onnx"),
                            "--data", str(data)]) == 2
    assert export_cli.main(["--model", str(model_path), "--output", str(tmp_path / "no" / "m.onnx"),
                            "--data", str(data)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    # the INT8 copy's path is checked before any work, so that the float32 file is not left alone
    int8_cases = [(["--int8", "--int8-output", str(tmp_path / "no" / "b_int8.onnx")], "in an existing folder"),
                  (["--int8", "--int8-output", str(tmp_path / "m.onnx")], "would overwrite the float32 model"),
                  (["--int8", "--int8-output", str(tmp_path / "m_int8.txt")], "must be a .onnx file"),
                  (["--int8-output", str(tmp_path / "m_int8.onnx")], "give --int8 too")]
    for extra, message in int8_cases:
        assert export_cli.main(["--model", str(model_path), "--output", str(tmp_path / "m.onnx"), "--data", str(data),
                                *extra]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and message in error and "\n" not in error
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert export_cli.main(["--model", str(tmp_path / "broken.keras"), "--output", str(tmp_path / "m.onnx"),
                            "--data", str(data)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'broken.keras'}: not a Keras model file "
                                               "(a .keras file is a zip archive)")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.keras"]  # nothing written
    run_dir = tmp_path / "run"  # a training run whose config.json is cut short: which split is unknown
    run_dir.mkdir()
    shutil.copyfile(model_path, run_dir / "best.keras")
    (run_dir / "config.json").write_text('{"val_fraction": 0.5, "split_')
    assert export_cli.main(["--model", str(run_dir / "best.keras"), "--output", str(tmp_path / "m.onnx"),
                            "--data", str(data)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {run_dir}: the training run's config.json or state.json beside the model "
                            "cannot be read (") and error.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_a_runs_best_validation_accuracy_is_recorded_for_its_best_model_only(tmp_path):
    """final.keras (or a model recalibrated beside it) was exported with best.keras's score as its own."""
    (tmp_path / "config.json").write_text(json.dumps({"width": 4, "val_fraction": 0.1, "split_seed": 42}))
    (tmp_path / "state.json").write_text(json.dumps({"epochs_done": 3, "best_val_accuracy": 0.61234}))
    assert export_cli.training_facts(tmp_path / "best.keras")["validation_accuracy"] == 0.6123
    for other in ("final.keras", "final_recalibrated.keras"):
        facts = export_cli.training_facts(tmp_path / other)
        assert facts["training"]["width"] == 4 and "validation_accuracy" not in facts


def test_int8_variant_is_written_with_its_own_numbers(small_model, tmp_path, capsys):
    model_path, data = small_model
    output = tmp_path / "model.onnx"
    assert export_cli.main(["--model", str(model_path), "--output", str(output), "--data", str(data), "--int8",
                            "--max-int8-loss", "100", "--calibration-faces", "32"]) == 0
    assert "from training defaults (no config.json beside the model)" in capsys.readouterr().out
    int8 = onnxruntime.InferenceSession(str(tmp_path / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    facts = read_metadata(int8.get_modelmeta().custom_metadata_map, "int8").facts
    assert facts["precision"] == "int8"
    # training's default split of 6 faces per class: 1 per class held out
    assert facts["validation_split"] == {"fraction": 0.1, "split_seed": 42, "samples": 7,
                                         "from": "training defaults (no config.json beside the model)"}
    assert 0 <= facts["validation_accuracy_int8"] <= 1 and 0 <= facts["validation_accuracy_float32"] <= 1
    graph = __import__("onnx").load(tmp_path / "model_int8.onnx").graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    # the one-channel first convolution keeps float32 weights; every later one reads INT8 weights
    assert convolutions[0].input[1] in {tensor.name for tensor in graph.initializer}
    assert len(convolutions) > 1 and all(conv.input[1] in dequantized for conv in convolutions[1:])


def always_happy_model(folder) -> bytes:
    """An ONNX emotion model (with metadata) that calls every face happy."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(build_tiny_onnx_model(folder / "happy.onnx"))
    bias = next(tensor for tensor in model.graph.initializer if tensor.name == "bias")
    bias.CopyFrom(numpy_helper.from_array(100 * np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index("happy")], "bias"))
    return model.SerializeToString()


def save_stripe_reader(path) -> None:
    """A Keras model that reads the class from the bright stripe of the fixture faces (right on all of them)."""
    import keras

    weights = np.zeros((48, 48, len(EMOTIONS)), dtype=np.float32)
    for label in range(len(EMOTIONS)):
        weights[4 + 6 * label:9 + 6 * label, 8:40, label] = 0.1  # where synthetic_face draws the stripe
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(len(EMOTIONS), activation="softmax")])
    model.layers[-1].set_weights([weights.reshape(-1, len(EMOTIONS)), np.zeros(len(EMOTIONS), dtype=np.float32)])
    model.save(path)


@pytest.mark.parametrize("happy_only, written", [("test", False), ("train", True)])
def test_int8_gate_decides_on_the_training_runs_validation_split_not_on_publictest(
        tmp_path, monkeypatch, capsys, happy_only, written):
    """An "INT8" model that calls every face happy: where only PublicTest is all happy it gains there and loses on
    validation (not written); where only train/ (so validation) is all happy it is the reverse (written)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_stripe_reader(run_dir / "best.keras")
    (run_dir / "config.json").write_text(json.dumps({"val_fraction": 0.5, "split_seed": 3, "seed": 1}))
    data = make_fer_folder(tmp_path / "fer", per_class=6, seed=1)
    for emotion in EMOTIONS:
        if emotion != "happy":
            shutil.rmtree(data / happy_only / emotion)
    monkeypatch.setattr(export_cli, "quantize_int8", lambda model_bytes, calibration: always_happy_model(tmp_path))

    output = tmp_path / "model.onnx"
    (tmp_path / "model_int8.onnx").write_bytes(b"an earlier export")
    assert export_cli.main(["--model", str(run_dir / "best.keras"), "--output", str(output), "--data", str(data),
                            "--int8", "--max-int8-loss", "0.5"]) == (0 if written else 3)  # it was 0, unsaid
    captured = capsys.readouterr()
    printed = captured.out
    assert "from config.json" in printed
    assert ((tmp_path / "model_int8.onnx").read_bytes() == b"an earlier export") != written
    assert ("int8 not written: it loses" in printed) != written
    assert (captured.err == "") == written
    if not written:  # the runtime takes the INT8 file: an earlier model's beside this one's float32 file is said
        assert captured.err.startswith("warning: the INT8 copy was not written (it loses ") and captured.err.endswith(
            f"; {tmp_path / 'model_int8.onnx'} is left as it was: an earlier export, not this model's INT8 copy\n")
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    facts = read_metadata(session.get_modelmeta().custom_metadata_map, "float32").facts
    train = load_fer2013(data)["train"]
    expected = stratified_split(train, 0.5, 3)[1]  # the split training drew with those settings
    assert facts["validation_split"] == {"fraction": 0.5, "split_seed": 3, "samples": len(expected), "from": "config.json"}
    assert facts["publictest_samples"] == len(load_fer2013(data)["test"])
    assert facts["validation_accuracy_float32"] == facts["publictest_accuracy"] == 1.0
    # models.evaluate scores the exported model on the split its metadata records, not on training's default one
    assert evaluate_cli.main(["--model", str(output), "--data", str(data), "--split", "validation",
                              "--output-dir", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["samples"] == len(expected) != len(stratified_split(train, DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)[1])
    assert metrics["split"] == f"validation (50% of train/, split seed 3, as recorded in {output}'s metadata)"
    assert metrics["validation_split"] == {"fraction": 0.5, "split_seed": 3, "from": f"as recorded in {output}'s metadata"}


def test_metadata_round_trip_and_rejection():
    metadata = ModelMetadata(classes=list(EMOTIONS), facts={"publictest_accuracy": 0.7})
    assert ModelMetadata.from_json(metadata.to_json()) == metadata
    from realtime.model_metadata import ModelMetadataError

    with pytest.raises(ModelMetadataError, match="not an Emotion Tracer model"):
        read_metadata({}, "x.onnx")
    with pytest.raises(ModelMetadataError):
        read_metadata({METADATA_KEY: '{"classes": []}'}, "x.onnx")
    tempered = ModelMetadata(classes=list(EMOTIONS), temperature=0.8)
    assert ModelMetadata.from_json(tempered.to_json()).temperature == 0.8
    without = json.loads(metadata.to_json())
    del without["temperature"]  # a model exported before calibration: its probabilities as they are
    assert ModelMetadata.from_json(json.dumps(without)).temperature == 1.0
    with pytest.raises(ModelMetadataError, match="unusable"):
        ModelMetadata.from_json(json.dumps({**without, "temperature": 0}))


def test_fitted_temperature_undoes_overconfidence_and_calibration_error_measures_it():
    """Labels drawn from softmax(z); the model says softmax(2 z), twice too sure: the fitted temperature is 2,
    which brings the calibration error down to sampling noise."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (20000, 7))

    def softmax(values):
        exponentials = np.exp(values - values.max(axis=1, keepdims=True))
        return exponentials / exponentials.sum(axis=1, keepdims=True)

    truth = softmax(logits)
    labels = (truth.cumsum(axis=1) > rng.random((len(logits), 1))).argmax(axis=1)
    overconfident = softmax(2 * logits).astype(np.float32)
    assert fit_temperature([overconfident], labels) == pytest.approx(2.0, rel=0.05)
    assert fit_temperature([truth.astype(np.float32)], labels) == pytest.approx(1.0, rel=0.05)
    assert expected_calibration_error(overconfident, labels) > 0.1
    assert expected_calibration_error(truth, labels) < 0.02
    always_sure = np.eye(7)[labels]  # right every time with confidence 1
    assert expected_calibration_error(always_sure, labels) == 0.0


def test_reliability_bins_count_faces_confidence_and_accuracy_per_bin():
    probabilities = np.array([[0.95, 0.05], [0.92, 0.08], [0.35, 0.65], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 0, 0])  # right, wrong, right, right, wrong
    assert reliability_bins(probabilities, labels) == [
        {"low": 0.6, "high": 0.7, "faces": 2, "mean_confidence": pytest.approx(0.625), "accuracy": 1.0},
        {"low": 0.7, "high": 0.8, "faces": 1, "mean_confidence": pytest.approx(0.7), "accuracy": 0.0},
        {"low": 0.9, "high": 1.0, "faces": 2, "mean_confidence": pytest.approx(0.935), "accuracy": 0.5}]
    # the error is the face-weighted gap: (2 * 0.375 + 0.7 + 2 * 0.435) / 5
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(0.464)


def test_report_numbers_agree_with_a_direct_computation():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 7, 500)
    predicted = np.where(rng.random(500) < 0.6, true, rng.integers(0, 7, 500))
    report = classification_report(confusion_matrix(true, predicted, 7), EMOTIONS)
    assert report["accuracy"] == pytest.approx((true == predicted).mean())
    f1_scores = []
    for label, name in enumerate(EMOTIONS):
        true_positive = np.sum((predicted == label) & (true == label))
        precision = true_positive / np.sum(predicted == label)
        recall = true_positive / np.sum(true == label)
        assert report["per_class"][name]["precision"] == pytest.approx(precision)
        assert report["per_class"][name]["recall"] == pytest.approx(recall)
        f1_scores.append(2 * precision * recall / (precision + recall))
    assert report["macro_f1"] == pytest.approx(np.mean(f1_scores))


def test_paired_comparison_counts_faces_and_gives_the_exact_mcnemar_p_value():
    model = np.array([True] * 10 + [False] * 3 + [True] * 5)
    reference = np.array([False] * 10 + [False] * 3 + [True] * 5)
    assert paired_comparison(model, reference) == {"gained": 10, "lost": 0, "p_value": pytest.approx(2 / 1024)}
    assert paired_comparison(reference, model)["lost"] == 10
    balanced = paired_comparison(np.array([True, False] * 4), np.array([False, True] * 4))
    assert (balanced["gained"], balanced["lost"], balanced["p_value"]) == (4, 4, 1.0)
    # 9 against 3: P(X <= 3 | n = 12, 1/2) = 299 / 4096, doubled
    nine_three = paired_comparison(np.array([True] * 9 + [False] * 3), np.array([False] * 9 + [True] * 3))
    assert nine_three["p_value"] == pytest.approx(2 * 299 / 4096)
    assert paired_comparison(np.array([True]), np.array([True]))["p_value"] == 1.0  # no face differs


def test_evaluation_against_a_reference_compares_face_by_face(small_model, tiny_model, tmp_path, capsys):
    model_path, data = small_model
    output_dir = tmp_path / "against"
    assert evaluate_cli.main(["--model", str(model_path), "--data", str(data), "--output-dir", str(output_dir),
                              "--against", str(tiny_model)]) == 0
    test = load_fer2013(data)["test"]
    model_correct = load_predictor(model_path)(test.images).argmax(axis=1) == test.labels
    reference_correct = load_predictor(tiny_model)(test.images).argmax(axis=1) == test.labels
    against = json.loads((output_dir / "metrics.json").read_text())["against"]
    assert against["reference"] == str(tiny_model)
    assert against["plain"]["reference_accuracy"] == pytest.approx(reference_correct.mean())
    assert against["plain"]["gained"] == int((model_correct & ~reference_correct).sum())
    assert against["plain"]["lost"] == int((~model_correct & reference_correct).sum())
    assert f"against {tiny_model}:" in capsys.readouterr().out
    assert evaluate_cli.main(["--model", str(model_path), "--data", str(data), "--output-dir", str(output_dir),
                              "--against", str(tmp_path / "missing.onnx")]) == 2


def test_evaluation_under_occlusion_scores_faces_with_a_gray_band(small_model, tiny_model, tmp_path, capsys):
    model_path, data = small_model
    test = load_fer2013(data)["test"]
    covered = evaluate_cli.occluded(test, (30, 44))
    assert np.all(covered.images[:, 30:44] == evaluate_cli.OCCLUSION_GRAY)
    np.testing.assert_array_equal(covered.images[:, :30], test.images[:, :30])
    np.testing.assert_array_equal(covered.images[:, 44:], test.images[:, 44:])
    assert not np.all(test.images[:, 30:44] == evaluate_cli.OCCLUSION_GRAY)  # the band changed something

    output_dir = tmp_path / "occlusion"
    assert evaluate_cli.main(["--model", str(model_path), "--data", str(data), "--output-dir", str(output_dir),
                              "--occlusion", "--against", str(tiny_model)]) == 0
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert set(metrics["occlusion"]) == set(metrics["against"]["occlusion"]) == set(evaluate_cli.OCCLUSION_BANDS)
    for path, numbers in ((model_path, metrics["occlusion"]), (tiny_model, metrics["against"]["occlusion"])):
        predict = load_predictor(path)
        for name, rows in evaluate_cli.OCCLUSION_BANDS.items():
            images = evaluate_cli.occluded(test, rows).images
            flipped = (predict(images) + predict(images[:, :, ::-1])) / 2
            assert numbers[name]["rows"] == list(rows)
            assert numbers[name]["accuracy"] == pytest.approx((predict(images).argmax(axis=1) == test.labels).mean())
            assert numbers[name]["flip_accuracy"] == pytest.approx((flipped.argmax(axis=1) == test.labels).mean())
            assert numbers[name]["flip_mean_confidence"] == pytest.approx(flipped.max(axis=1).mean(), abs=1e-6)
            counts = np.bincount(flipped.argmax(axis=1), minlength=7)
            assert numbers[name]["flip_most_common_share"] == pytest.approx(counts.max() / len(test))
            assert counts[EMOTIONS.index(numbers[name]["flip_most_common_label"])] == counts.max()
    out = capsys.readouterr().out
    assert "occluded (gray band):\n  eyes (rows 12-23): accuracy" in out and "reference occluded (gray band):" in out


def test_evaluation_writes_figures_and_json(small_model, tmp_path, capsys):
    model_path, data = small_model
    output_dir = tmp_path / "evaluation"
    assert evaluate_cli.main(["--model", str(model_path), "--data", str(data), "--output-dir", str(output_dir)]) == 0
    for name in ("metrics.json", "confusion_matrix.png", "reliability.png", "correct_examples.png",
                 "wrong_examples.png"):
        assert (output_dir / name).stat().st_size > 1000 or name == "metrics.json"
    metrics = json.loads((output_dir / "metrics.json").read_text())
    matrix = np.array(metrics["plain"]["confusion_matrix"])
    assert matrix.sum() == metrics["samples"] == 42
    for name in ("plain", "flip_tta"):  # the reliability bins hold every face and agree with the accuracy
        bins = metrics[name]["reliability"]
        assert sum(row["faces"] for row in bins) == 42
        assert sum(row["faces"] * row["accuracy"] for row in bins) / 42 == pytest.approx(metrics[name]["accuracy"])
    assert metrics["split"] == "FER2013 PublicTest"
    assert "FER2013 PublicTest: accuracy" in capsys.readouterr().out
    assert evaluate_cli.main(["--model", str(tmp_path / "missing.onnx"), "--data", str(data)]) == 2
    capsys.readouterr()
    # files that are no model, or a model of something else, and an output folder that is a file: one line each
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00garbage")
    (tmp_path / "a_file").write_text("x")
    import keras

    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]).save(tmp_path / "foreign.keras")
    cases = [(["--model", str(tmp_path / "corrupt.onnx")], "not a readable ONNX model (not an ONNX file at all)"),
             (["--model", str(model_path), "--against", str(tmp_path / "corrupt.onnx")], "not an ONNX file at all"),
             (["--model", str(tmp_path / "foreign.keras")], "not an emotion model: it takes (10,) and gives 3 outputs"),
             (["--model", str(model_path), "--output-dir", str(tmp_path / "a_file")], "cannot create it")]
    for extra, message in cases:
        assert evaluate_cli.main([*extra, "--data", str(data)]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1


def test_evaluation_on_training_validation_split_of_an_ensemble(small_model, tiny_model, tmp_path, capsys):
    """--split validation is the part of train/ that training holds out; several models are one ensemble whose
    accuracy is that of their mean probabilities, after a line per model."""
    model_path, data = small_model
    output_dir = tmp_path / "validation"
    assert evaluate_cli.main(["--model", str(model_path), str(tiny_model), "--data", str(data), "--split",
                              "validation", "--output-dir", str(output_dir)]) == 0
    validation = stratified_split(load_fer2013(data)["train"], DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)[1]
    members = [load_predictor(model_path), load_predictor(tiny_model)]
    mean = (members[0](validation.images) + members[1](validation.images)) / 2
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["samples"] == len(validation)
    assert metrics["split"] == ("validation (10% of train/, split seed 42, training's defaults: the models record none), "
                                "ensemble of 2")
    assert metrics["plain"]["accuracy"] == pytest.approx((mean.argmax(axis=1) == validation.labels).mean())
    assert metrics["model"] == f"{model_path} + {tiny_model}"
    out = capsys.readouterr().out
    assert f"{model_path}: accuracy" in out and f"{tiny_model}: accuracy" in out and "ensemble of 2" in out
    assert evaluate_cli.main(["--model", str(tiny_model), str(tiny_model), "--data", str(data),
                              "--through-pipeline"]) == 2
    assert "needs one exported .onnx model" in capsys.readouterr().err


def run_recording_a_split(folder: Path, fraction: float, split_seed: int) -> Path:
    """A training run's folder: a .keras model (the stripe reader) and the config.json that records its split."""
    folder.mkdir()
    save_stripe_reader(folder / "best.keras")
    (folder / "config.json").write_text(json.dumps({"val_fraction": fraction, "split_seed": split_seed, "seed": 1}))
    return folder / "best.keras"


def test_evaluation_on_validation_uses_the_split_the_training_run_recorded(tmp_path, capsys):
    """A model trained with --val-fraction 0.5 --split-seed 3 is scored on that run's validation faces, not on
    training's default split (whose faces it mostly trained on); the report says which split and where it is from.
    On PublicTest its training faces (train/ less its own split) decide which faces are unseen."""
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    model = run_recording_a_split(tmp_path / "run", 0.5, 3)
    train = load_fer2013(data)["train"]
    training, validation = stratified_split(train, 0.5, 3)
    assert evaluate_cli.main(["--model", str(model), "--data", str(data), "--split", "validation",
                              "--output-dir", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["samples"] == len(validation) == 21  # the default split holds 7
    label = f"validation (50% of train/, split seed 3, as recorded in {tmp_path / 'run' / 'config.json'})"
    assert metrics["split"] == label
    assert metrics["validation_split"] == {"fraction": 0.5, "split_seed": 3,
                                           "from": f"as recorded in {tmp_path / 'run' / 'config.json'}"}
    assert metrics["unseen"]["faces"] == 21  # none of them is a copy of the faces it trained on
    assert f"{label}: accuracy 100.00%" in capsys.readouterr().out

    # a PublicTest face copied from a face this run trained on, which the default split holds out
    default_validation = stratified_split(train, DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)[1]
    source = next(name for name in default_validation.names if name in training.names)
    test_face = next(name for name in load_fer2013(data)["test"].names if f"/{source.split('/')[1]}/" in name)
    shutil.copyfile(data / source, data / test_face)
    assert evaluate_cli.main(["--model", str(model), "--data", str(data), "--output-dir", str(tmp_path / "t")]) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["split"] == "FER2013 PublicTest" and "validation_split" not in metrics
    assert metrics["unseen"]["faces"] == metrics["samples"] - 1 and metrics["unseen"]["copies"]["faces"] == 1


def test_evaluation_refuses_models_that_record_different_validation_splits(tiny_model, tmp_path, capsys):
    """An ensemble, or a model and its --against reference, trained with different splits: on validation each would
    be scored on faces another trained on, so it is one error line before any work (exit 2), unless --val-fraction
    and --split-seed choose the split; on PublicTest nothing is refused."""
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    model = run_recording_a_split(tmp_path / "run", 0.5, 3)
    other = run_recording_a_split(tmp_path / "other", 0.5, 4)
    output_dir = tmp_path / "e"
    for extra, described in [
        (["--model", str(model), str(other)], f"{other}: 50% of train/, split seed 4, as recorded in "
                                              f"{tmp_path / 'other' / 'config.json'})"),
        (["--model", str(model), "--against", str(tiny_model)],
         f"{tiny_model}: 10% of train/, split seed 42, training's defaults: the model records none)"),
    ]:
        assert evaluate_cli.main([*extra, "--data", str(data), "--split", "validation",
                                  "--output-dir", str(output_dir)]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: --split validation: the models record different validation splits ({model}: "
                                "50% of train/, split seed 3, as recorded in ") and error.count("\n") == 1
        assert described in error and "evaluate them apart, or choose one split with --val-fraction and --split-seed" in error
    assert not output_dir.exists()

    assert evaluate_cli.main(["--model", str(model), "--against", str(tiny_model), "--data", str(data), "--split",
                              "validation", "--val-fraction", "0.5", "--split-seed", "4",
                              "--output-dir", str(output_dir)]) == 0
    metrics = json.loads((output_dir / "metrics.json").read_text())
    validation = stratified_split(load_fer2013(data)["train"], 0.5, 4)[1]
    assert metrics["samples"] == len(validation) and metrics["split"] == "validation (50% of train/, split seed 4, as given)"
    reference_correct = load_predictor(tiny_model)(validation.images).argmax(axis=1) == validation.labels
    assert metrics["against"]["plain"]["reference_accuracy"] == pytest.approx(reference_correct.mean())
    assert evaluate_cli.main(["--model", str(model), str(other), "--data", str(data),
                              "--output-dir", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["split"] == "FER2013 PublicTest, ensemble of 2"

    for extra in (["--val-fraction", "0.5"], ["--split-seed", "3"], ["--val-fraction", "1.5", "--split-seed", "3"]):
        with pytest.raises(SystemExit) as exit_info:
            evaluate_cli.parse_args(["--model", str(model), "--data", str(data), "--split", "validation", *extra])
        assert exit_info.value.code == 2
    assert "--val-fraction and --split-seed go together" in capsys.readouterr().err


def with_facts_in_metadata(path: Path, facts: dict) -> Path:
    """The exported model at ``path`` with ``facts`` in its metadata, as export writes them."""
    import onnx

    from export.onnx_export import set_metadata

    model = onnx.load(path)
    set_metadata(model, ModelMetadata(classes=list(EMOTIONS), facts=facts))
    onnx.save(model, path)
    return path


def test_the_validation_split_a_model_records(tmp_path, capsys):
    """Exported models: the split in the metadata (validation_split; for models exported before it, the training
    settings, with the --seed that split runs from before --split-seed); none where export used training's
    defaults. A .keras model: its run's config.json, none without one; one that cannot be read is one error line."""
    recorded = {"fraction": 0.5, "split_seed": 3}
    cases = [({"validation_split": {**recorded, "from": "config.json", "samples": 21}}, recorded),
             ({"training": {"val_fraction": 0.5, "seed": 3}}, recorded),
             ({"training": {"val_fraction": 0.5, "split_seed": 3, "seed": 9}}, recorded),
             ({"validation_split": {"fraction": 0.1, "split_seed": 42, "samples": 7,
                                    "from": "training defaults (no config.json beside the model)"}}, None),
             ({"dataset": "FER2013"}, None)]
    for index, (facts, expected) in enumerate(cases):
        path = with_facts_in_metadata(build_tiny_onnx_model(tmp_path / f"m{index}.onnx"), facts)
        split = evaluate_cli.recorded_split(str(path), "--model")
        assert split == (None if expected is None else {**expected, "from": f"{path}'s metadata"}), facts
    save_stripe_reader(tmp_path / "alone.keras")
    assert evaluate_cli.recorded_split(str(tmp_path / "alone.keras"), "--model") is None
    # a model that records training's default split goes with one that records none
    default = with_facts_in_metadata(build_tiny_onnx_model(tmp_path / "default.onnx"), {"validation_split": {
        "fraction": 0.1, "split_seed": 42, "from": "config.json", "samples": 7}})
    assert evaluate_cli.validation_splits([("--model", str(default)), ("--against", str(tmp_path / "alone.keras"))],
                                          None) == [
        {"fraction": 0.1, "split_seed": 42, "models": [str(default), str(tmp_path / "alone.keras")],
         "from": f"as recorded in {default}'s metadata, and training's defaults for the 1 model that records none"}]

    data = make_fer_folder(tmp_path / "fer", per_class=2)
    model = run_recording_a_split(tmp_path / "run", 0.5, 3)
    config = tmp_path / "run" / "config.json"
    for text, message in [('{"val_fraction": 0.5, "split_', f"{config} cannot be read ("),
                          ('{"val_fraction": "half", "split_seed": 3}', f"{config} records no usable validation split")]:
        config.write_text(text)
        assert evaluate_cli.main(["--model", str(tmp_path / "alone.keras"), "--against", str(model), "--data", str(data),
                                  "--output-dir", str(tmp_path / "e")]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: --against {model}: {message}") and error.count("\n") == 1
    assert not (tmp_path / "e").exists()


def test_tool_help_lists_the_exit_codes(capsys):
    """export, models.evaluate and models.data: 2 for bad input refused before any work, 1 for a failure after it
    began, 130 for Ctrl-C, as their --help says."""
    from models import data as data_cli

    for parse in (export_cli.parse_args, evaluate_cli.parse_args, lambda argv: data_cli.main(argv)):
        with pytest.raises(SystemExit):
            parse(["--help"])
        out = capsys.readouterr().out
        assert "exit codes:" in out and "\n  2    bad input or options" in out and "\n  130  interrupted by Ctrl-C" in out
        assert "\n  1    " in out


def test_evaluation_reports_the_faces_without_a_copy_among_the_training_faces(small_model, tiny_model, tmp_path,
                                                                                capsys):
    """Validation (and PublicTest) faces whose exact pixels are also among the training faces are reported apart:
    accuracy on the rest ("unseen"), and the comparison with a reference on them."""
    model_path, _ = small_model
    data = make_fer_folder(tmp_path / "fer", per_class=20)
    training, validation = stratified_split(load_fer2013(data)["train"], DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)
    copied = validation.names[:3]
    for name in copied:  # the file of a training face of the same class, byte for byte
        source = next(other for other in training.names if other.split("/")[1] == name.split("/")[1])
        shutil.copyfile(data / source, data / name)
    test_copy = next(name for name in load_fer2013(data)["test"].names if "/angry/" in name)
    shutil.copyfile(data / next(name for name in training.names if "/angry/" in name), data / test_copy)
    validation = stratified_split(load_fer2013(data)["train"], DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)[1]
    unseen = np.array([name not in copied for name in validation.names])

    output_dir = tmp_path / "validation"
    assert evaluate_cli.main(["--model", str(model_path), "--data", str(data), "--split", "validation",
                              "--output-dir", str(output_dir), "--against", str(tiny_model)]) == 0
    metrics = json.loads((output_dir / "metrics.json").read_text())
    predict, reference = load_predictor(model_path), load_predictor(tiny_model)
    correct = predict(validation.images).argmax(axis=1) == validation.labels
    reference_correct = reference(validation.images).argmax(axis=1) == validation.labels
    assert metrics["unseen"]["faces"] == len(validation) - 3 == unseen.sum()
    assert metrics["unseen"]["plain"] == pytest.approx(correct[unseen].mean())
    flipped = (predict(validation.images) + predict(validation.images[:, :, ::-1])) / 2
    assert metrics["unseen"]["flip_tta"] == pytest.approx((flipped.argmax(axis=1) == validation.labels)[unseen].mean())
    assert metrics["unseen"]["copies"]["faces"] == 3
    assert metrics["unseen"]["copies"]["plain"] == pytest.approx(correct[~unseen].mean())
    on_unseen = metrics["against"]["unseen"]
    assert on_unseen["plain"]["reference_accuracy"] == pytest.approx(reference_correct[unseen].mean())
    assert on_unseen["plain"]["gained"] == int((correct & ~reference_correct)[unseen].sum())
    assert on_unseen["plain"]["lost"] == int((~correct & reference_correct)[unseen].sum())
    out = capsys.readouterr().out
    assert f"unseen faces (no exact copy among the training faces), {unseen.sum()} of {len(validation)}: accuracy" in out
    assert f"; the 3 with a copy: {correct[~unseen].mean():.2%}, " in out
    assert f"  unseen faces ({unseen.sum()}), plain: reference accuracy" in out

    assert evaluate_cli.main(["--model", str(model_path), "--data", str(data), "--output-dir", str(tmp_path / "t")]) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["split"] == "FER2013 PublicTest" and metrics["unseen"]["faces"] == metrics["samples"] - 1


def test_recalibration_recomputes_batch_norm_on_training_faces_outside_the_recorded_split(small_model, tmp_path,
                                                                                          capsys):
    """Statistics wrecked on purpose are measured anew on the chosen training faces of the run's own split
    (config.json beside the model); every other weight stays; bad input is one line and writes nothing."""
    import keras

    from models import recalibrate as recalibrate_cli
    from models.averaging import recalibrate_batch_norm
    from models.emotions import model_inputs

    model_path, data = small_model
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"val_fraction": 0.5, "split_seed": 3}))
    wrecked = keras.models.load_model(model_path, compile=False)
    for layer in wrecked.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(layer.moving_mean + 5.0)
    wrecked.save(run_dir / "best.keras")
    output = run_dir / "recalibrated.keras"
    assert recalibrate_cli.main(["--model", str(run_dir / "best.keras"), "--data", str(data), "--output", str(output),
                                 "--faces", "10", "--seed", "4"]) == 0

    training_part, validation = stratified_split(load_fer2013(data)["train"], 0.5, 3)
    expected = keras.models.load_model(run_dir / "best.keras", compile=False)
    chosen = np.random.default_rng(4).permutation(len(training_part))[:10]
    recalibrate_batch_norm(expected, model_inputs(training_part.images[chosen]))
    written = keras.models.load_model(output, compile=False)
    for got, want, before in zip(written.weights, expected.weights, wrecked.weights):
        assert np.allclose(np.asarray(got), np.asarray(want), atol=1e-5), got.path
        if "moving_mean" in got.path:
            assert np.abs(np.asarray(got) - np.asarray(before)).max() > 1.0, got.path
        elif "moving_variance" not in got.path:
            assert np.array_equal(np.asarray(got), np.asarray(before)), got.path
    out = capsys.readouterr().out
    assert f"validation: {len(validation)} faces of train/ (fraction 0.5, split seed 3, from config.json)" in out
    assert "as trained    validation accuracy" in out and "recalibrated  validation accuracy" in out

    (run_dir / "notes.keras").write_text("not a model")  # a Keras traceback before
    for bad_arguments in (["--model", str(run_dir / "missing.keras"), "--output", str(run_dir / "out.keras")],
                          ["--model", str(run_dir / "best.keras"), "--output", str(run_dir / "out.onnx")],
                          ["--model", str(run_dir / "notes.keras"), "--output", str(run_dir / "out.keras")]):
        assert recalibrate_cli.main([*bad_arguments, "--data", str(data)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert sorted(path.name for path in run_dir.iterdir()) == ["best.keras", "config.json", "notes.keras",
                                                               "recalibrated.keras"]


def test_evaluation_through_the_pipeline_counts_detected_whole_image_and_missing_faces(small_model, tiny_model,
                                                                                      tmp_path, capsys):
    """The fixture's striped faces hold no face MediaPipe finds: up to 160 pixels the runtime takes each whole
    (at 48x48 that is the face itself, so the plain accuracy exactly), above it nothing is reported."""
    _, data = small_model
    numbers = {}
    for size in (None, 48, 192):
        output_dir = tmp_path / str(size)
        size_args = [] if size is None else ["--pipeline-size", str(size)]
        assert evaluate_cli.main(["--model", str(tiny_model), "--data", str(data), "--output-dir", str(output_dir),
                                  "--through-pipeline", *size_args]) == 0
        metrics = json.loads((output_dir / "metrics.json").read_text())
        numbers[size] = metrics["through_pipeline"]
        assert numbers[size]["plain_accuracy"] == pytest.approx(metrics["plain"]["accuracy"])
    assert "through the pipeline (192x192): face detected in 0 of 42, whole image 0, none 42" in capsys.readouterr().out
    assert (numbers[None]["image_size"], numbers[None]["whole_image"], numbers[None]["detected"]) == (160, 42, 0)
    assert numbers[48]["whole_image"] == 42 and numbers[48]["accuracy"] == numbers[48]["plain_accuracy"]
    assert numbers[192]["no_face"] == 42 and numbers[192]["accuracy"] == 0.0
    assert numbers[192]["accuracy_detected"] is None
    keras_model, _ = small_model
    assert evaluate_cli.main(["--model", str(keras_model), "--data", str(data), "--through-pipeline"]) == 2
    assert "needs one exported .onnx model" in capsys.readouterr().err


def test_evaluation_through_the_pipeline_detects_a_real_face():
    """A real (happy) face cut to 48x48 gray among the fixture faces: the detector finds it at 192x192, the
    others give no face."""
    astronaut = cv2.cvtColor(crop_square(sample_photo_bgr(), (178, 83, 273, 178)), cv2.COLOR_BGR2GRAY)
    rng = np.random.default_rng(0)
    images = np.stack([cv2.resize(astronaut, (48, 48), interpolation=cv2.INTER_AREA)]
                      + [synthetic_face(label, rng) for label in range(len(EMOTIONS))])
    faces = FaceSet(images, np.array([EMOTIONS.index("happy"), *range(len(EMOTIONS))]), ["astronaut"] + ["striped"] * 7)
    numbers = evaluate_cli.evaluate_through_pipeline(PROJECT_ROOT / "realtime" / "model" / "emotion_cnn_int8.onnx",
                                                     faces, 192)
    assert (numbers["detected"], numbers["whole_image"], numbers["no_face"]) == (1, 0, 7)
    assert numbers["accuracy_detected"] == numbers["plain_accuracy_detected"] == 1.0
    assert numbers["accuracy"] == pytest.approx(1 / 8)


def test_export_refuses_an_opset_it_cannot_convert_to_before_any_work(tmp_path, monkeypatch, capsys):
    """An opset tf2onnx does not convert to, or one too old for the INT8 copy: one line, before data or model load."""
    monkeypatch.setattr(export_cli, "load_fer2013", lambda data: pytest.fail("the data were loaded"))
    save_stripe_reader(tmp_path / "m.keras")
    for extra, message in [(["--opset", "999"], "--opset 999: choose 7-"), (["--opset", "5"], "--opset 5: choose 7-"),
                           (["--opset", "12", "--int8"], "--opset 12: --int8 needs opset 13 or later")]:
        assert export_cli.main(["--model", str(tmp_path / "m.keras"), "--output", str(tmp_path / "m.onnx"),
                                "--data", str(tmp_path), *extra]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: {message}") and error.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.keras"]


def test_a_model_tf2onnx_cannot_convert_is_an_export_error(monkeypatch):
    import keras
    import tf2onnx

    def unsupported(*args, **kwargs):
        raise NotImplementedError("Unsupported ops: Counter({'FancyOp': 1})")

    monkeypatch.setattr(tf2onnx.convert, "from_function", unsupported)
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    with pytest.raises(ExportError, match=r"tf2onnx cannot convert the model to opset 17: Unsupported ops: Counter"):
        keras_to_onnx(model)


def test_export_of_a_folder_says_it_is_a_folder(tmp_path, capsys):
    assert export_cli.main(["--model", str(tmp_path), "--output", str(tmp_path / "m.onnx"), "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: is a folder, not a .keras model\n"


def test_export_interrupted_exits_130_and_writes_nothing(tmp_path, monkeypatch, capsys):
    save_stripe_reader(tmp_path / "m.keras")
    data = make_fer_folder(tmp_path / "fer", per_class=6)  # one validation face per class

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_cli, "keras_to_onnx", interrupted)
    assert without_escaping_ctrl_c(export_cli.main, ["--model", str(tmp_path / "m.keras"), "--output",
                                                     str(tmp_path / "m.onnx"), "--data", str(data)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted (Ctrl-C): a model file is written only at the end, whole"
    assert not (tmp_path / "m.onnx").exists()


def test_export_help_says_how_the_int8_gate_decides(capsys):
    """The gate writes the INT8 copy when it loses less than --max-int8-loss points (strictly), as the README says."""
    with pytest.raises(SystemExit):
        export_cli.parse_args(["--help"])
    assert "only if it loses less than this many points of validation accuracy" in " ".join(capsys.readouterr().out.split())


def stripe_reader_onnx(path, classes: list[str]):
    """An exported model that reads the class from the fixture faces' stripe, its outputs in ``classes`` order."""
    import onnx
    from onnx import numpy_helper

    from export.onnx_export import set_metadata

    model = onnx.load(build_tiny_onnx_model(path))
    weights = np.zeros((48, 48, len(classes)), dtype=np.float32)
    for column, name in enumerate(classes):
        if name in EMOTIONS:
            label = EMOTIONS.index(name)
            weights[4 + 6 * label:9 + 6 * label, 8:40, column] = 0.1  # where synthetic_face draws the stripe
    for tensor in model.graph.initializer:
        if tensor.name in ("weights", "bias"):
            value = weights.reshape(-1, len(classes)) if tensor.name == "weights" else np.zeros(len(classes), np.float32)
            tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    set_metadata(model, ModelMetadata(classes=classes))
    onnx.save(model, path)
    return path


def test_evaluation_follows_the_class_order_an_exported_model_names(tmp_path, capsys):
    """A model listing FER2013's classes in another order is scored by name; one with other classes is refused."""
    data = make_fer_folder(tmp_path / "fer", per_class=2)
    reordered = stripe_reader_onnx(tmp_path / "reordered.onnx", list(reversed(EMOTIONS)))
    assert evaluate_cli.main(["--model", str(reordered), "--data", str(data), "--output-dir", str(tmp_path / "e"),
                              "--through-pipeline", "--pipeline-size", "48"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["plain"]["accuracy"] == metrics["flip_tta"]["accuracy"] == 1.0
    assert metrics["through_pipeline"]["plain_accuracy"] == metrics["through_pipeline"]["accuracy"] == 1.0
    foreign = stripe_reader_onnx(tmp_path / "foreign.onnx", ["contempt", *EMOTIONS[1:]])
    for extra in (["--model", str(foreign)], ["--model", str(reordered), "--against", str(foreign)]):
        assert evaluate_cli.main([*extra, "--data", str(data), "--output-dir", str(tmp_path / "f")]) == 2
        option = extra[-2]
        assert capsys.readouterr().err.startswith(f"error: {option} {foreign}: its classes ['contempt', ")
    assert not (tmp_path / "f").exists()


PROC_CASES = [(["--output-dir", "/proc/self"], "/proc/self: cannot write in it"),  # not writable, even by root
              (["--output-dir", "/proc/e"], "--output-dir /proc/e: cannot create it (No such file or directory)")]


@pytest.mark.parametrize("extra, message", [
    (["--split", "validation"], "{data}: the validation (10% of train/, split seed 42, training's defaults: the model "
                                "records none) split holds no faces"),
    (["--pipeline-size", "96"], "--pipeline-size: give --through-pipeline too"),
    (["--model", "{tmp}"], "--model {tmp}: is a folder, not a .keras or .onnx model"),
    (["--against", "{tmp}/none.onnx"], "--against {tmp}/none.onnx: no such file"),
    *[pytest.param(*case, marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc"))
      for case in PROC_CASES],
])
def test_evaluation_bad_input_is_found_before_the_work_and_is_one_line(tiny_model, tmp_path, monkeypatch, capsys,
                                                                       extra, message):
    monkeypatch.setattr(evaluate_cli, "evaluate", lambda *args: pytest.fail("evaluated"))
    data = make_fer_folder(tmp_path / "fer", per_class=1)  # 10% of one face per class: no validation faces
    arguments = {"--model": str(tiny_model), "--data": str(data), "--output-dir": str(tmp_path / "out")}
    arguments.update((option, value.format(tmp=tmp_path)) for option, value in zip(extra[::2], extra[1::2]))
    assert evaluate_cli.main([part for pair in arguments.items() for part in pair]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message.format(data=data, tmp=tmp_path)}") and error.count("\n") == 1


def test_evaluation_interrupted_exits_130_without_a_traceback(tiny_model, tmp_path, monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_cli, "evaluate", interrupted)
    data = make_fer_folder(tmp_path / "fer", per_class=1)
    assert without_escaping_ctrl_c(evaluate_cli.main, ["--model", str(tiny_model), "--data", str(data),
                                                       "--output-dir", str(tmp_path / "e")]) == 130
    assert capsys.readouterr().err.startswith("\ninterrupted (Ctrl-C)")
    assert list((tmp_path / "e").iterdir()) == []
