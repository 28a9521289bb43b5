"""FER2013 loaders: Kaggle folders, fer2013.csv, class order, validation split and bad input."""

from pathlib import Path

import numpy as np
import pytest

from models.data import DatasetError, FaceSet, has_copy_in, load_fer2013, stratified_split
from models.emotions import EMOTIONS
from tests.conftest import without_escaping_ctrl_c
from tests.fer_fixtures import make_fer_csv, make_fer_folder, synthetic_face


def test_folder_layout_loads_both_splits_with_folder_labels(tmp_path):
    splits = load_fer2013(make_fer_folder(tmp_path / "fer", per_class=4))
    assert set(splits) == {"train", "test"}
    train = splits["train"]
    assert train.images.shape == (28, 48, 48) and train.images.dtype == np.uint8
    assert train.class_counts().tolist() == [4] * 7
    happy = train.names.index("train/happy/Training_3000.jpg")
    assert train.labels[happy] == EMOTIONS.index("happy")


def test_csv_maps_original_label_numbers_to_the_model_class_order(tmp_path):
    splits = load_fer2013(make_fer_csv(tmp_path / "fer2013.csv", per_class=2))
    assert set(splits) == {"train", "test", "private_test"}
    # The CSV numbers sad 4, surprise 5, neutral 6; the model's order is alphabetical.
    train = splits["train"]
    first_neutral_row = 2 + 6 * 2  # header is line 1, csv label 6 comes after 6 labels of 2 rows
    index = train.names.index(f"fer2013.csv:{first_neutral_row}")
    assert EMOTIONS[train.labels[index]] == "neutral"
    assert train.class_counts().tolist() == [2] * 7
    # the pixels survive the round trip: the pattern of the class is where synthetic_face puts it
    row = 4 + 6 * EMOTIONS.index("neutral")
    assert train.images[index][row:row + 5, 8:40].mean() > train.images[index][40:, :].mean() + 40


def test_same_data_loads_identically_from_folder_and_csv(tmp_path):
    rng = np.random.default_rng(1)
    face = synthetic_face(3, rng)
    (tmp_path / "fer2013.csv").write_text(f"emotion,pixels,Usage\n3,{' '.join(map(str, face.ravel()))},Training\n")
    loaded = load_fer2013(tmp_path / "fer2013.csv")["train"]
    assert np.array_equal(loaded.images[0], face) and EMOTIONS[loaded.labels[0]] == "happy"


@pytest.mark.parametrize("content, message", [
    ("emotion,pixels\n0,1 2 3\n", "missing columns"),
    ("emotion,pixels,Usage\n9," + " ".join(["0"] * 2304) + ",Training\n", "emotion must be 0-6"),
    ("emotion,pixels,Usage\n0,1 2 3,Training\n", "2304 pixel values"),
    ("emotion,pixels,Usage\n0," + " ".join(["0"] * 2304) + ",Validation\n", "unknown Usage"),
    ("emotion,pixels,Usage\n0," + " ".join(["0"] * 2304) + ",PublicTest\n", "no rows with Usage 'Training'"),
])
def test_malformed_csv_gives_a_clear_error_naming_the_line(tmp_path, content, message):
    path = tmp_path / "fer2013.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_fer2013(path)


