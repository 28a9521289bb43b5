"""Average the weights of several trained emotion CNNs of one architecture (a uniform "model soup").

    python -m models.soup --members runs/a/best.keras runs/b/best.keras --data ../shared/datasets/fer2013 \\
        --output-dir runs/soup

Networks fine-tuned from one starting point usually sit in one basin of the loss, so the mean of their
weights is a network of its own, often better than each (Wortsman et al., "Model soups", 2022), at the
cost of one. Averaging nets trained from different starting points gives noise: use it on runs that share
--init-weights. With --greedy it is a greedy soup (the same paper): the members in order of validation accuracy
(plain and with flip averaging added), each kept only if the soup with it scores no lower than without. Prints
each member's and the soup's validation accuracy (plain and with flip averaging,
on the split recorded beside the first member, as recalibrate reads it), with the soup's batch-norm
statistics averaged like every other weight and, with --recalibrate, measured anew on training faces
outside the validation split. Writes the soup (float32, recalibrated or not as asked) as best.keras in the
output folder, with a config.json like a training run's (the validation split it was judged on, its
members), so export, evaluate and recalibrate read the same split and export records the recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from models.emotions import model_inputs
from models.predictor import load_keras_model
from models.recalibrate import model_job_inputs, validation_accuracies
from models.train import BEST_NAME, CONFIG_NAME, RECALIBRATION_FACES, recorded_validation_split, split_as_recorded
from realtime.errors import ModelError
from realtime.io.files import write_atomically


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.soup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="+", required=True, help="two or more trained models (.keras)")
    parser.add_argument("--data", required=True, help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("--output-dir", required=True, help="folder to write the soup into (best.keras, config.json)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="measure the soup's batch-norm statistics on training faces instead of averaging them")
    parser.add_argument("--faces", type=int, default=RECALIBRATION_FACES,
                        help="training faces (outside the validation split) for --recalibrate")
    parser.add_argument("--greedy", action="store_true",
                        help="keep a member only if it does not lower the soup's validation accuracy (plain + flip)")
    return parser.parse_args(argv)


def mean_weights(models: list) -> list[np.ndarray]:
    """Element-wise mean of the models' weights; ValueError when their architectures differ."""
    configs = [[(layer.__class__.__name__, [tuple(w.shape) for w in layer.get_weights()]) for layer in model.layers]
               for model in models]
    if any(config != configs[0] for config in configs[1:]):
        raise ValueError("the members differ in architecture: only nets of one architecture can be averaged")
    member_weights = [model.get_weights() for model in models]
    return [np.mean([weights[i].astype(np.float64) for weights in member_weights], axis=0)
            for i in range(len(member_weights[0]))]


def greedy_soup(members: list[Path], models: list, member_accuracies: list[tuple[float, float]], validation):
    """The members (best first on validation, plain + flip) each kept if the soup with them scores no lower;
    returns the kept members, their models and the soup's validation accuracies."""
    from models.architecture import float32_copy

    order = sorted(range(len(models)), key=lambda i: -sum(member_accuracies[i]))
    kept, best = [order[0]], member_accuracies[order[0]]
    print(f"greedy: starting from {members[order[0]]}")
    for candidate in order[1:]:
        trial = [models[i] for i in kept + [candidate]]
        accuracies = validation_accuracies(float32_copy(trial[0], mean_weights(trial)), validation)
        keep = sum(accuracies) >= sum(best)
        print("greedy: {} {} ({:.2%}, with flip averaging {:.2%})".format(
            "kept" if keep else "left out", members[candidate], *accuracies))
        if keep:
            kept, best = kept + [candidate], accuracies
    return [members[i] for i in kept], [models[i] for i in kept], best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    members, output_dir = [Path(member) for member in args.members], Path(args.output_dir)
    output = output_dir / BEST_NAME
    try:
        if len(members) < 2:
            raise ValueError("give two or more --members")
        for member in members[1:]:
            if member.is_file() and member.suffix != ".keras":
                raise ValueError(f"{member}: not a .keras model (a soup averages the weights of Keras models, before "
                                 "export)")
            if not member.is_file():
                raise ValueError(f"{member}: no such .keras model")
        if output_dir.exists() and not output_dir.is_dir():
            raise ValueError(f"{output_dir}: not a folder")
        config = output_dir / CONFIG_NAME
        if config.is_file() and "soup_of" not in json.loads(config.read_text()):
            raise ValueError(f"{output_dir} holds a training run: give the soup a folder of its own")
        recorded = [recorded_validation_split(member) for member in members]
        keys = {(split["fraction"], split["split_seed"]) for split in recorded}
        if len(keys) > 1:
            raise ValueError("the members record different validation splits (" + "; ".join(
                f"{member}: {split['fraction']:g}, split seed {split['split_seed']}" for member, split in
                zip(members, recorded)) + "), so the soup would be judged on faces some members trained on")
        splits = model_job_inputs(members[0], None, args.faces, args.data)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.architecture import float32_copy, save_model
    from models.averaging import recalibrate_batch_norm

    training_part, validation, split = split_as_recorded(members[0], splits["train"])
    print(f"validation: {len(validation)} faces of train/ (fraction {split['fraction']}, split seed "
          f"{split['split_seed']}, from {split['from']})")
    try:
        models = [load_keras_model(member) for member in members]
        soup = float32_copy(models[0], mean_weights(models))
    except (ValueError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    member_accuracies = [validation_accuracies(model, validation) for model in models]
    for member, accuracies in zip(members, member_accuracies):
        print(f"{member}: validation accuracy {{:.2%}}, with flip averaging {{:.2%}}".format(*accuracies))
    if args.greedy:
        members, models, accuracies = greedy_soup(members, models, member_accuracies, validation)
        soup = float32_copy(models[0], mean_weights(models))
    else:
        accuracies = validation_accuracies(soup, validation)
    print("soup of {}: validation accuracy {:.2%}, with flip averaging {:.2%}".format(len(models), *accuracies))
    if args.recalibrate:
        chosen = np.random.default_rng(0).permutation(len(training_part))[: args.faces]
        recalibrate_batch_norm(soup, model_inputs(training_part.images[chosen]))
        accuracies = validation_accuracies(soup, validation)
        print("recalibrated: validation accuracy {:.2%}, with flip averaging {:.2%}".format(*accuracies))
    output_dir.mkdir(parents=True, exist_ok=True)
    save_model(soup, output)
    write_atomically(output_dir / CONFIG_NAME, json.dumps(
        {"soup_of": [str(member) for member in members], "greedy": args.greedy,
         "batch_norm": "recalibrated" if args.recalibrate else "averaged",
         "val_fraction": split["fraction"], "split_seed": split["split_seed"],
         "validation_accuracy": round(accuracies[0], 4), "validation_accuracy_flip_tta": round(accuracies[1], 4)},
        indent=2).encode())
    print(f"wrote {output} and {output_dir / CONFIG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
