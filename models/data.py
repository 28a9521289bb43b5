"""Load FER2013 from the Kaggle folder layout or from the original fer2013.csv."""

from __future__ import annotations

import csv
import io
import lzma
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.emotions import CSV_LABEL_TO_INDEX, EMOTIONS, IMAGE_SIZE
from realtime.errors import OutputError, one_line
from realtime.io.files import check_output_path, write_atomically

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
CSV_USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "test", "PrivateTest": "private_test"}
DEFAULT_VAL_FRACTION = 0.1  # share of train/ that training holds out for validation (models.train --val-fraction)
DEFAULT_SPLIT_SEED = 42  # seed of that split (models.train --split-seed)


class DatasetError(ValueError):
    """The dataset path or file is missing or malformed."""


@dataclass
class FaceSet:
    """48x48 uint8 grayscale faces with integer labels indexing EMOTIONS."""

    images: np.ndarray  # (n, 48, 48) uint8
    labels: np.ndarray  # (n,) int64
    names: list[str]  # where each sample came from, e.g. "train/angry/Training_1.jpg"

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> FaceSet:
        """The samples at ``indices``, in that order."""
        return FaceSet(self.images[indices], self.labels[indices], [self.names[i] for i in indices])

    def class_counts(self) -> np.ndarray:
        """Samples per class, in EMOTIONS order."""
        return np.bincount(self.labels, minlength=len(EMOTIONS))


