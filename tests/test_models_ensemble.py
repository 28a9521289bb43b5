"""models.ensemble: cached ensemble probabilities, and distillation from such a file."""

import shutil

import numpy as np
import pytest

pytest.importorskip("keras")

from models import ensemble, train  # noqa: E402
from models.data import load_fer2013, stratified_split  # noqa: E402
from models.predictor import load_predictor, predict_with_flip  # noqa: E402
from tests.conftest import PROJECT_ROOT  # noqa: E402
from tests.fer_fixtures import make_fer_folder  # noqa: E402

SPLIT = ["--val-fraction", "0.34", "--split-seed", "3"]


@pytest.fixture()
def members(tmp_path):
    from models.architecture import build_classifier

    paths = []
    for seed in (1, 2):
        import keras

        keras.utils.set_random_seed(seed)
        path = tmp_path / f"member{seed}.keras"
        build_classifier(width=4, dtype_policy="float32").save(path)
        paths.append(str(path))
    return paths


def test_the_file_holds_the_members_mean_mirror_averaged_probabilities_and_counts_as_one_member(tmp_path, members, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    pair = tmp_path / "pair.npz"
    assert ensemble.main(["--data", str(data), "--members", *members, "--output", str(pair), *SPLIT]) == 0
    assert "ensemble of 2: validation" in capsys.readouterr().out
    all_train, validation = stratified_split(load_fer2013(data)["train"], 0.34, 3)
    each = [predict_with_flip(load_predictor(path), validation.images) for path in members]
    with np.load(pair) as saved:
        np.testing.assert_allclose(saved["validation"], np.mean(each, axis=0), atol=1e-5)
        assert saved["train"].shape == (len(all_train), 7)
        assert str(saved["validation_digest"]) == ensemble.faces_digest(validation)

    nested = tmp_path / "nested.npz"
    assert ensemble.main(["--data", str(data), "--members", str(pair), members[0], "--output", str(nested), *SPLIT]) == 0
    with np.load(nested) as saved:
        np.testing.assert_allclose(saved["validation"], (np.mean(each, axis=0) + each[0]) / 2, atol=1e-5)


def test_accuracy_is_also_printed_apart_for_validation_faces_with_a_copy_among_the_training_faces(tmp_path, members,
                                                                                                    capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    training, validation = stratified_split(load_fer2013(data)["train"], 0.34, 3)
    copied = validation.names[:2]
    for name in copied:  # byte for byte the file of a training face of the same class
        shutil.copyfile(data / next(other for other in training.names if other.split("/")[1] == name.split("/")[1]),
                        data / name)
    validation = stratified_split(load_fer2013(data)["train"], 0.34, 3)[1]
    assert ensemble.main(["--data", str(data), "--members", members[0], "--output", str(tmp_path / "one.npz"),
                          *SPLIT]) == 0
    right = predict_with_flip(load_predictor(members[0]), validation.images).argmax(1) == validation.labels
    copies = np.isin(validation.names, copied)
    expected = (f"validation {right.mean():.4f} (unseen {right[~copies].mean():.4f}, copies "
                f"{right[copies].mean():.4f})")
    out = capsys.readouterr().out
    assert f"{members[0]}: {expected}\n" in out and f"ensemble of 1: {expected}, mirror-averaged" in out


def test_training_distils_from_a_probability_file_and_refuses_one_of_other_faces(tmp_path, members, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    pair = tmp_path / "pair.npz"
    assert ensemble.main(["--data", str(data), "--members", *members, "--output", str(pair), *SPLIT]) == 0
    arguments = ["--data", str(data), "--width", "4", "--batch-size", "16", "--precision", "float32",
                 "--teacher", str(pair), "--teacher-weight", "0.6", "--epochs", "1", *SPLIT]
    assert train.main(arguments + ["--output-dir", str(tmp_path / "run")]) == 0
    all_train, _ = stratified_split(load_fer2013(data)["train"], 0.34, 3)
    with np.load(pair) as saved, np.load(tmp_path / "run" / train.TEACHER_TARGETS_NAME) as cached:
        expected = 0.6 * saved["train"] + 0.4 * np.eye(7)[all_train.labels]
        np.testing.assert_allclose(cached["targets"], expected, atol=1e-6)

    capsys.readouterr()
    other_split = [*arguments[:-2], "--split-seed", "4", "--output-dir", str(tmp_path / "other")]
    assert train.main(other_split) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "another split" in error and len(error.splitlines()) == 1


def test_a_missing_member_or_one_trained_on_another_split_is_one_error_line(tmp_path, members, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    assert ensemble.main(["--data", str(data), "--members", str(tmp_path / "none.keras"),
                          "--output", str(tmp_path / "out.npz")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no such member {tmp_path / 'none.keras'}"
    run = tmp_path / "run"  # its validation faces would include faces it trained on
    run.mkdir()
    (run / "config.json").write_text('{"val_fraction": 0.34, "split_seed": 7}')
    shutil.copyfile(members[0], run / "best.keras")
    assert ensemble.main(["--data", str(data), "--members", members[1], str(run / "best.keras"), *SPLIT,
                          "--output", str(tmp_path / "out.npz")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: trained with another validation split than --val-fraction 0.34 --split-seed 3 (these faces would "
        f"include faces it trained on): {run / 'best.keras'} (fraction 0.34, split seed 7)")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize(("name", "accuracy"), [("teachers_w64x6_probabilities.npz", 0.6974),
                                                ("teachers_w64x6_w48_probabilities.npz", 0.7026)])
def test_the_kept_teacher_files_hold_these_faces_and_score_what_the_readme_says(fer2013, name, accuracy):
    from models.data import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION

    path = PROJECT_ROOT / "models" / "training" / name
    all_train, validation = stratified_split(load_fer2013(fer2013)["train"], DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)
    assert ensemble.saved_probabilities(path, "train", all_train).shape == (len(all_train), 7)
    probabilities = ensemble.saved_probabilities(path, "validation", validation)
    assert (probabilities.argmax(axis=1) == validation.labels).mean() == pytest.approx(accuracy, abs=5e-5)
