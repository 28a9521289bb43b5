"""Averaging the weights of nets of one architecture (models.soup)."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the soup needs the training requirements (requirements-dev.txt)")

from models import soup  # noqa: E402
from tests.fer_fixtures import make_fer_folder  # noqa: E402

WIDTHS = [4, 6, 8, 10]


def saved_net(path, seed: int, widths=WIDTHS) -> list[np.ndarray]:
    """A random float32 net saved as `path`; returns its weights."""
    import keras

    from models.architecture import build_classifier, save_model

    keras.utils.set_random_seed(seed)
    model = build_classifier(widths, dtype_policy="float32")
    rng = np.random.default_rng(seed)
    model.set_weights([weight + rng.normal(0, 0.1, weight.shape).astype(weight.dtype) if weight.ndim else weight
                       for weight in model.get_weights()])  # batch-norm statistics differ too
    save_model(model, path)
    return model.get_weights()


def test_soup_holds_the_mean_of_the_members_weights(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    members = [tmp_path / f"member{seed}.keras" for seed in (1, 2, 3)]
    weights = [saved_net(path, seed) for seed, path in zip((1, 2, 3), members)]
    output_dir = tmp_path / "soup"
    arguments = ["--members", *map(str, members), "--data", str(data), "--output-dir", str(output_dir)]
    assert soup.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "soup of 3: validation accuracy" in printed and printed.count("with flip averaging") == 4
    config = json.loads((output_dir / "config.json").read_text())
    assert config["soup_of"] == [str(member) for member in members] and config["batch_norm"] == "averaged"
    assert (config["val_fraction"], config["split_seed"]) == (0.1, 42)  # the first member's (defaults here)
    averaged = keras.models.load_model(output_dir / "best.keras", compile=False).get_weights()
    assert len(averaged) == len(weights[0])
    for i, mean in enumerate(averaged):
        assert np.allclose(mean, np.mean([member[i] for member in weights], axis=0), atol=1e-6)
        assert not np.allclose(mean, weights[0][i])


def test_recalibrated_soup_measures_batch_norm_statistics_and_keeps_the_other_means(tmp_path, capsys):
    import keras

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    members = [tmp_path / f"member{seed}.keras" for seed in (1, 2)]
    weights = [saved_net(path, seed) for seed, path in zip((1, 2), members)]
    output_dir = tmp_path / "soup"
    assert soup.main(["--members", *map(str, members), "--data", str(data), "--output-dir", str(output_dir),
                      "--recalibrate", "--faces", "16"]) == 0
    assert "recalibrated: validation accuracy" in capsys.readouterr().out
    assert json.loads((output_dir / "config.json").read_text())["batch_norm"] == "recalibrated"
    model = keras.models.load_model(output_dir / "best.keras", compile=False)
    for layer in model.layers:
        if not layer.get_weights():
            continue
        index = [id(w) for w in model.weights].index(id(layer.weights[0]))
        means = [np.mean([member[index + k] for member in weights], axis=0) for k in range(len(layer.weights))]
        if isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta averaged; statistics measured
            assert np.allclose(layer.get_weights()[0], means[0], atol=1e-6)
            assert not np.allclose(layer.get_weights()[2], means[2], atol=1e-3)
        else:
            assert all(np.allclose(w, m, atol=1e-6) for w, m in zip(layer.get_weights(), means))


def test_cli_refuses_members_of_different_architectures_a_single_member_and_a_training_run_folder(tmp_path, capsys):
    data = make_fer_folder(tmp_path / "fer", per_class=6)
    narrow, wide = tmp_path / "narrow.keras", tmp_path / "wide.keras"
    saved_net(narrow, 1)
    saved_net(wide, 2, widths=[4, 6, 8, 12])
    output_dir = tmp_path / "soup"
    assert soup.main(["--members", str(narrow), str(wide), "--data", str(data), "--output-dir", str(output_dir)]) == 2
    assert capsys.readouterr().err == (
        "error: the members differ in architecture: only nets of one architecture can be averaged\n")
    assert not output_dir.exists()

    assert soup.main(["--members", str(narrow), "--data", str(data), "--output-dir", str(output_dir)]) == 2
    assert capsys.readouterr().err == "error: give two or more --members\n"
    assert soup.main(["--members", str(narrow), str(tmp_path / "missing.keras"), "--data", str(data),
                      "--output-dir", str(output_dir)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.keras'}: no such .keras model\n"
    (tmp_path / "exported.onnx").write_bytes(b"onnx")  # an exported member: it said "no such .keras model"
    assert soup.main(["--members", str(narrow), str(tmp_path / "exported.onnx"), "--data", str(data),
                      "--output-dir", str(output_dir)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'exported.onnx'}: not a .keras model (a soup averages the "
                                       "weights of Keras models, before export)\n")
    assert not output_dir.exists()
    (tmp_path / "broken.keras").write_text("not a zip")
    assert soup.main(["--members", str(narrow), str(tmp_path / "broken.keras"), "--data", str(data),
                      "--output-dir", str(output_dir)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'broken.keras'}: not a Keras model file "
                                       "(a .keras file is a zip archive)\n")
    assert not output_dir.exists()

    split_runs = [tmp_path / "seed42", tmp_path / "seed7"]  # judged on faces one of them trained on
    for seed, folder in zip((42, 7), split_runs):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"width": 4, "val_fraction": 0.1, "split_seed": seed}))
        saved_net(folder / "best.keras", seed)
    assert soup.main(["--members", *(str(folder / "best.keras") for folder in split_runs), "--data", str(data),
                      "--output-dir", str(output_dir)]) == 2
    assert capsys.readouterr().err == (
        f"error: the members record different validation splits ({split_runs[0] / 'best.keras'}: 0.1, split seed 42; "
        f"{split_runs[1] / 'best.keras'}: 0.1, split seed 7), so the soup would be judged on faces some members "
        "trained on\n")
    assert not output_dir.exists()

    run = tmp_path / "run"  # a training run's folder: its config.json must survive
    run.mkdir()
    (run / "config.json").write_text('{"width": 4, "seed": 1}')
    assert soup.main(["--members", str(narrow), str(narrow), "--data", str(data), "--output-dir", str(run)]) == 2
    assert capsys.readouterr().err == f"error: {run} holds a training run: give the soup a folder of its own\n"
    assert sorted(path.name for path in run.iterdir()) == ["config.json"]


def test_exported_soup_records_its_members_and_validation_accuracy(tmp_path, capsys):
    import onnxruntime

    from export import __main__ as export_cli
    from realtime.model_metadata import read_metadata

    data = make_fer_folder(tmp_path / "fer", per_class=6)
    members = [tmp_path / f"member{seed}.keras" for seed in (1, 2)]
    for seed, path in zip((1, 2), members):
        saved_net(path, seed)
    output_dir = tmp_path / "soup"
    assert soup.main(["--members", *map(str, members), "--data", str(data), "--output-dir", str(output_dir)]) == 0
    config = json.loads((output_dir / "config.json").read_text())
    onnx_file = tmp_path / "soup.onnx"
    assert export_cli.main(["--model", str(output_dir / "best.keras"), "--output", str(onnx_file),
                            "--data", str(data)]) == 0
    assert "from config.json" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    facts = read_metadata(session.get_modelmeta().custom_metadata_map, "soup").facts
    assert facts["training"]["soup_of"] == [str(member) for member in members]
    assert facts["training"]["batch_norm"] == "averaged"
    assert facts["validation_accuracy"] == config["validation_accuracy"] == facts["validation_accuracy_float32"]


def test_greedy_soup_keeps_members_that_do_not_lower_its_validation_accuracy(tmp_path, capsys):
    """Nets alike but for their output bias, scored on faces of one class: those that push that class stay in the
    soup, one that pushes another class so hard that the mean would follow it is left out."""
    import keras

    from models.data import load_fer2013

    faces = load_fer2013(make_fer_folder(tmp_path / "fer", per_class=6))["train"]
    validation = faces.subset(np.flatnonzero(faces.labels == 3))  # happy faces only
    saved_net(tmp_path / "base.keras", 1)
    models = []
    for pushed_class, push in ((3, 100.0), (3, 200.0), (5, 600.0)):
        model = keras.models.load_model(tmp_path / "base.keras", compile=False)
        bias = model.layers[-1].weights[-1]
        bias.assign(np.eye(7, dtype="float32")[pushed_class] * push)
        models.append(model)
    members = [tmp_path / name for name in ("happy.keras", "happier.keras", "sad.keras")]
    accuracies = [soup.validation_accuracies(model, validation) for model in models]
    assert accuracies == [(1.0, 1.0), (1.0, 1.0), (0.0, 0.0)]
    # listed worst first: the greedy soup starts from the best
    kept, kept_models, soup_accuracies = soup.greedy_soup(members[::-1], models[::-1], accuracies[::-1], validation)
    assert kept == members[1::-1] and soup_accuracies == (1.0, 1.0)
    printed = capsys.readouterr().out
    assert f"starting from {members[1]}" in printed and f"kept {members[0]}" in printed
    assert f"left out {members[2]} (0.00%, with flip averaging 0.00%)" in printed
