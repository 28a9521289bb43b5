"""Resizing a trained CNN: cutting it down keeps the filters that matter, with their weights; widening it adds
copies that change nothing it computes."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="resizing needs the training requirements (requirements-dev.txt)")

from models import resize  # noqa: E402
from tests.fer_fixtures import make_fer_folder  # noqa: E402

SOURCE_WIDTHS = [6, 8, 10, 12]


def network_with_dead_filters(seed: int = 0):
    """A random float32 net of SOURCE_WIDTHS where every other filter of each convolution outputs zero
    (batch-norm scale 0, shift -1, then ReLU), so it computes what its live half alone computes; the
    live filters' statistics are measured on random faces, so that they fire."""
    import keras

    from models.architecture import build_classifier
    from models.averaging import recalibrate_batch_norm

    keras.utils.set_random_seed(seed)
    model = build_classifier(SOURCE_WIDTHS, dtype_policy="float32")
    rng = np.random.default_rng(seed)
    for name in resize.CONVOLUTIONS:
        norm = model.get_layer(name.replace("conv", "bn"))
        gamma, beta, mean, variance = norm.get_weights()
        gamma, beta = rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(0.5, 1.0, beta.shape)  # live filters fire
        gamma[1::2], beta[1::2] = 0.0, -1.0
        norm.set_weights([gamma, beta, mean, variance])
    recalibrate_batch_norm(model, rng.random((64, 48, 48, 1), dtype=np.float32))
    return model


def test_cut_to_the_live_filters_computes_exactly_what_the_whole_net_does():
    model = network_with_dead_filters()
    faces = np.random.default_rng(1).random((16, 48, 48, 1), dtype=np.float32)
    importance = resize.filter_importance(model, faces)
    assert all(np.all(importance[name][1::2] == 0) and np.all(importance[name][::2] > 0) for name in resize.CONVOLUTIONS)
    live = [width // 2 for width in SOURCE_WIDTHS]
    cut = resize.resize(model, tuple(live), importance)
    assert resize.block_widths_of(cut) == tuple(live) and cut.name == "emotion_cnn_w3-4-5-6"
    expected = np.asarray(model(faces, training=False))
    assert np.allclose(np.asarray(cut(faces, training=False)), expected, atol=1e-5)
    # one live filter fewer in the last block changes the answer: the cut is not a no-op
    fewer = resize.resize(model, (*live[:3], live[3] - 1), importance)
    assert not np.allclose(np.asarray(fewer(faces, training=False)), expected, atol=1e-5)


def test_cli_writes_the_cut_model_and_a_widened_one(tmp_path, capsys):
    import keras

    from models.architecture import save_model

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    source = tmp_path / "source.keras"
    save_model(network_with_dead_filters(), source)
    output = tmp_path / "cut.keras"
    arguments = ["--model", str(source), "--data", str(data), "--output", str(output), "--faces", "8"]
    assert resize.main(arguments + ["--width", "3", "4", "5", "6"]) == 0
    printed = capsys.readouterr().out
    assert "6-8-10-12 (given)" in printed and "3-4-5-6 (resized)" in printed and f"wrote {output}" in printed
    assert "statistics from" in printed
    assert resize.block_widths_of(keras.models.load_model(output, compile=False)) == (3, 4, 5, 6)

    output.unlink()
    assert resize.main(arguments + ["--width", "6", "8", "10", "25"]) == 0
    printed = capsys.readouterr().out
    assert "statistics copied" in printed  # nothing was cut, so every layer sees what it saw
    accuracies = [line.split(" parameters, ")[1] for line in printed.splitlines() if " parameters, " in line]
    assert "6-8-10-25 (resized)" in printed and accuracies[0] == accuracies[1]
    assert resize.block_widths_of(keras.models.load_model(output, compile=False)) == (6, 8, 10, 25)


def test_widening_adds_copies_that_compute_exactly_what_the_given_net_does():
    model = network_with_dead_filters()
    faces = np.random.default_rng(2).random((16, 48, 48, 1), dtype=np.float32)
    importance = resize.filter_importance(model, faces)
    wider = (9, 8, 17, 25)  # 1.5x, the same, 1.7x and more than twice as many: some filters copied twice
    widened = resize.resize(model, wider, importance, seed=3)
    assert resize.block_widths_of(widened) == wider
    assert np.allclose(np.asarray(widened(faces, training=False)), np.asarray(model(faces, training=False)), atol=1e-5)
    # the copies start apart: the next layer weighs two copies of one filter differently
    sources = resize.channel_sources(importance["block1_conv2"], 9)
    copied = np.flatnonzero(sources == sources[np.argmax(np.bincount(sources))])
    following = widened.get_layer("block2_conv1").get_weights()[0]
    assert len(copied) == 2 and not np.allclose(following[:, :, copied[0]], following[:, :, copied[1]])


def test_channel_sources_keep_the_best_when_cutting_and_copy_the_best_when_widening():
    importance = np.array([0.1, 0.9, 0.5, 0.0])
    assert resize.channel_sources(importance, 2).tolist() == [1, 2]
    assert resize.channel_sources(importance, 4).tolist() == [0, 1, 2, 3]
    assert resize.channel_sources(importance, 6).tolist() == [0, 1, 1, 2, 2, 3]
    assert resize.channel_sources(importance, 9).tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3]


def test_copies_shares_sum_to_one_per_given_channel():
    sources = np.array([0, 1, 1, 2, 2, 2])
    shares = resize.input_shares(sources, np.random.default_rng(0), spread=0.5)
    assert shares[0] == 1.0
    assert np.isclose(shares[1:3].sum(), 1.0) and np.isclose(shares[3:].sum(), 1.0)
    assert len(np.unique(np.round(shares[3:], 6))) == 3


def test_cli_refuses_a_net_with_separable_blocks(tmp_path, capsys):
    from models.architecture import build_classifier, save_model

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    source = tmp_path / "separable.keras"
    save_model(build_classifier(SOURCE_WIDTHS, dtype_policy="float32", separable_from=2), source)
    output = tmp_path / "cut.keras"
    arguments = ["--model", str(source), "--data", str(data), "--output", str(output), "--width", "3", "4", "5", "6"]
    assert resize.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "depthwise-separable blocks" in error
    assert not output.exists()
