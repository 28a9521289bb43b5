"""Cutting a trained CNN down to narrower blocks keeps the filters that matter, with their weights."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="pruning needs the training requirements (requirements-dev.txt)")

from models import prune  # noqa: E402
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
    for name in prune.CONVOLUTIONS:
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
    importance = prune.filter_importance(model, faces)
    assert all(np.all(importance[name][1::2] == 0) and np.all(importance[name][::2] > 0) for name in prune.CONVOLUTIONS)
    live = [width // 2 for width in SOURCE_WIDTHS]
    cut = prune.cut(model, tuple(live), importance)
    assert prune.block_widths_of(cut) == tuple(live) and cut.name == "emotion_cnn_w3-4-5-6"
    expected = np.asarray(model(faces, training=False))
    assert np.allclose(np.asarray(cut(faces, training=False)), expected, atol=1e-5)
    # one live filter fewer in the last block changes the answer: the cut is not a no-op
    fewer = prune.cut(model, (*live[:3], live[3] - 1), importance)
    assert not np.allclose(np.asarray(fewer(faces, training=False)), expected, atol=1e-5)


def test_cli_writes_the_cut_model_and_refuses_a_wider_one(tmp_path, capsys):
    import keras

    from models.architecture import save_model

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    source = tmp_path / "source.keras"
    save_model(network_with_dead_filters(), source)
    output = tmp_path / "cut.keras"
    arguments = ["--model", str(source), "--data", str(data), "--output", str(output), "--faces", "8"]
    assert prune.main(arguments + ["--width", "3", "4", "5", "6"]) == 0
    printed = capsys.readouterr().out
    assert "6-8-10-12 (given)" in printed and "3-4-5-6 (cut)" in printed and f"wrote {output}" in printed
    assert prune.block_widths_of(keras.models.load_model(output, compile=False)) == (3, 4, 5, 6)

    output.unlink()
    assert prune.main(arguments + ["--width", "3", "4", "5", "13"]) == 2
    assert capsys.readouterr().err == "error: cannot cut 6-8-10-12 to the wider 3-4-5-13\n"
    assert not output.exists()


def test_cli_refuses_a_net_with_separable_blocks(tmp_path, capsys):
    from models.architecture import build_classifier, save_model

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    source = tmp_path / "separable.keras"
    save_model(build_classifier(SOURCE_WIDTHS, dtype_policy="float32", separable_from=2), source)
    output = tmp_path / "cut.keras"
    arguments = ["--model", str(source), "--data", str(data), "--output", str(output), "--width", "3", "4", "5", "6"]
    assert prune.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "depthwise-separable blocks" in error
    assert not output.exists()
