"""The CNN builds, trains a few steps on a tiny generated set, checkpoints and resumes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs the training requirements (requirements-dev.txt)")

from models import train  # noqa: E402
from tests.conftest import PROJECT_ROOT  # noqa: E402
from tests.fer_fixtures import make_fer_folder  # noqa: E402


def test_classifier_shape_and_probabilities():
    from models.architecture import build_classifier

    model = build_classifier(width=4, dtype_policy="float32")
    probabilities = np.asarray(model(np.random.rand(3, 48, 48, 1).astype("float32"), training=False))
    assert probabilities.shape == (3, 7)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_block_widths_double_from_one_number_or_take_four():
    from models.architecture import block_widths, model_name

    assert block_widths(32) == (32, 64, 128, 256) and model_name(32) == "emotion_cnn_w32"
    assert block_widths([32, 80, 160, 320]) == (32, 80, 160, 320)
    assert model_name([32, 80, 160, 320]) == "emotion_cnn_w32-80-160-320"
    assert model_name([8, 16, 32, 64]) == "emotion_cnn_w8"  # four doubling numbers name the same net as one
    assert model_name(64, architecture="residual") == "emotion_cnn_residual_w64"
    for architecture, separable_from in (("resnet", 0), ("residual", 2)):
        with pytest.raises(ValueError, match="architecture|vgg architecture only"):
            model_name(64, separable_from, architecture)
    for wrong in ([32, 64], [32, 64, 128, 0], 0):
        with pytest.raises(ValueError, match="one number or four"):
            block_widths(wrong)


def test_training_with_four_block_widths_builds_and_saves_that_net(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    shutil.rmtree(data / "test")  # training reads train/ alone: a folder without test/ was refused ("no test/ folder")
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--batch-size", "16", "--epochs", "1",
                 "--val-fraction", "0.34", "--precision", "float32", "--warmup-epochs", "0"]
    assert train.main(arguments + ["--width", "4", "6", "8", "10"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["width"] == [4, 6, 8, 10]
    for name in ("best.keras", "final.keras"):
        model = keras.models.load_model(run_dir / name, compile=False)
        assert model.name == "emotion_cnn_w4-6-8-10"
        assert [model.get_layer(f"block{block}_conv2").filters for block in (1, 2, 3, 4)] == [4, 6, 8, 10]
    with pytest.raises(SystemExit):
        train.parse_args(arguments + ["--width", "4", "6"])
    assert "one number (doubling per block) or four" in capsys.readouterr().err


def test_training_with_separable_blocks_builds_averages_and_saves_that_net(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--batch-size", "16", "--epochs", "2",
                 "--val-fraction", "0.34", "--warmup-epochs", "0", "--width", "4", "--separable-from", "3",
                 "--swa-start-epoch", "1", "--precision", "mixed_bfloat16"]  # the saved models are float32 copies
    assert train.main(arguments) == 0
    assert "swa of 2" in capsys.readouterr().out
    for name in ("best.keras", "final.keras"):
        model = keras.models.load_model(run_dir / name, compile=False)
        assert model.name == "emotion_cnn_w4_sep3"
        assert [type(model.get_layer(f"block{block}_conv1")).__name__ for block in (1, 2, 3, 4)] == \
            ["Conv2D", "Conv2D", "SeparableConv2D", "SeparableConv2D"]
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    with pytest.raises(SystemExit):
        train.parse_args(arguments + ["--separable-from", "1"])


def test_training_a_residual_net_builds_averages_and_saves_it(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--batch-size", "16", "--epochs", "2",
                 "--val-fraction", "0.34", "--warmup-epochs", "0", "--width", "4", "--architecture", "residual",
                 "--swa-start-epoch", "1", "--precision", "mixed_bfloat16"]
    assert train.main(arguments) == 0
    assert "swa of 2" in capsys.readouterr().out
    assert json.loads((run_dir / "config.json").read_text())["architecture"] == "residual"
    for name in ("best.keras", "final.keras"):
        model = keras.models.load_model(run_dir / name, compile=False)
        assert model.name == "emotion_cnn_residual_w4"
        assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 8  # four stages of two blocks
        assert [model.get_layer(f"stage{stage}_block2_add").output.shape[1] for stage in (1, 2, 3, 4)] == [48, 24, 12, 6]
        assert model.get_layer("stage4_block2_2_conv").filters == 32
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
        probabilities = np.asarray(model(np.random.rand(2, 48, 48, 1).astype("float32")))
        assert probabilities.shape == (2, 7) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(SystemExit):
        train.parse_args(arguments + ["--separable-from", "2"])
    assert "--separable-from builds vgg blocks only" in capsys.readouterr().err


@pytest.mark.parametrize(("setting", "other_value"),
                         [("separable_from", 2), ("random_erasing", 0.5), ("architecture", "residual"),
                          ("distillation_temperature", 2.0)])
def test_a_run_saved_before_a_setting_existed_resumes(setting, other_value):
    requested = vars(train.parse_args(["--data", "fer", "--lr-schedule", "constant"]))
    saved = {key: value for key, value in requested.items() if key != setting}
    assert train.continues_run(saved, requested)
    assert not train.continues_run(saved, {**requested, setting: other_value})


def test_live_distillation_runs_the_frozen_teachers_on_the_augmented_faces_and_resumes(tmp_path, capsys):
    import keras

    from models.distillation import LiveDistillationLoss, TeacherProbabilities

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    common = ["--data", str(data), "--batch-size", "16", "--val-fraction", "0.34", "--warmup-epochs", "0",
              "--precision", "float32"]
    assert train.main(common + ["--output-dir", str(tmp_path / "teacher"), "--width", "4", "--epochs", "1"]) == 0
    teacher_path = str(tmp_path / "teacher" / "best.keras")
    teacher = keras.models.load_model(teacher_path, compile=False)
    faces = np.random.default_rng(0).random((5, 48, 48, 1), dtype=np.float32)
    expected = np.asarray(teacher(faces, training=False))

    # the teachers' layer: inference mode (no dropout, trained statistics) even in a training step, never trained
    layer = TeacherProbabilities([teacher, keras.models.load_model(teacher_path, compile=False)])
    assert np.allclose(np.asarray(layer(faces, training=True)), expected, atol=1e-5)
    assert not layer.trainable_weights and all(not t.trainable for t in layer.teachers)

    # the training model's second half is the teachers' output on the augmented faces in a training step
    args = train.parse_args(common + ["--width", "4", "--teacher", teacher_path, "--live-teacher"])
    model = train.build_training_model(args, steps_per_epoch=1)
    assert np.allclose(np.asarray(model(faces, training=False))[:, 7:], expected, atol=1e-5)
    assert not np.allclose(np.asarray(model(faces, training=True))[:, 7:], expected, atol=1e-3)
    assert train.classifier_of(model).name == "emotion_cnn_w4"
    # in bfloat16 training the teachers compute in bfloat16 too (their probabilities in float32), close to float32's
    args = train.parse_args(common[:-1] + ["mixed_bfloat16", "--width", "4", "--teacher", teacher_path, "--live-teacher"])
    in_bfloat16 = train.build_training_model(args, steps_per_epoch=1)
    bfloat16_teacher = in_bfloat16.get_layer("teachers").teachers[0]
    assert bfloat16_teacher.get_layer("block1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert bfloat16_teacher.get_layer("probabilities").dtype_policy.name == "float32"
    assert np.allclose(np.asarray(in_bfloat16(faces, training=False))[:, 7:], expected, atol=0.03)

    # the loss: cross-entropy of the student half against the blend of the teachers' half and the label
    student, teachers = np.full((1, 7), 1 / 7, np.float32), np.eye(7, dtype=np.float32)[[2]]
    label = np.eye(7, dtype=np.float32)[[5]]
    loss = float(LiveDistillationLoss(0.7)(label, np.concatenate([student, teachers], axis=1)))
    assert np.isclose(loss, -(0.7 * np.log(1 / 7) + 0.3 * np.log(1 / 7)), atol=1e-5)
    loss = float(LiveDistillationLoss(0.7)(label, np.concatenate([np.full((1, 7), 0.01, np.float32) + 0.93 * teachers,
                                                                  teachers], axis=1)))
    assert np.isclose(loss, -(0.7 * np.log(0.94) + 0.3 * np.log(0.01)), atol=1e-4)

    # a constant-rate run of one epoch, extended to two: the checkpoint holds the frozen teachers, which never change
    run = ["--output-dir", str(tmp_path / "live"), "--width", "4", "--teacher", teacher_path, "--live-teacher",
           "--lr-schedule", "constant"]
    assert train.main(common + run + ["--epochs", "1"]) == 0
    assert "distilling live from" in capsys.readouterr().out
    resumed = subprocess.run([sys.executable, "-m", "models.train", *common, *run, "--epochs", "2"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=600)  # a new process, as a user resumes
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout and "epoch   2" in resumed.stdout
    checkpoint = keras.models.load_model(tmp_path / "live" / "checkpoint.keras")
    for trained, original in zip(checkpoint.get_layer("teachers").teachers[0].get_weights(), teacher.get_weights()):
        assert np.array_equal(trained, original)
    assert keras.models.load_model(tmp_path / "live" / "best.keras", compile=False).output_shape == (None, 7)
    with pytest.raises(SystemExit):
        train.parse_args(common + ["--teacher", "teachers.npz", "--live-teacher"])
    assert "give them as .keras models" in capsys.readouterr().err


def test_random_erasing_is_a_probability():
    for wrong in ("-0.1", "1.5"):
        with pytest.raises(SystemExit):
            train.parse_args(["--data", "fer", "--random-erasing", wrong])


def test_random_erasing_fills_one_rectangle_per_chosen_face_with_noise():
    rng = np.random.default_rng(1)
    images = np.full((400, 48, 48, 1), 2.0, dtype=np.float32)  # outside [0, 1): any noise pixel differs
    erased = train.erase_rectangles(images, 0.5, np.random.default_rng(7))
    np.testing.assert_array_equal(erased, train.erase_rectangles(images, 0.5, np.random.default_rng(7)))
    changed = erased[..., 0] != 2.0
    chosen = changed.any(axis=(1, 2))
    assert 150 < chosen.sum() < 250  # about half the faces
    assert np.all((erased[changed] >= 0) & (erased[changed] < 1))
    low, high = train.ERASED_AREA
    aspects = []
    for mask in changed[chosen]:
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert mask[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].all()  # one filled rectangle
        assert mask.sum() == len(rows) * len(columns)
        assert low * 0.8 <= mask.sum() / mask.size <= high * 1.2  # (rounded sides)
        aspects.append(len(rows) / len(columns))
    assert min(aspects) < 0.6 and max(aspects) > 1.7  # tall and wide ones
    untouched = train.erase_rectangles(images, 0.0, rng)
    np.testing.assert_array_equal(untouched, images)


def test_random_erasing_changes_only_the_faces_not_their_order_targets_or_mixup():
    from models.data import FaceSet

    rng = np.random.default_rng(0)
    faces = FaceSet(rng.integers(0, 256, (32, 48, 48), dtype=np.uint8), np.arange(32) % 7, [str(i) for i in range(32)])
    weights = np.linspace(0.5, 2.0, 7).astype(np.float32)

    def batches(**options):
        return [[np.asarray(t) for t in batch] for batch in
                train.make_dataset(faces, 8, weights, shuffle_seed=3, epochs=range(0, 2), **options)]

    plain, erased = batches(), batches(random_erasing=1.0)
    assert len(plain) == len(erased) == 8
    for (plain_images, *plain_rest), (erased_images, *erased_rest) in zip(plain, erased):
        for a, b in zip(plain_rest, erased_rest):
            np.testing.assert_array_equal(a, b)
        differs = (plain_images != erased_images)[..., 0]
        assert differs.any(axis=(1, 2)).all()  # every face has its rectangle
        assert differs.mean() < 0.3
    # with mixup, the blend is the same as without erasing: the targets and shares match
    for (_, plain_targets, _), (_, erased_targets, _) in zip(batches(mixup=0.4), batches(mixup=0.4, random_erasing=0.5)):
        np.testing.assert_array_equal(plain_targets, erased_targets)


def test_class_weights_favour_rare_classes_and_average_one():
    counts = np.array([3995, 436, 4097, 7215, 4965, 4830, 3171])
    weights = train.class_weights(counts, power=0.5)
    assert weights.argmax() == 1 and weights.argmin() == 3
    assert np.isclose((weights * counts).sum() / counts.sum(), 1.0)
    assert np.allclose(train.class_weights(counts, power=0.0), 1.0)


def test_training_runs_checkpoints_and_resumes(tmp_path, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--width", "4", "--batch-size", "16",
                 "--val-fraction", "0.34", "--precision", "float32", "--warmup-epochs", "0"]
    assert train.main(arguments + ["--epochs", "2"]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epochs_done"] == 2
    assert (run_dir / "best.keras").is_file() and (run_dir / "checkpoint.keras").is_file()
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_accuracy" in history[0]
    out = capsys.readouterr().out
    assert "epoch   2" in out and "Keras on tensorflow (cpu)" in out  # says where it computes

    # rerunning the finished run resumes (nothing left to do) instead of starting over
    assert train.main(arguments + ["--epochs", "2"]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3

    # the same data and folder spelled otherwise resume too
    respelled = [f"{data}/" if part == str(data) else f"{run_dir}/../run" if part == str(run_dir) else part
                 for part in arguments]
    assert train.main(respelled + ["--epochs", "2"]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out

    # different settings in the same folder are refused, saying which
    assert train.main(arguments + ["--epochs", "3", "--width", "8"]) == 2
    assert "different settings (epochs 2 -> 3, width 4 -> 8)" in capsys.readouterr().err


def test_interrupted_run_continues_from_its_checkpoint(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--width", "4", "--batch-size", "16",
                 "--epochs", "3", "--precision", "float32", "--val-fraction", "0.34"]

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    original_callback = train.make_epoch_callback

    def interrupting_callback(*args, **kwargs):
        checkpointing = original_callback(*args, **kwargs)
        stop = StopAfterFirstEpoch()

        class Both(keras.callbacks.Callback):
            def set_model(self, model):
                checkpointing.set_model(model)
                stop.set_model(model)

            def on_epoch_begin(self, epoch, logs=None):
                checkpointing.on_epoch_begin(epoch, logs)

            def on_epoch_end(self, epoch, logs=None):
                checkpointing.on_epoch_end(epoch, logs)
                stop.on_epoch_end(epoch, logs)

        return Both()

    train.make_epoch_callback = interrupting_callback
    try:
        assert train.main(arguments) == 130  # Ctrl-C: one line, no traceback (it was 45 lines and a SIGINT death)
    finally:
        train.make_epoch_callback = original_callback
    assert capsys.readouterr().err.strip() == ("interrupted (Ctrl-C): the last finished epoch is checkpointed; rerun "
                                               "the command to resume")
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1
    assert not (run_dir / "final.keras").exists()  # only a finished run has a final model
    steps_after_one_epoch = int(keras.models.load_model(run_dir / "checkpoint.keras").optimizer.iterations)

    assert train.main(arguments) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 1" in out and "epoch   2" in out and "epoch   3" in out
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 3
    resumed = keras.models.load_model(run_dir / "checkpoint.keras")
    assert int(resumed.optimizer.iterations) == 3 * steps_after_one_epoch
    final = keras.models.load_model(run_dir / "final.keras")  # the last epoch's weights as an inference model
    for saved, trained in zip(final.get_weights(), train.classifier_of(resumed).get_weights()):
        assert np.allclose(saved, trained, atol=1e-6)

    # the resumed run continued the shuffling and augmentation streams instead of replaying them:
    # it ends where the same run without the interruption ends
    uninterrupted_dir = tmp_path / "uninterrupted"
    assert train.main([*arguments[:3], str(uninterrupted_dir), *arguments[4:]]) == 0
    uninterrupted = keras.models.load_model(uninterrupted_dir / "checkpoint.keras")
    for after_resume, straight in zip(resumed.get_weights(), uninterrupted.get_weights()):
        assert np.allclose(after_resume, straight, atol=1e-5)


@pytest.fixture(scope="module")
def two_epochs_uninterrupted(tmp_path_factory):
    """A tiny two-epoch run's arguments (without --output-dir) and its checkpoint's weights."""
    import keras

    folder = tmp_path_factory.mktemp("uninterrupted")
    arguments = ["--data", str(make_fer_folder(folder / "fer", per_class=6)), "--width", "4", "--batch-size", "16",
                 "--epochs", "2", "--precision", "float32", "--val-fraction", "0.34"]
    assert train.main([*arguments, "--output-dir", str(folder / "run")]) == 0
    return arguments, keras.models.load_model(folder / "run" / "checkpoint.keras").get_weights()


@pytest.mark.parametrize("stopped, resumes_after", [("before the state", 1), ("before the final name", 2),
                                                    ("before the state names it", 2)])
def test_a_run_killed_while_it_checkpoints_resumes_from_a_checkpoint_and_state_that_belong_together(
        stopped, resumes_after, two_epochs_uninterrupted, tmp_path, capsys, monkeypatch):
    """Epoch 2's checkpoint was saved before its state: a kill between the two resumed "after epoch 1" from epoch
    2's weights and trained epoch 2 again on top of them. Each kill point of save_checkpoint, then a resume, ends
    where the uninterrupted run ends."""
    import keras

    arguments, uninterrupted = two_epochs_uninterrupted
    run_dir = tmp_path / "run"
    real_write, state_writes = train.write_atomically, []

    def killed_in_epoch_2(path, data):
        if path.name == train.STATE_NAME:
            state_writes.append(json.loads(data))
            if stopped == "before the state" and len(state_writes) == 3:
                raise KeyboardInterrupt
            if stopped == "before the state names it" and len(state_writes) == 4:
                raise KeyboardInterrupt
        real_write(path, data)
        if stopped == "before the final name" and len(state_writes) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "write_atomically", killed_in_epoch_2)
    assert train.main([*arguments, "--output-dir", str(run_dir)]) == 130
    monkeypatch.setattr(train, "write_atomically", real_write)
    capsys.readouterr()
    assert train.main([*arguments, "--output-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"resuming after epoch {resumes_after}" in out and ("epoch   2" in out) == (resumes_after == 1)
    assert json.loads((run_dir / "state.json").read_text())["checkpoint"] == "checkpoint.keras"
    assert sorted(path.name for path in run_dir.glob("checkpoint*")) == ["checkpoint.keras"]
    resumed = keras.models.load_model(run_dir / "checkpoint.keras")
    for after_resume, straight in zip(resumed.get_weights(), uninterrupted):
        assert np.allclose(after_resume, straight, atol=1e-5)


def test_a_mixed_bfloat16_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    """Keras loads a mixed_bfloat16 net's SpatialDropout2D as float32: a resumed run drifted from the run it
    continues (0.019 in the weights after one more epoch; float32 runs resumed exactly)."""
    import keras

    arguments = ["--data", str(make_fer_folder(tmp_path / "fer", per_class=6)), "--width", "4", "--batch-size", "16",
                 "--epochs", "2", "--precision", "mixed_bfloat16", "--val-fraction", "0.34"]
    assert train.main([*arguments, "--output-dir", str(tmp_path / "straight")]) == 0
    real_write = train.write_atomically

    def stopped_after_epoch_1(path, data):
        real_write(path, data)
        if path.name == train.STATE_NAME and json.loads(data) == {**json.loads(data), "epochs_done": 1,
                                                                 "checkpoint": "checkpoint.keras"}:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "write_atomically", stopped_after_epoch_1)
    assert train.main([*arguments, "--output-dir", str(tmp_path / "resumed")]) == 130
    monkeypatch.setattr(train, "write_atomically", real_write)
    assert train.main([*arguments, "--output-dir", str(tmp_path / "resumed")]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    straight, resumed = (keras.models.load_model(tmp_path / run / "checkpoint.keras") for run in ("straight", "resumed"))
    for after_resume, uninterrupted in zip(resumed.get_weights(), straight.get_weights()):
        assert np.allclose(after_resume, uninterrupted, atol=1e-6)


def test_time_limit_stops_between_epochs_keeps_that_epochs_weights_and_the_run_resumes(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--width", "4", "--batch-size", "16",
                 "--epochs", "3", "--precision", "float32", "--val-fraction", "0.34", "--warmup-epochs", "0"]
    # a limit already passed when the first epoch ends: it stops there, not in the middle of an epoch
    assert train.main(arguments + ["--time-limit", "0.001"]) == 0
    assert "stopped after epoch 1 of 3" in capsys.readouterr().out
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1
    after_one = keras.models.load_model(run_dir / "checkpoint.keras")
    final = keras.models.load_model(run_dir / "final.keras")  # what recalibration and ensembles read
    for saved, trained in zip(final.get_weights(), train.classifier_of(after_one).get_weights()):
        assert np.allclose(saved, trained, atol=1e-6)

    # the limit belongs to one invocation: the same run resumes with another one (or none) and ends
    assert train.main(arguments + ["--time-limit", "1e6"]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 1" in out and "epoch   3" in out and "stopped" not in out
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 3


def test_time_limit_leaves_the_first_steps_compilation_out_of_its_estimate(monkeypatch):
    """GPU try 6: a 130 s first epoch, nearly all of it compilation, stopped a 270 s run after it."""
    import keras

    clock = iter([0.0, 130.0, 135.0, 140.0, 145.0, 151.0])  # begin, first step, the ends of epochs 1-4
    monkeypatch.setattr(train.time, "monotonic", lambda: next(clock))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    limit = train.make_time_limit(deadline=150.0)
    limit.set_model(model)
    limit.set_params({"epochs": 10, "steps": 100})
    limit.on_train_begin()
    limit.on_train_batch_end(0)
    limit.on_epoch_end(0)  # the epoch's other 99 steps took 5 s: the next is expected to take about 5 s
    assert limit.stopped_after is None
    limit.on_epoch_end(1)  # 5 s again: 145 s would come next, inside the limit
    assert limit.stopped_after is None
    limit.on_epoch_end(2)  # ends at 145 s; one more of 5 s would end exactly at the limit: not past it
    assert limit.stopped_after is None
    limit.on_epoch_end(3)  # 6 s: another would end at 157 s, past 150 s
    assert limit.stopped_after == 4 and model.stop_training


def test_bad_data_path_is_a_clear_error(tmp_path, capsys):
    assert train.main(["--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "run")]) == 2
    assert "dataset not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data", str(tmp_path), "--output-dir", str(tmp_path / "run"), "--epochs", "0"])
    assert exit_info.value.code == 2 and "--epochs must be at least 1" in capsys.readouterr().err
    for option, value, message in [("--batch-size", "0", "--batch-size must be at least 1"),
                                   ("--val-fraction", "1", "--val-fraction must be between 0 and 1"),
                                   ("--val-fraction", "0", "--val-fraction must be between 0 and 1")]:
        with pytest.raises(SystemExit) as exit_info:
            train.main(["--data", str(tmp_path), "--output-dir", str(tmp_path / "run"), option, value])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    assert train.main(["--data", str(tmp_path), "--output-dir", str(tmp_path / "a_file")]) == 2
    assert "--output-dir " + str(tmp_path / "a_file") + ": is a file, not a folder" in capsys.readouterr().err
    few = make_fer_folder(tmp_path / "few", per_class=3)  # 10% of 3 faces a class: no validation face
    assert train.main(["--data", str(few), "--output-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"error: --val-fraction 0.1 of {few}'s 21 training faces holds no validation "
                                       "face, and validation picks the model: give more faces or a larger fraction\n")
    # a class missing or empty under train/ trained a 7-class model without a word
    gaps = make_fer_folder(tmp_path / "gaps", per_class=6)
    shutil.rmtree(gaps / "train" / "disgust")
    for face in (gaps / "train" / "fear").iterdir():
        face.unlink()
    assert train.main(["--data", str(gaps), "--output-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        f"error: {gaps}: no training faces of disgust, fear (a class folder under train/ that is missing or empty); "
        "the model learns all 7 classes (angry, disgust, fear, happy, neutral, sad, surprise) and needs faces of each\n")
    assert not (tmp_path / "run").exists()


def test_init_weights_starts_from_a_trained_model(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    common = ["--data", str(data), "--width", "4", "--batch-size", "16", "--precision", "float32",
              "--val-fraction", "0.34"]
    assert train.main(common + ["--output-dir", str(tmp_path / "first"), "--epochs", "1"]) == 0
    first = keras.models.load_model(tmp_path / "first" / "best.keras")

    captured = {}
    original = train.build_training_model

    def record_initial_weights(*args, **kwargs):
        model = original(*args, **kwargs)
        captured["classifier"] = train.classifier_of(model)
        return model

    train.build_training_model = record_initial_weights
    try:
        second = ["--output-dir", str(tmp_path / "second"), "--epochs", "1", "--learning-rate", "0",
                  "--warmup-epochs", "0", "--weight-decay", "0", "--init-weights", str(tmp_path / "first" / "best.keras")]
        assert train.main(common + second) == 0
    finally:
        train.build_training_model = original
    assert "starting from the weights of" in capsys.readouterr().out
    # with a zero learning rate the trainable weights stay those of the first model
    for before, after in zip(first.trainable_weights, captured["classifier"].trainable_weights):
        assert np.allclose(np.asarray(before), np.asarray(after), atol=1e-6)


def test_bad_init_weights_or_teachers_are_one_line_before_any_training(tmp_path, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    common = ["--data", str(data), "--width", "4", "--batch-size", "16", "--precision", "float32",
              "--val-fraction", "0.34", "--epochs", "1"]
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 cut short")  # a download that stopped early
    (tmp_path / "text.keras").write_text("not a model")
    cases = {("--init-weights", "broken.keras"): "--init-weights {}: not a Keras model file",
             ("--init-weights", "text.keras"): "--init-weights {}: not a Keras model file",
             ("--init-weights", "missing.keras"): "--init-weights {}: no such .keras model",
             ("--teacher", "text.keras"): "--teacher {}: not a Keras model file",
             ("--teacher", "missing.npz"): "--teacher {}: no such file"}
    for (option, name), message in cases.items():
        run = tmp_path / f"run_{name}"
        assert train.main(common + ["--output-dir", str(run), option, str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: " + message.format(tmp_path / name)) and err.count("\n") == 1, err
        assert not run.exists()  # refused before anything was written

    assert train.main(common + ["--output-dir", str(tmp_path / "w4"), "--max-train-samples", "8"]) == 0
    capsys.readouterr()
    wider = ["--output-dir", str(tmp_path / "w8"), "--width", "8", "--init-weights", str(tmp_path / "w4" / "best.keras")]
    assert train.main(common + wider) == 2
    assert capsys.readouterr().err == (f"error: --init-weights {tmp_path / 'w4' / 'best.keras'}: a network of another "
                                       "shape than this run's (--width 8, --architecture vgg)\n")


def test_weight_average_is_the_running_mean_and_survives_a_restart(tmp_path):
    from models.averaging import WeightAverage

    rng = np.random.default_rng(0)
    epochs = [[rng.normal(size=(3, 2)), rng.normal(size=4)] for _ in range(3)]
    average = WeightAverage()
    average.add(epochs[0], epoch=1)
    average.add(epochs[1], epoch=2)
    average.save(tmp_path / "average.npz")

    resumed = WeightAverage.load(tmp_path / "average.npz")
    resumed.add(epochs[1], epoch=2)  # an epoch redone after an interruption is not counted twice
    resumed.add(epochs[2], epoch=3)
    assert resumed.count == 3 and resumed.last_epoch == 3
    for index in range(2):
        assert np.allclose(resumed.weights[index], np.mean([weights[index] for weights in epochs], axis=0))
    assert WeightAverage.load(tmp_path / "missing.npz").count == 0


def test_batch_norm_recalibration_measures_the_data_with_dropout_off():
    import keras

    from models.averaging import recalibrate_batch_norm

    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization(momentum=0.99)(inputs)
    hidden = keras.layers.Dropout(0.5)(hidden)
    hidden = keras.layers.Dense(3, kernel_initializer="ones")(hidden)
    outputs = keras.layers.BatchNormalization(momentum=0.99)(hidden)
    model = keras.Model(inputs, outputs)
    first, dropout, dense, last = model.layers[1:]

    images = np.random.default_rng(1).normal(loc=[1, 2, 3, 4], scale=[1, 2, 3, 4], size=(96, 4)).astype("float32")
    recalibrate_batch_norm(model, images, batch_size=32)

    batches = images.reshape(3, 32, 4)
    assert np.allclose(np.asarray(first.moving_mean), images.mean(axis=0), atol=1e-5)
    assert np.allclose(np.asarray(first.moving_variance), batches.var(axis=1).mean(axis=0), rtol=1e-4)
    # the second layer saw the first layer's normalised output, undropped
    normalised = (batches - batches.mean(axis=1, keepdims=True)) / np.sqrt(batches.var(axis=1, keepdims=True) + 1e-3)
    dense_out = normalised @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    assert np.allclose(np.asarray(last.moving_mean), dense_out.mean(axis=(0, 1)), atol=1e-4)
    assert np.allclose(np.asarray(last.moving_variance), dense_out.var(axis=1).mean(axis=0), rtol=1e-3)
    assert first.momentum == 0.99 and last.momentum == 0.99 and dropout.rate == 0.5


def test_training_callbacks_let_keras_dispatch_steps_without_waiting_under_jax(tmp_path):
    pytest.importorskip("jax")
    script = (
        "from pathlib import Path\n"
        "import keras\n"
        "from keras.src.callbacks.callback_list import CallbackList\n"
        "from models import train\n"
        f"callbacks = [train.make_epoch_callback(Path({str(tmp_path)!r}), 0.0),\n"
        f"             keras.callbacks.CSVLogger({str(tmp_path / 'history.csv')!r}),\n"
        "             train.make_step_progress(10, 2)]\n"
        "print('async', CallbackList(callbacks)._async_train)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert "async True" in result.stdout, result.stderr[-2000:]


def test_epoch_averaging_reuses_one_net_that_holds_each_epochs_mean(tmp_path):
    from models.architecture import build_classifier, float32_copy
    from models.averaging import recalibrate_batch_norm
    from models.data import FaceSet
    from models.emotions import model_inputs

    rng = np.random.default_rng(2)

    def faces(count):
        return FaceSet(rng.integers(0, 256, (count, 48, 48), dtype=np.uint8), np.arange(count) % 7,
                       [str(i) for i in range(count)])

    recalibration, validation = faces(32), faces(21)
    averaging = train.EpochAveraging(1, tmp_path / "average.npz", recalibration, validation)
    classifier = build_classifier(4)
    epoch_weights = [[rng.normal(size=w.shape).astype("float32") for w in classifier.get_weights()] for _ in range(2)]
    scored = []
    for epoch, weights in enumerate(epoch_weights, start=1):
        classifier.set_weights(weights)
        scored.append(averaging.after_epoch(classifier, epoch))
    assert scored[0][1] is scored[1][1]  # built once, so its compiled predict is reused

    # the second epoch's net is what a fresh copy holding the mean of both epochs gives
    mean = [(first + second) / 2 for first, second in zip(*epoch_weights)]
    fresh = float32_copy(classifier, mean)
    recalibrate_batch_norm(fresh, model_inputs(recalibration.images))
    for reused, expected in zip(scored[1][1].get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(reused, expected, rtol=1e-4, atol=1e-5)
    expected_accuracy = (fresh.predict(model_inputs(validation.images), verbose=0).argmax(axis=1)
                         == validation.labels).mean()
    assert scored[1][0] == pytest.approx(expected_accuracy)


def test_weight_averaging_run_scores_the_average_and_keeps_the_best(tmp_path, capsys):
    import csv

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    arguments = ["--data", str(data), "--output-dir", str(run_dir), "--width", "4", "--batch-size", "16",
                 "--val-fraction", "0.34", "--precision", "float32", "--warmup-epochs", "0",
                 "--lr-schedule", "constant", "--learning-rate", "1e-3", "--swa-start-epoch", "2", "--epochs", "3"]
    assert train.main(arguments) == 0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert all("lr 1.00e-03" in line for line in epoch_lines)  # constant after (no) warm-up
    assert "swa of 1 " in epoch_lines[1] and "swa of 2 " in epoch_lines[2] and "swa" not in epoch_lines[0]

    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert rows[0]["swa_val_accuracy"] == "nan"
    scores = [float(row["val_accuracy"]) for row in rows] + [float(row["swa_val_accuracy"]) for row in rows[1:]]
    assert json.loads((run_dir / "state.json").read_text())["best_val_accuracy"] == pytest.approx(max(scores))
    from models.averaging import WeightAverage

    average = WeightAverage.load(run_dir / "swa_average.npz")
    assert average.count == 2 and average.last_epoch == 3


def test_a_constant_rate_run_can_be_extended_but_a_cosine_run_cannot(tmp_path, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    common = ["--data", str(data), "--width", "4", "--batch-size", "16", "--precision", "float32",
              "--val-fraction", "0.34", "--warmup-epochs", "0"]
    constant = common + ["--output-dir", str(tmp_path / "constant"), "--lr-schedule", "constant"]
    assert train.main(constant + ["--epochs", "1"]) == 0
    assert train.main(constant + ["--epochs", "2"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert json.loads((tmp_path / "constant" / "state.json").read_text())["epochs_done"] == 2
    assert json.loads((tmp_path / "constant" / "config.json").read_text())["epochs"] == 2

    cosine = common + ["--output-dir", str(tmp_path / "cosine")]
    assert train.main(cosine + ["--epochs", "1"]) == 0
    assert train.main(cosine + ["--epochs", "2"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_mixup_blends_faces_and_targets_within_a_batch_the_same_way_on_every_run():
    from models.data import FaceSet

    rng = np.random.default_rng(0)
    faces = FaceSet(rng.integers(0, 256, (32, 48, 48), dtype=np.uint8), np.arange(32) % 7, [str(i) for i in range(32)])
    weights = np.linspace(0.5, 2.0, 7).astype(np.float32)

    def first_batch():
        dataset = train.make_dataset(faces, 8, weights, shuffle_seed=3, epochs=range(0, 1), mixup=0.4)
        return [np.asarray(t) for t in next(iter(dataset))]

    images, targets, sample_weights = first_batch()
    for again, before in zip(first_batch(), (images, targets, sample_weights)):
        np.testing.assert_array_equal(again, before)  # seeded by (seed, epoch, batch): resumes exactly
    assert np.allclose(targets.sum(axis=1), 1, atol=1e-6)
    share = targets.max(axis=1)
    assert np.all(share >= 0.5 - 1e-6) and np.any(share < 0.99)  # the face's own label stays the larger part
    # each image is the same blend of itself and the batch's mirrored member as its target
    plain_images, plain_targets, _ = [np.asarray(t) for t in next(iter(
        train.make_dataset(faces, 8, weights, shuffle_seed=3, epochs=range(0, 1))))]
    # (the share shows in the targets where the two faces of a pair have different labels)
    differing = np.any(plain_targets != plain_targets[::-1], axis=1)
    assert differing.any()
    own = np.sum(targets * plain_targets, axis=1)  # share of the face's own one-hot label
    expected = own[:, None, None, None] * plain_images + (1 - own[:, None, None, None]) * plain_images[::-1]
    np.testing.assert_allclose(images[differing], expected[differing], atol=1e-5)


def test_distillation_blends_labels_with_the_teachers_mirror_averaged_probabilities(tmp_path, capsys):
    import keras

    from models.architecture import build_classifier
    from models.data import FaceSet

    teacher = build_classifier(width=4, dtype_policy="float32")
    faces = FaceSet(np.random.default_rng(1).integers(0, 256, (10, 48, 48), dtype=np.uint8), np.arange(10) % 7,
                    [str(i) for i in range(10)])
    teacher_path = tmp_path / "teacher.keras"
    teacher.save(teacher_path)
    kept = np.array([7, 2, 5])
    probabilities = train.teachers_probabilities([str(teacher_path)], faces, kept)
    inputs = faces.images[kept, :, :, None].astype(np.float32) / 255
    mirror_averaged = (np.asarray(teacher(inputs)) + np.asarray(teacher(inputs[:, :, ::-1]))) / 2
    np.testing.assert_allclose(probabilities, mirror_averaged, atol=1e-5)
    targets = train.teacher_targets(probabilities, faces.subset(kept), teacher_weight=0.3)
    np.testing.assert_allclose(targets, 0.3 * mirror_averaged + 0.7 * np.eye(7)[faces.labels[kept]], atol=1e-5)

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    arguments = ["--data", str(data), "--output-dir", str(tmp_path / "run"), "--width", "4", "--batch-size", "16",
                 "--val-fraction", "0.34", "--precision", "float32", "--teacher", str(teacher_path),
                 "--mixup", "0.2", "--random-erasing", "0.5", "--lr-schedule", "constant", "--epochs", "1"]
    assert train.main(arguments) == 0
    assert "distilling from" in capsys.readouterr().out
    with np.load(tmp_path / "run" / "teacher_targets.npz") as saved:
        cached = saved["targets"]
    teacher_path.unlink()  # a resumed run reads the cached targets, not the teacher
    assert train.main(arguments[:-1] + ["2"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert cached.shape[1] == 7 and np.allclose(cached.sum(axis=1), 1, atol=1e-5)
    assert isinstance(keras.models.load_model(tmp_path / "run" / "best.keras"), keras.Model)

    # a fresh run computes its targets anew: those a run stopped before its first epoch left may be another
    # teacher's, weight's or faces' (other faces' broke the run with a traceback)
    teacher.save(teacher_path)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    np.savez(fresh / "teacher_targets.npz", targets=np.full((3, 7), 1 / 7, np.float32))
    assert train.main([*arguments[:3], str(fresh), *arguments[4:]]) == 0
    with np.load(fresh / "teacher_targets.npz") as saved:
        np.testing.assert_allclose(saved["targets"], cached, atol=1e-5)  # the same teacher's, on the same faces


def test_tempered_distillation_softens_the_teachers_and_matches_the_student_at_that_temperature(tmp_path, capsys):
    import keras

    from models.architecture import build_classifier
    from models.data import FaceSet
    from models.distillation import TemperedDistillationLoss

    # the targets: the teachers' probabilities at temperature 2 (the square root, renormalised), then the label
    probabilities = np.array([[0.64, 0.16, 0.04, 0.04, 0.04, 0.04, 0.04]], np.float32)
    faces = FaceSet(np.zeros((1, 48, 48), np.uint8), np.array([3]), ["0"])
    targets = train.teacher_targets(probabilities, faces, teacher_weight=0.7, temperature=2)
    softened = np.sqrt(probabilities) / np.sqrt(probabilities).sum()
    np.testing.assert_allclose(targets, np.hstack([softened, np.eye(7)[[3]]]), atol=1e-6)

    # the loss: w T^2 CE(teacher at T, student at T) + (1 - w) CE(label, student)
    student = np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02]], np.float32)
    student_at_2 = np.sqrt(student) / np.sqrt(student).sum()
    expected = 0.7 * 4 * -(softened * np.log(student_at_2)).sum() + 0.3 * -np.log(student[0, 3])
    assert np.isclose(float(TemperedDistillationLoss(0.7, 2.0)(targets, student)), expected, atol=1e-4)
    # at temperature 1 without label smoothing it is the cross-entropy against the blended target
    blended = 0.7 * probabilities + 0.3 * np.eye(7)[[3]]
    loss_at_1 = float(TemperedDistillationLoss(0.7, 1.0)(np.hstack([probabilities, np.eye(7)[[3]]]), student))
    assert np.isclose(loss_at_1, -(blended * np.log(student)).sum(), atol=1e-4)

    teacher = build_classifier(width=4, dtype_policy="float32")
    teacher.save(tmp_path / "teacher.keras")
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    arguments = ["--data", str(data), "--output-dir", str(tmp_path / "run"), "--width", "4", "--batch-size", "16",
                 "--val-fraction", "0.34", "--precision", "float32", "--teacher", str(tmp_path / "teacher.keras"),
                 "--distillation-temperature", "3", "--mixup", "0.2", "--swa-start-epoch", "2",
                 "--lr-schedule", "constant", "--epochs", "1"]
    assert train.main(arguments) == 0
    assert "(weight 0.5, temperature 3)" in capsys.readouterr().out
    with np.load(tmp_path / "run" / "teacher_targets.npz") as saved:
        cached = saved["targets"]
    assert cached.shape[1] == 14 and np.allclose(cached.reshape(-1, 2, 7).sum(axis=2), 1, atol=1e-5)
    resumed = subprocess.run([sys.executable, "-m", "models.train", *arguments[:-1], "2"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=600)  # a new process reloads the loss
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout and "swa of 1 val_acc" in resumed.stdout
    assert keras.models.load_model(tmp_path / "run" / "best.keras", compile=False).output_shape == (None, 7)
    for wrong in (["--distillation-temperature", "2"], ["--distillation-temperature", "0", "--teacher", "t.npz"],
                  ["--distillation-temperature", "2", "--teacher", "t.keras", "--live-teacher"]):
        with pytest.raises(SystemExit):
            train.parse_args(["--data", "fer", *wrong])
    assert "needs cached teachers" in capsys.readouterr().err


def test_training_runs_on_the_jax_backend_with_the_whole_step_compiled(tmp_path):
    """The same command on Keras's JAX backend (what a GPU machine without TensorFlow uses): the training
    step compiles, augmentation included, and its model loads here, on TensorFlow."""
    import os
    import subprocess
    import sys

    import keras

    pytest.importorskip("jax")
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    run_dir = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "-m", "models.train", "--data", str(data), "--output-dir", str(run_dir), "--width", "4",
         "--batch-size", "16", "--val-fraction", "0.34", "--precision", "float32", "--mixup", "0.2",
         "--random-erasing", "0.5", "--epochs", "1"],
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Keras on jax (cpu), training step compiled with XLA" in completed.stdout
    assert "epoch   1" in completed.stdout
    assert keras.models.load_model(run_dir / "best.keras").output_shape == (None, 7)


def test_an_interrupted_model_save_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch):
    """best.keras, checkpoint.keras and final.keras are written through a partial file: a save that fails
    (here: the disk fills at the final rename) leaves the previous model loadable and nothing else."""
    import keras

    from models import architecture
    from models.architecture import build_classifier, save_model

    path = tmp_path / "best.keras"
    first = build_classifier(width=4, dtype_policy="float32")
    save_model(first, path)
    assert sorted(tmp_path.iterdir()) == [path]

    def disk_full(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(architecture.os, "replace", disk_full)
    with pytest.raises(OSError):
        save_model(build_classifier(width=4, dtype_policy="float32"), path)
    assert sorted(tmp_path.iterdir()) == [path]
    for kept, original in zip(keras.models.load_model(path).get_weights(), first.get_weights()):
        assert np.array_equal(kept, original)


def test_auto_precision_takes_bfloat16_only_where_the_cpu_computes_it(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert not train.cpu_has_bfloat16(cpuinfo)
    for flag in ("avx512_bf16", "amx_bf16"):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu avx2 avx512f {flag} amx_tile\n")
        assert train.cpu_has_bfloat16(cpuinfo)
    assert not train.cpu_has_bfloat16(tmp_path / "missing")
    assert train.resolved_precision("float32") == "float32"
    assert train.resolved_precision("mixed_bfloat16") == "mixed_bfloat16"
    on_this_machine = "mixed_bfloat16" if train.compute_device() == "gpu" or train.cpu_has_bfloat16() else "float32"
    assert train.resolved_precision("auto") == on_this_machine


def test_sharpness_aware_step_applies_the_gradient_taken_at_the_weights_moved_up_the_gradient_and_keeps_one_statistics_update():
    import keras
    import tensorflow as tf

    from models.sharpness import SharpnessAwareModel

    rng = np.random.default_rng(0)
    faces = rng.random((8, 4, 4, 1)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    inputs = keras.Input((4, 4, 1))
    normalization = keras.layers.BatchNormalization(momentum=0.5)
    classifier = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(5),
                                   normalization, keras.layers.Dense(3, activation="softmax")], name="emotion_cnn")
    model = SharpnessAwareModel(inputs, classifier(keras.layers.Identity(name="augmentation")(inputs)))
    model.radius = 0.5
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    start = [weight.numpy() for weight in model.trainable_weights]

    def gradients_at(weights):
        for variable, value in zip(model.trainable_weights, weights):
            variable.assign(value)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(labels, classifier(faces, training=True)))
        return [gradient.numpy() for gradient in tape.gradient(loss, model.trainable_weights)]

    plain = gradients_at(start)
    norm = np.sqrt(sum((gradient ** 2).sum() for gradient in plain))
    sharp = gradients_at([weight + 0.5 * gradient / norm for weight, gradient in zip(start, plain)])
    gradients_at(start)
    normalization.moving_mean.assign(np.zeros(5))
    model.fit(faces, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # the moving mean took one update, from the first pass at the unperturbed weights
    kernel, bias = start[0], start[1]
    np.testing.assert_allclose(normalization.moving_mean.numpy(), 0.5 * (faces.reshape(8, -1) @ kernel + bias).mean(0),
                               atol=1e-5)
    for trained, weight, gradient in zip(model.trainable_weights, start, sharp):
        np.testing.assert_allclose(trained.numpy(), weight - 0.1 * gradient, atol=1e-6)
    assert not all(np.allclose(trained.numpy(), weight - 0.1 * gradient, atol=1e-4)  # not a plain step
                   for trained, weight, gradient in zip(model.trainable_weights, start, plain))


def test_a_sharpness_aware_run_draws_as_a_plain_one_and_resumes_in_a_new_process(tmp_path, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    arguments = ["--data", str(data), "--width", "4", "--batch-size", "16", "--val-fraction", "0.34",
                 "--precision", "float32", "--mixup", "0.2", "--lr-schedule", "constant", "--epochs", "1"]
    assert train.main(arguments + ["--output-dir", str(tmp_path / "plain")]) == 0
    assert train.main(arguments + ["--output-dir", str(tmp_path / "sam"), "--sam-radius", "0.05"]) == 0
    assert "sharpness-aware steps: gradients taken at the weights moved 0.05 up" in capsys.readouterr().out
    plain, sam = (json.loads((tmp_path / run / "state.json").read_text()) for run in ("plain", "sam"))
    assert plain["random_states"] == sam["random_states"]  # one augmentation and one set of dropout masks per step
    resumed = subprocess.run([sys.executable, "-m", "models.train", *arguments[:-1], "2", "--output-dir",
                              str(tmp_path / "sam"), "--sam-radius", "0.05"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=600)  # a new process reloads the model
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout and "sharpness-aware steps" in resumed.stdout
    for wrong in (["--sam-radius", "-1"], ["--sam-radius", "0.05", "--teacher", "t.keras", "--live-teacher"]):
        with pytest.raises(SystemExit):
            train.parse_args(["--data", "fer", *wrong])
    assert "cannot be combined" in capsys.readouterr().err
