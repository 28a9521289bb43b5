"""The GPU training recipe (models/train_on_gpu.sh) runs end to end on this CPU, on a tiny generated set: a
teachers-only call (residual teachers), a call that distils live from them on the same machine, then students-only
calls from their file (at the shipped width, and widened after a probe that finds the teachers too slow), each
returning what the next session needs."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="training needs the training requirements (requirements-dev.txt)")
pytest.importorskip("jax", reason="the recipe trains on Keras's JAX backend (requirements-dev.txt)")

from models.data import load_fer2013, save_npz  # noqa: E402
from tests.conftest import PROJECT_ROOT  # noqa: E402
from tests.fer_fixtures import make_fer_folder  # noqa: E402

RECIPE = PROJECT_ROOT / "models" / "train_on_gpu.sh"


def run_recipe(data: Path, results: Path, runs: Path, budget: int, **settings: str) -> str:
    """Run the recipe as a GPU session would (python3 is this interpreter); its output, after checking it ended well."""
    interpreter_folder = Path(sys.executable).parent
    environment = {**os.environ, **settings, "RUNS": str(runs), "PYTHONPATH": str(PROJECT_ROOT),
                   "JAX_PLATFORMS": "cpu", "PATH": f"{interpreter_folder}{os.pathsep}{os.environ['PATH']}"}
    if not (interpreter_folder / "python3").exists():
        pytest.skip(f"no python3 beside {sys.executable} for the recipe to call")
    finished = subprocess.run(["bash", str(RECIPE), str(data), str(results), str(budget)], cwd=PROJECT_ROOT,
                              env=environment, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return finished.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="the recipe is a bash script")
def test_gpu_recipe_trains_teachers_then_students_from_their_file_and_keeps_within_its_time(tmp_path):
    data = tmp_path / "fer2013_train.npz.xz"
    save_npz({"train": load_fer2013(make_fer_folder(tmp_path / "fer", per_class=12))["train"]}, data)

    teachers = tmp_path / "teachers"
    out = run_recipe(data, teachers, tmp_path / "teacher_runs", 100_000, TEACHERS="2", TEACHER_EPOCHS="1",
                     TEACHERS_ONLY="1", TEACHER_ARCHITECTURE="residual", TEACHER_WIDTH="8")
    assert "ensemble of 2" in out and "(teachers only)" in out
    assert (teachers / "teachers_probabilities.npz").is_file()
    with tarfile.open(teachers / "results.tar.gz") as packed:
        assert {"./teacher_residual_w8_s1.log", "./teacher_residual_w8_s2/config.json"} <= set(packed.getnames())
        settings = json.load(packed.extractfile("./teacher_residual_w8_s2/config.json"))
    assert (settings["architecture"], settings["width"]) == ("residual", 8)

    # a second call on the same machine (the same RUNS) distils live from those teachers into three students,
    # beside a control from their file: the two differ only in the teaching
    live = tmp_path / "live"
    residual_teachers = {"TEACHER_ARCHITECTURE": "residual", "TEACHER_WIDTH": "8"}
    out = run_recipe(data, live, tmp_path / "teacher_runs", 100_000, **residual_teachers, LIVE_TEACHERS="1",
                     TEACHER_PROBABILITIES=str(tmp_path / "teacher_runs" / "teachers_probabilities.npz"),
                     STUDENT_EPOCHS="3", STUDENT_RESERVE="100000", MIN_TEACHER_ACCURACY="0")
    assert "students: 3 epochs" in out and out.count("stopped after epoch 1 of 3") >= 4 and "soup of 4" in out
    assert sorted(path.name for path in live.iterdir()) == [
        "results.tar.gz", "student_w32_shipped_lr1e-3_mix0.2_cached.keras", "student_w32_shipped_lr1e-3_mix0.2_live.keras",
        "student_w32_shipped_lr1e-3_mix1.0_live.keras", "student_w32_shipped_lr2e-3_mix0.2_live.keras",
        "students_soup.keras", "teachers_probabilities.npz"]
    with tarfile.open(live / "results.tar.gz") as packed:
        live_settings = json.load(packed.extractfile("./student_w32_shipped_lr1e-3_mix0.2_live/config.json"))
        control = json.load(packed.extractfile("./student_w32_shipped_lr1e-3_mix0.2_cached/config.json"))
    assert live_settings["live_teacher"] and sorted(live_settings["teacher"]) == [
        str(tmp_path / "teacher_runs" / f"teacher_residual_w8_s{seed}" / "final_recalibrated.keras") for seed in (1, 2)]
    assert not control["live_teacher"] and control["teacher"] == [str(live / "teachers_probabilities.npz")]
    assert {key for key in live_settings if live_settings[key] != control[key]} == {"live_teacher", "teacher",
                                                                                    "output_dir"}
    assert "distilling live from" in (tmp_path / "teacher_runs" / "student_w32_shipped_lr1e-3_mix0.2_live.log").read_text()

    # refused before any work: live teachers beside a file of others, or an earlier call's teachers that are not there
    for refused_settings in ({"COMBINE_WITH": str(live / "teachers_probabilities.npz")},
                             {"TEACHER_PROBABILITIES": str(live / "teachers_probabilities.npz")}):
        refused = subprocess.run(["bash", str(RECIPE), str(data), str(tmp_path / "refused"), "100"], cwd=PROJECT_ROOT,
                                 env={**os.environ, "RUNS": str(tmp_path / "empty_runs"), "LIVE_TEACHERS": "1",
                                      **refused_settings}, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "LIVE_TEACHERS" in refused.stderr
        assert not (tmp_path / "refused").exists() and not (tmp_path / "empty_runs").exists()

    # and teachers there whose ensemble scored under the least accuracy asked for (GPU try 6: one-epoch teachers)
    weak = subprocess.run(["bash", str(RECIPE), str(data), str(tmp_path / "refused"), "100"], cwd=PROJECT_ROOT,
                          env={**os.environ, "RUNS": str(tmp_path / "teacher_runs"), "LIVE_TEACHERS": "1",
                               "TEACHER_PROBABILITIES": str(tmp_path / "teacher_runs" / "teachers_probabilities.npz"),
                               "MIN_TEACHER_ACCURACY": "1.01", **residual_teachers},
                          capture_output=True, text=True, timeout=60)
    assert weak.returncode == 2 and weak.stderr.count("\n") == 1 and "did not finish" in weak.stderr
    assert not (tmp_path / "refused").exists()

    # students from that file (combined with itself: COMBINE_WITH), with no time left for a second epoch: each
    # stops after its first, says so, and the call still returns every student, their soup and both files, eight
    # in all (the most the device returns)
    students = tmp_path / "students"
    teacher_file = str(teachers / "teachers_probabilities.npz")
    out = run_recipe(data, students, tmp_path / "student_runs", 100_000, TEACHER_PROBABILITIES=teacher_file,
                     COMBINE_WITH=teacher_file, STUDENTS_FROM_SHIPPED="1", STUDENT_EPOCHS="2", STUDENT_RESERVE="100000")
    assert "the strongest teachers' file on validation" in out
    assert "students: 2 epochs, weights averaged from epoch 2, at most 1s" in out
    assert out.count("stopped after epoch 1 of 2") >= 4
    returned = sorted(path.name for path in students.iterdir())
    assert returned == ["results.tar.gz", "student_w32_shipped_lr1e-3_mix0.0.keras",
                        "student_w32_shipped_lr1e-3_mix0.2.keras", "student_w32_shipped_lr2e-3_mix0.2.keras",
                        "student_w32_shipped_lr5e-4_mix0.2.keras", "students_soup.keras",
                        "teachers_combined.npz", "teachers_probabilities.npz"]
    assert "soup of 4" in out

    # a call for teachers and students whose probe finds one teacher too slow for the budget: the same students,
    # from the shipped weights widened to 32-80-160-320 (models.resize), distil from COMBINE_WITH at that width
    widened = tmp_path / "widened"
    out = run_recipe(data, widened, tmp_path / "widened_runs", 100_000, TEACHERS="1", MIN_TEACHER_EPOCHS="100000000",
                     COMBINE_WITH=teacher_file, STUDENTS_FROM_SHIPPED="1", STUDENT_WIDTHS="32 80 160 320",
                     STUDENT_EPOCHS="2", STUDENT_RESERVE="100000")
    assert f"too slow for this budget: no teachers; the students distil from {teacher_file}" in out
    assert out.count("stopped after epoch 1 of 2") >= 4 and "soup of 4" in out
    assert (widened / "student_w32-80-160-320_shipped_lr1e-3_mix0.2.keras").is_file()
    with tarfile.open(widened / "results.tar.gz") as packed:
        settings = json.load(packed.extractfile("./student_w32-80-160-320_shipped_lr1e-3_mix0.2/config.json"))
    assert settings["width"] == [32, 80, 160, 320]
    assert settings["init_weights"] == str(tmp_path / "widened_runs" / "shipped_w32-80-160-320.keras")