def load_fer2013(path: str | Path, folders: tuple[str, ...] = ("train", "test")) -> dict[str, FaceSet]:
    """Load FER2013 splits from a Kaggle-style folder, a fer2013.csv file or a packed .npz (`save_npz`).

    Returns a dict with "train" and "test" (PublicTest) and, for the CSV, "private_test"; of a folder, only the
    ``folders`` named (training reads train/ alone, and needs no test/).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.is_dir():
        csv_in_folder = path / "fer2013.csv"
        if csv_in_folder.is_file() and not (path / "train").is_dir():
            return load_csv(csv_in_folder)
        return load_folder(path, folders)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if path.name.lower().endswith((".npz", ".npz.xz")):
        return load_npz(path)
    raise DatasetError(f"{path}: expected a folder with train/ and test/, a fer2013.csv or a packed .npz / .npz.xz file")


def load_folder(root: Path, folders: tuple[str, ...] = ("train", "test")) -> dict[str, FaceSet]:
    """Load train/<class>/*.jpg and test/<class>/*.jpg (the ``folders`` named); hidden files and folders
    (.ipynb_checkpoints, macOS's ._* copies of resource forks) are passed over, as are files that are not images."""
    splits = {}
    for split in folders:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DatasetError(f"{root}: no {split}/ folder (expected {split}/<class>/*.jpg)")
        unknown = sorted(p.name for p in split_dir.iterdir()
                         if p.is_dir() and p.name not in EMOTIONS and not p.name.startswith("."))
        if unknown:
            raise DatasetError(f"{split_dir}: unknown class folders {unknown}; expected {list(EMOTIONS)}")
        images, labels, names = [], [], []
        for label, emotion in enumerate(EMOTIONS):
            class_dir = split_dir / emotion
            if not class_dir.is_dir():
                continue
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES or file.name.startswith("."):  # macOS's ._ files
                    continue
                images.append(_read_face(file))
                labels.append(label)
                names.append(f"{split}/{emotion}/{file.name}")
        if not images:
            raise DatasetError(f"{split_dir}: no images found in any class folder")
        splits[split] = FaceSet(np.stack(images), np.asarray(labels, dtype=np.int64), names)
    return splits


def _read_face(file: Path) -> np.ndarray:
    try:  # read here, not by cv2.imread, which prints a warning of its own for a file it cannot open
        data = np.fromfile(file, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f"{file}: cannot read it ({one_line(error)})") from None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise DatasetError(f"{file}: not a readable image")
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return image


def load_csv(file: Path) -> dict[str, FaceSet]:
    """Load the original fer2013.csv (columns emotion, pixels, Usage)."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:  # -sig: as spreadsheets save it, with a BOM
            return _read_csv_rows(file, csv.DictReader(handle))
    except UnicodeDecodeError:
        raise DatasetError(f"{file}: not a text CSV file (expected columns emotion, pixels, Usage)") from None


def _read_csv_rows(file: Path, reader: csv.DictReader) -> dict[str, FaceSet]:
    """The splits in the rows of an open fer2013.csv."""
    rows: dict[str, tuple[list, list, list]] = {split: ([], [], []) for split in CSV_USAGE_TO_SPLIT.values()}
    missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
    if missing:
        raise DatasetError(f"{file}: missing columns {sorted(missing)}; expected emotion, pixels, Usage")
    for line_number, row in enumerate(reader, start=2):
        where = f"{file}:{line_number}"
        if None in (row["emotion"], row["pixels"], row["Usage"]):
            raise DatasetError(f"{where}: the row is cut short; expected emotion, pixels, Usage")
        split = CSV_USAGE_TO_SPLIT.get(row["Usage"])
        if split is None:
            raise DatasetError(f"{where}: unknown Usage {row['Usage']!r}")
        try:
            label = CSV_LABEL_TO_INDEX[int(row["emotion"])]
            pixels = np.array(row["pixels"].split(), dtype=np.int64)
        except (KeyError, ValueError):
            raise DatasetError(f"{where}: emotion must be 0-6 and pixels space-separated integers") from None
        if pixels.size != IMAGE_SIZE * IMAGE_SIZE or pixels.min() < 0 or pixels.max() > 255:
            raise DatasetError(f"{where}: expected {IMAGE_SIZE * IMAGE_SIZE} pixel values in 0-255")
        images, labels, names = rows[split]
        images.append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
        labels.append(label)
        names.append(f"{file.name}:{line_number}")
    splits = {}
    for split, (images, labels, names) in rows.items():
        if images:
            splits[split] = FaceSet(np.stack(images), np.asarray(labels, dtype=np.int64), names)
    if "train" not in splits:
        raise DatasetError(f"{file}: no rows with Usage 'Training'")
    return splits


def save_npz(splits: dict[str, FaceSet], file: Path) -> None:
    """Pack loaded splits into one .npz of decoded pixels (loading it gives the same faces); a name
    ending in .npz.xz is LZMA-compressed, smaller than the .npz's own compression.
    Written through a partial file, so an interrupted pack leaves nothing behind."""
    arrays = {}
    for split, faces in splits.items():
        arrays.update({f"{split}_images": faces.images, f"{split}_labels": faces.labels,
                       f"{split}_names": np.asarray(faces.names)})
    packed = io.BytesIO()
    if file.name.endswith(".xz"):
        np.savez(packed, **arrays)
        write_atomically(file, lzma.compress(packed.getvalue(), preset=9))
    else:
        np.savez_compressed(packed, **arrays)
        write_atomically(file, packed.getvalue())


def load_npz(file: Path) -> dict[str, FaceSet]:
    """Load the splits `save_npz` packed."""
    try:
        source = io.BytesIO(lzma.decompress(file.read_bytes())) if file.name.endswith(".xz") else file
        with np.load(source) as packed:
            splits = {key.removesuffix("_images"): FaceSet(packed[key], packed[key.replace("_images", "_labels")],
                                                           packed[key.replace("_images", "_names")].tolist())
                      for key in packed.files if key.endswith("_images")}
    except (OSError, ValueError, KeyError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{file}: not a packed FER2013 file ({error})") from None
    if "train" not in splits:
        raise DatasetError(f"{file}: no train split")
    return splits


def stratified_split(faces: FaceSet, fraction: float, seed: int) -> tuple[FaceSet, FaceSet]:
    """Split off ``fraction`` of every class (seeded) as a validation set."""
    held_out_mask = held_out(faces, fraction, seed)
    return faces.subset(np.flatnonzero(~held_out_mask)), faces.subset(np.flatnonzero(held_out_mask))


def held_out(faces: FaceSet, fraction: float, seed: int) -> np.ndarray:
    """Per face: whether ``stratified_split(faces, fraction, seed)`` puts it in the validation set."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(EMOTIONS)):
        members = np.flatnonzero(faces.labels == label)
        rng.shuffle(members)
        chosen.extend(members[: int(round(len(members) * fraction))])
    mask = np.zeros(len(faces), dtype=bool)
    mask[chosen] = True
    return mask


def has_copy_in(faces: FaceSet, others: FaceSet) -> np.ndarray:
    """Per face of ``faces``: whether ``others`` holds a face with exactly the same pixels.

    FER2013's train/ holds some images more than once (28,709 files, 27,473 distinct images), so a split of it
    puts copies of some training faces into validation, where a model that remembers them scores more than on
    faces it has never seen.
    """
    seen = {image.tobytes() for image in others.images}
    return np.fromiter((image.tobytes() in seen for image in faces.images), dtype=bool, count=len(faces))


PACK_EXIT_CODES = """exit codes:
  0    written
  1    the writing failed (e.g. disk full): nothing written
  2    bad input or options (a source that is not FER2013, a split it lacks, a file name or folder that cannot
       be written), refused before anything is written
  130  interrupted by Ctrl-C: nothing written"""


def main(argv: list[str] | None = None) -> int:
    """Pack a FER2013 folder or CSV into one .npz: quicker to load, and one file to carry to a training machine."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.data", description=main.__doc__, epilog=PACK_EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("packed", help="the .npz (or LZMA-compressed .npz.xz) to write")
    parser.add_argument("--splits", nargs="+", help="pack only these splits (e.g. train)")
    args = parser.parse_args(argv)
    try:
        return _pack(args.source, Path(args.packed), args.splits)
    except KeyboardInterrupt:
        print(f"\ninterrupted (Ctrl-C): {args.packed} not written", file=sys.stderr)
        return 130


def _pack(source: str, packed: Path, chosen: list[str] | None) -> int:
    """``main``'s work: the packed file's name and folder checked before the loading, then the splits
    loaded and written; 2 and an error line for bad input, 1 and an error line where the writing fails."""
    if not packed.name.endswith((".npz", ".npz.xz")):  # what --data takes
        print(f"error: {packed}: a packed file is named .npz or .npz.xz", file=sys.stderr)
        return 2
    try:
        if not Path(source).exists():  # before any folder is made for the packed file
            raise DatasetError(f"dataset not found: {source}")
        try:
            packed.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{packed}: cannot write it ({one_line(error)})") from None
        check_output_path(packed, (".npz", ".xz"))  # a folder where the file goes, a folder not writable
        splits = load_fer2013(source)
    except (OutputError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    unknown = sorted(set(chosen or []) - set(splits))
    if unknown:
        print(f"error: {source} has no split {unknown[0]!r}; it has {sorted(splits)}", file=sys.stderr)
        return 2
    splits = {name: faces for name, faces in splits.items() if not chosen or name in chosen}
    try:
        save_npz(splits, packed)
    except OutputError as error:  # a full disk, a folder gone meanwhile: the checks passed, the work failed
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{packed}: " + ", ".join(f"{split} {len(faces)}" for split, faces in splits.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
