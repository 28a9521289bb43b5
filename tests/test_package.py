"""The installable package: a wheel installed into a fresh virtualenv works from any folder, without
TensorFlow or the repository, and the README's Python example runs as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import cv2
import pytest

from realtime import __version__
from realtime.demo import sample_photo_bgr

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 900


def readme_api_example() -> str:
    """The first ```python block of the README's "Python API" section."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a clean copy of this checkout (no stale build/ folder can leak into it)."""
    source = tmp_path_factory.mktemp("source") / "emotion-tracer"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "*.egg-info", "runs", "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, timeout=300, cwd=out)
    (path,) = out.glob("emotion_tracer-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed (its dependencies from the package index); its bin/."""
    env = tmp_path_factory.mktemp("venv")
    venv.create(env, with_pip=True)
    bin_dir = env / "bin"
    result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                             str(wheel)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        if "No matching distribution" in result.stderr or "Could not find a version" in result.stderr \
                or "NewConnectionError" in result.stderr:
            pytest.skip(f"no package index to install the runtime's dependencies from: {result.stderr[-300:]}")
        raise AssertionError(result.stderr[-3000:])
    return bin_dir


def test_wheel_holds_the_runtime_and_its_model_but_no_generic_top_level_names(wheel):
    assert wheel.name.startswith(f"emotion_tracer-{__version__}-")  # pyproject reads the package's version
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"realtime"}
    assert "realtime/model/emotion_cnn_int8.onnx" in names
    assert "realtime/io/video.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "emotion-tracer = realtime.cli:program_main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_the_api_example_cli_and_demo_outside_the_repository(installed, tmp_path):
    python = installed / "python"
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert cv2.imwrite(str(tmp_path / "photo.jpg"), sample_photo_bgr())

    demo = subprocess.run([str(python), "-m", "realtime", "--demo", "--output", "clip.mp4",
                           "--results", "clip.csv"], **run)
    assert demo.returncode == 0, demo.stderr
    assert "dominant emotion" in demo.stdout and (tmp_path / "clip.mp4").stat().st_size > 0

    example = subprocess.run([str(python), "-c", readme_api_example()], **run)
    assert example.returncode == 0, example.stderr
    assert "happy" in example.stdout  # the astronaut smiles

    cli = subprocess.run([str(installed / "emotion-tracer"), "--image", "photo.jpg", "--output", "annotated.jpg",
                          "--results", "faces.csv"], **run)
    assert cli.returncode == 0, cli.stderr
    assert cv2.imread(str(tmp_path / "annotated.jpg")) is not None
    assert "happy" in (tmp_path / "faces.csv").read_text()
    version = subprocess.run([str(installed / "emotion-tracer"), "--version"], **run)
    assert version.returncode == 0 and version.stdout.startswith(f"emotion-tracer {__version__}\nmodel: ")
    assert "site-packages" in version.stdout.splitlines()[1]  # the model inside the installed package

    where = subprocess.run([str(python), "-c", "import realtime, sys; print(realtime.__file__)"], **run)
    assert "site-packages" in where.stdout and str(PROJECT_ROOT) not in where.stdout
    no_tensorflow = subprocess.run([str(python), "-c", "import tensorflow"], **run)
    assert no_tensorflow.returncode != 0 and "No module named 'tensorflow'" in no_tensorflow.stderr
    batch = subprocess.run([str(python), "-m", "realtime.batch", "--help"], **run)
    assert batch.returncode == 1 and batch.stderr.startswith("error: batch analysis needs Ray and pyarrow")
    assert batch.stderr.count("\n") == 1
    for generic in ("models", "export"):
        absent = subprocess.run([str(python), "-c", f"import {generic}"], **run)
        assert absent.returncode != 0, f"the wheel installed a top-level '{generic}' package"


def test_source_warning_is_exported_as_a_warning():
    import warnings

    import realtime

    assert "SourceWarning" in realtime.__all__ and "SourceWarning" in dir(realtime)
    assert issubclass(realtime.SourceWarning, UserWarning)
    with warnings.catch_warnings():  # a user can silence exactly these, or make them errors
        warnings.simplefilter("error", realtime.SourceWarning)
        with pytest.raises(realtime.SourceWarning):
            warnings.warn("video x.mp4: lost", realtime.SourceWarning, stacklevel=1)
