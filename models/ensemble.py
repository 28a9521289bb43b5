"""Cache an ensemble's probabilities on the training and validation faces, for distillation.

    python -m models.ensemble --data ../shared/datasets/fer2013 --members runs/teacher_w48/final_recalibrated.keras \\
        models/emotion_cnn.keras --output runs/pair_probabilities.npz

Every member's probabilities are averaged over the face and its mirror image, then over the members. The file
holds `train` and `validation` arrays whose rows follow the split drawn with --val-fraction and --split-seed,
with a digest of those faces, so a reader can check that its faces are the same ones. A member may itself be
such a file (an ensemble cached elsewhere, e.g. on a GPU machine), counting as one member.
`python -m models.train --teacher FILE.npz` distils from the file as from one teacher, without loading models.
Prints each member's and the ensemble's validation accuracy (plain probabilities after mirror averaging), then in
brackets the accuracy on the validation faces without an exact copy among the training faces ("unseen") and on
those with one ("copies"; see models.data.has_copy_in).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

from models.data import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_VAL_FRACTION,
    DatasetError,
    FaceSet,
    has_copy_in,
    load_fer2013,
    stratified_split,
)
from models.predictor import load_predictor, predict_with_flip
from realtime.errors import ModelError, OutputError
from realtime.io.files import write_atomically

SPLITS = ("train", "validation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("--members", nargs="+", required=True, metavar="MODEL",
                        help="trained models (.keras or .onnx) or probability files written by this command")
    parser.add_argument("--output", required=True, help="probability file to write (.npz)")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION)
    parser.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED)
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        parser.error("--val-fraction must be between 0 and 1, as in training")
    return args


def faces_digest(faces: FaceSet) -> str:
    """SHA-256 of the faces' pixels and labels, in their order."""
    return hashlib.sha256(np.ascontiguousarray(faces.images).tobytes() + faces.labels.astype(np.int64).tobytes()).hexdigest()


def saved_probabilities(path: str | Path, split: str, faces: FaceSet) -> np.ndarray:
    """The probabilities (n, 7) a file written by this command holds for ``faces`` of ``split`` (train or
    validation); ValueError when the file does not hold those faces (another split, data or subset)."""
    with np.load(path) as saved:
        if split not in saved or f"{split}_digest" not in saved:
            raise ValueError(f"{path}: not a probability file of models.ensemble (no {split} faces)")
        probabilities, digest = saved[split], str(saved[f"{split}_digest"])
    if digest != faces_digest(faces):
        raise ValueError(f"{path}: its {split} faces are not these {len(faces)} (another split or data set)")
    return probabilities.astype(np.float32)


def member_probabilities(member: str | Path, split: str, faces: FaceSet) -> np.ndarray:
    """One member's mirror-averaged probabilities for the faces: from its file, or by running the model."""
    if Path(member).suffix == ".npz":
        return saved_probabilities(member, split, faces)
    return predict_with_flip(load_predictor(member), faces.images)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    missing = [member for member in args.members if not Path(member).is_file()]
    if missing or output.suffix != ".npz" or not output.parent.is_dir():
        reason = f"no such member {missing[0]}" if missing else f"{output}: output must be a .npz in an existing folder"
        print(f"error: {reason}", file=sys.stderr)
        return 2
    from models.train import CONFIG_NAME, recorded_validation_split  # (models.train imports this module)

    other_splits = [f"{member} (fraction {split['fraction']:g}, split seed {split['split_seed']})"
                    for member, split in ((member, recorded_validation_split(Path(member))) for member in args.members
                                          if Path(member).suffix == ".keras")
                    if split["from"] == CONFIG_NAME
                    and (split["fraction"], split["split_seed"]) != (args.val_fraction, args.split_seed)]
    if other_splits:
        print(f"error: trained with another validation split than --val-fraction {args.val_fraction:g} --split-seed "
              f"{args.split_seed} (these faces would include faces it trained on): {', '.join(other_splits)}",
              file=sys.stderr)
        return 2
    try:
        train = load_fer2013(args.data, folders=("train",))["train"]
        faces = dict(zip(SPLITS, stratified_split(train, args.val_fraction, args.split_seed)))
        each = {split: [member_probabilities(member, split, faces[split]) for member in args.members]
                for split in SPLITS}
    except (DatasetError, ValueError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    labels, unseen = faces["validation"].labels, ~has_copy_in(faces["validation"], faces["train"])

    def accuracies(probabilities: np.ndarray) -> str:
        right = probabilities.argmax(1) == labels
        parts = [f"{name} {right[which].mean():.4f}" for name, which in (("unseen", unseen), ("copies", ~unseen))
                 if which.any()]
        return f"{right.mean():.4f} ({', '.join(parts)})"

    for member, probabilities in zip(args.members, each["validation"]):
        print(f"{member}: validation {accuracies(probabilities)}")
    mean = {split: np.mean(each[split], axis=0).astype(np.float32) for split in SPLITS}
    packed = io.BytesIO()
    np.savez(packed, **mean, **{f"{split}_digest": faces_digest(faces[split]) for split in SPLITS},
             val_fraction=args.val_fraction, split_seed=args.split_seed)
    try:
        write_atomically(output, packed.getvalue())
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"ensemble of {len(args.members)}: validation {accuracies(mean['validation'])}, mirror-averaged -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