def test_missing_path_wrong_file_and_wrong_folders(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_fer2013(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="expected a folder"):
        load_fer2013(tmp_path / "notes.txt")
    with pytest.raises(DatasetError, match="no train/ folder"):
        load_fer2013(tmp_path)
    root = make_fer_folder(tmp_path / "fer", per_class=1)
    (root / "train" / "contempt").mkdir()
    with pytest.raises(DatasetError, match="unknown class folders"):
        load_fer2013(root)


def test_unreadable_image_is_named(tmp_path):
    root = make_fer_folder(tmp_path / "fer", per_class=1)
    (root / "test" / "sad" / "PublicTest_broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="PublicTest_broken.jpg"):
        load_fer2013(root)


def test_stratified_split_is_seeded_disjoint_and_keeps_class_shares(tmp_path):
    train = load_fer2013(make_fer_folder(tmp_path / "fer", per_class=10))["train"]
    kept, held_out = stratified_split(train, 0.2, seed=3)
    assert len(kept) + len(held_out) == len(train)
    assert held_out.class_counts().tolist() == [2] * 7
    assert not set(kept.names) & set(held_out.names)
    assert stratified_split(train, 0.2, seed=3)[1].names == held_out.names


def test_real_fer2013_has_the_documented_class_counts(fer2013):
    splits = load_fer2013(fer2013)
    assert splits["train"].class_counts().tolist() == [3995, 436, 4097, 7215, 4965, 4830, 3171]
    assert len(splits["test"]) == 3589


def test_has_copy_in_finds_faces_with_exactly_the_same_pixels():
    rng = np.random.default_rng(0)
    others = FaceSet(np.stack([synthetic_face(label, rng) for label in range(4)]), np.arange(4), list("abcd"))
    changed = others.images[2].copy()
    changed[10, 10] ^= 1  # one pixel off: not a copy
    faces = FaceSet(np.stack([others.images[1], changed, synthetic_face(5, rng), others.images[3]]),
                    np.array([1, 2, 5, 0]), list("wxyz"))
    assert has_copy_in(faces, others).tolist() == [True, False, False, True]  # the label plays no part
    assert has_copy_in(faces, others.subset(np.array([], dtype=int))).tolist() == [False] * 4


def test_real_fer2013_validation_holds_copies_of_training_faces(fer2013):
    """The documented figures: 27,473 distinct images among train/'s 28,709; 205 of the 2,872 validation faces have
    an exact copy among the training faces."""
    train = load_fer2013(fer2013)["train"]
    assert len({image.tobytes() for image in train.images}) == 27473
    training, validation = stratified_split(train, 0.1, seed=42)
    assert len(validation) == 2872 and has_copy_in(validation, training).sum() == 205


@pytest.mark.parametrize("name", ["fer.npz", "fer.npz.xz"])
def test_packed_file_loads_the_same_faces_as_the_folder(tmp_path, name):
    from models.data import main as pack

    folder = make_fer_folder(tmp_path / "fer", per_class=3)
    assert pack([str(folder), str(tmp_path / name), "--splits", "train"]) == 0
    original, packed = load_fer2013(folder), load_fer2013(tmp_path / name)
    assert set(packed) == {"train"}
    np.testing.assert_array_equal(packed["train"].images, original["train"].images)
    np.testing.assert_array_equal(packed["train"].labels, original["train"].labels)
    assert packed["train"].names == original["train"].names


def test_damaged_packed_file_and_unknown_split_are_clear_errors(tmp_path, capsys):
    from models.data import main as pack

    damaged = tmp_path / "fer.npz.xz"
    damaged.write_bytes(b"not lzma")
    with pytest.raises(DatasetError, match="not a packed FER2013 file"):
        load_fer2013(damaged)
    folder = make_fer_folder(tmp_path / "whole", per_class=1)
    assert pack([str(folder), str(tmp_path / "whole.npz")]) == 0
    cut = tmp_path / "cut.npz"  # cut short: a zip without its directory (it was a BadZipFile traceback)
    cut.write_bytes((tmp_path / "whole.npz").read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"cut\.npz: not a packed FER2013 file \(File is not a zip file\)"):
        load_fer2013(cut)
    folder = make_fer_folder(tmp_path / "fer", per_class=1)
    assert pack([str(tmp_path / "missing"), str(tmp_path / "new" / "out.npz")]) == 2
    assert capsys.readouterr().err == f"error: dataset not found: {tmp_path / 'missing'}\n"
    assert not (tmp_path / "new").exists()  # no folder made for a file that cannot be written
    assert pack([str(folder), str(tmp_path / "out.npz"), "--splits", "validation"]) == 2
    assert "no split 'validation'" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()
    assert pack([str(folder), str(tmp_path / "fer.npz.xz" / "out.npz")]) == 2  # a file where a folder must be
    assert "cannot write it" in capsys.readouterr().err
    assert pack([str(folder), str(tmp_path / "out.txt")]) == 2  # at once, not after the loading
    assert capsys.readouterr().err == f"error: {tmp_path / 'out.txt'}: a packed file is named .npz or .npz.xz\n"
    assert pack([str(folder), str(tmp_path / "fer")]) == 2
    assert damaged.read_bytes() == b"not lzma"


def test_pack_makes_the_folder_it_writes_into(tmp_path):
    from models.data import main as pack

    folder = make_fer_folder(tmp_path / "fer", per_class=1)
    assert pack([str(folder), str(tmp_path / ".fer" / "fer2013_train.npz.xz"), "--splits", "train"]) == 0
    assert set(load_fer2013(tmp_path / ".fer" / "fer2013_train.npz.xz")) == {"train"}


def test_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_loads(tmp_path):
    face = " ".join(["7"] * 2304)
    (tmp_path / "bom.csv").write_text(f"emotion,pixels,Usage\n3,{face},Training\n", encoding="utf-8-sig")
    assert load_fer2013(tmp_path / "bom.csv")["train"].labels.tolist() == [EMOTIONS.index("happy")]


@pytest.mark.parametrize("content, message", [
    (b"emotion,pixels,Usage\n3," + b"7 " * 2304 + b",Training\n3,1 2 3", "fer.csv:3: the row is cut short"),
    (b"PK\x03\x04\x9d\xff\x00binary", "fer.csv: not a text CSV file"),
], ids=["cut short", "binary"])
def test_csv_cut_short_or_not_text_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "fer.csv").write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        load_fer2013(tmp_path / "fer.csv")


def test_hidden_files_and_folders_in_the_dataset_are_passed_over(tmp_path):
    """What Jupyter (.ipynb_checkpoints) and macOS (._ files) leave among the images."""
    root = make_fer_folder(tmp_path / "fer", per_class=1)
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "test" / "sad" / "._PublicTest_5000.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    splits = load_fer2013(root)
    assert len(splits["train"]) == len(splits["test"]) == 7


def test_an_image_that_cannot_be_opened_is_one_clear_error_and_nothing_else(tmp_path, capfd):
    """A dangling link among the images: the reason, without OpenCV's own warning on stderr."""
    root = make_fer_folder(tmp_path / "fer", per_class=1)
    (root / "train" / "sad" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    capfd.readouterr()
    with pytest.raises(DatasetError, match=r"gone.jpg: cannot read it \(No such file or directory\)"):
        load_fer2013(root)
    assert capfd.readouterr().err == ""


def test_pack_checks_that_it_can_write_before_loading(tmp_path, monkeypatch, capsys):
    import models.data
    from models.data import main as pack

    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc/self, an existing folder that cannot be written in, even by root")
    monkeypatch.setattr(models.data, "load_fer2013", lambda source: pytest.fail("loaded before the check"))
    assert pack([str(tmp_path), "/proc/self/fer.npz"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: /proc/self/fer.npz: ") and error.count("\n") == 1


def test_pack_interrupted_exits_130_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import models.data
    from models.data import main as pack

    def interrupted(splits, file):
        raise KeyboardInterrupt

    monkeypatch.setattr(models.data, "save_npz", interrupted)
    folder = make_fer_folder(tmp_path / "fer", per_class=1)
    assert without_escaping_ctrl_c(pack, [str(folder), str(tmp_path / "fer.npz")]) == 130
    assert capsys.readouterr().err == f"\ninterrupted (Ctrl-C): {tmp_path / 'fer.npz'} not written\n"
    assert not (tmp_path / "fer.npz").exists()


def test_pack_whose_writing_fails_after_the_loading_exits_1(tmp_path, monkeypatch, capsys):
    """The folder the packed file goes to is removed while the data load: the checks passed and the work began,
    so the failure is 1 (2 is for bad input refused before any work), one line, nothing written."""
    import models.data
    from models.data import main as pack

    folder = make_fer_folder(tmp_path / "fer", per_class=1)
    target = tmp_path / "out"
    real_load = models.data.load_fer2013

    def load_then_lose_the_folder(source):
        splits = real_load(source)
        target.rmdir()
        return splits

    monkeypatch.setattr(models.data, "load_fer2013", load_then_lose_the_folder)
    assert pack([str(folder), str(target / "fer.npz")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {target / 'fer.npz'}: cannot write it") and error.count("\n") == 1
    assert not target.exists()
