"""Train the emotion CNN on FER2013.

    python -m models.train --data ../shared/datasets/fer2013 --output-dir runs/emotion_cnn

Holds out a stratified validation split of train/ for model selection (test/ is never looked at),
logs one line per epoch, checkpoints every epoch and resumes from the checkpoint when rerun with
the same --output-dir. The best epoch by validation accuracy is saved as a float32 inference model
in <output-dir>/best.keras, ready for `python -m models.evaluate` and `python -m export`; when training
ends, the last epoch's weights are saved the same way in <output-dir>/final.keras (for
`python -m models.recalibrate`: the end of a cosine schedule often scores best with clean statistics).
With --swa-start-epoch the running average of the weights of every epoch from then on (stochastic
weight averaging, usually with --lr-schedule constant) competes for best.keras as well. With --time-limit
a run stops early, between epochs, to end within that many seconds; rerunning the command resumes it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from models.data import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_VAL_FRACTION,
    DatasetError,
    FaceSet,
    load_fer2013,
    stratified_split,
)
from models.emotions import EMOTIONS, IMAGE_SIZE, model_inputs
from models.ensemble import member_probabilities
from models.predictor import load_keras_model, load_predictor, predict_with_flip
from realtime.classifier import with_temperature
from realtime.errors import ModelError, one_line
from realtime.io.files import write_atomically

CHECKPOINT_NAME = "checkpoint.keras"
NEXT_CHECKPOINT_NAME = "checkpoint.next.keras"  # an epoch's checkpoint until its state is saved (save_checkpoint)
BEST_NAME = "best.keras"
FINAL_NAME = "final.keras"
STATE_NAME = "state.json"
CONFIG_NAME = "config.json"
HISTORY_NAME = "history.csv"
AVERAGE_NAME = "swa_average.npz"
TEACHER_TARGETS_NAME = "teacher_targets.npz"
# settings that runs saved before they existed had at their default
SETTINGS_ADDED_SINCE = {"separable_from": 0, "random_erasing": 0.0, "architecture": "vgg", "live_teacher": False,
                        "distillation_temperature": 1.0, "sam_radius": 0.0}
# settings of one invocation, not of the run: a resumed run may change them
INVOCATION_SETTINGS = ("time_limit", "output_dir")  # where the run is, not what it is
PATH_SETTINGS = ("data", "init_weights", "teacher")  # compared as the files they name, however spelled
# random erasing (Zhong et al. 2017): a rectangle of 2-25% of the face, aspect ratio 0.3-3.3, filled with noise
ERASED_AREA = (0.02, 0.25)
ERASED_ASPECT = (0.3, 1 / 0.3)
ERASING_STREAM = 1  # tells the erasing generator's seed apart from mixup's
RECALIBRATION_FACES = 8192


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 folder (train/, test/) or fer2013.csv")
    parser.add_argument("--output-dir", default="runs/emotion_cnn", help="checkpoints, logs and best.keras go here")
    parser.add_argument("--width", type=int, nargs="+", default=[32], metavar="FILTERS",
                        help="filters per block: one number doubles per block (32: 32 64 128 256), or four numbers "
                             "(e.g. 32 80 160 320)")
    parser.add_argument("--architecture", choices=("vgg", "residual"), default="vgg",
                        help="vgg: four blocks of two convolutions and a dense layer (the shipped kind); residual: "
                             "ResNet-18's layout for 48x48 faces with global average pooling (teachers that err "
                             "differently; 2.7 times the multiply-adds at width 64)")
    parser.add_argument("--separable-from", type=int, default=0, choices=(0, 2, 3, 4), metavar="BLOCK",
                        help="build blocks BLOCK-4 of depthwise-separable convolutions (2, 3 or 4; default 0: none)")
    parser.add_argument("--epochs", type=int, default=56)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate (cosine decay after warm-up)")
    parser.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                        help="after warm-up: cosine decay to 1%% of the peak, or constant (for weight averaging)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decoupled weight decay")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--class-weight-power", type=float, default=0.5,
                        help="weight class c by (N / (K * n_c)) ** power; 0 turns class weighting off")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                        help="share of train/ held out for validation")
    parser.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto",
                        help="auto: mixed_bfloat16 on a GPU or a CPU with bfloat16 instructions (AMX, AVX512-BF16), "
                             "where it is much faster; float32 elsewhere, where bfloat16 is emulated and many times "
                             "slower")
    parser.add_argument("--max-train-samples", type=int, default=0, help="use only this many training faces (quick trials)")
    parser.add_argument("--init-weights", help="start from this trained inference model (.keras) of the same width, "
                                               "e.g. for a second, warm-restarted cosine cycle")
    parser.add_argument("--swa-start-epoch", type=int, default=0,
                        help="from this epoch on, average the weights of every epoch (stochastic weight averaging); "
                             "the average, with batch-norm statistics recomputed, competes for best.keras on "
                             "validation accuracy; 0 turns averaging off")
    parser.add_argument("--teacher", nargs="+", metavar="MODEL",
                        help="distil from these trained models (.keras or .onnx) or probability files of "
                             "`python -m models.ensemble` (.npz): every training face's target becomes a blend of "
                             "its label and the teachers' mean mirror-averaged probabilities (computed once, "
                             "cached in the output folder)")
    parser.add_argument("--teacher-weight", type=float, default=0.5, help="share of the teacher in the target")
    parser.add_argument("--live-teacher", action="store_true",
                        help="compute the teachers' mean probabilities in every training step, on the augmented and "
                             "mixed faces the student sees (function matching), instead of once on clean faces; "
                             "the teachers must be .keras models (models/distillation.py)")
    parser.add_argument("--distillation-temperature", type=float, default=1.0, metavar="T",
                        help="with cached teachers (--teacher without --live-teacher): match the student's "
                             "probabilities at temperature T to the teachers' at T, the loss scaled by T squared, "
                             "and its plain probabilities to the label (models/distillation.py); 1: one target "
                             "blending the two")
    parser.add_argument("--mixup", type=float, default=0.0,
                        help="mixup: blend each face and its target with another face of the batch, with a share "
                             "drawn from Beta(a, a) for this a; 0 turns mixup off")
    parser.add_argument("--random-erasing", type=float, default=0.0, metavar="P",
                        help="with probability P, fill a random rectangle (2-25%% of the face) of each training face "
                             "with noise; 0 turns it off")
    parser.add_argument("--sam-radius", type=float, default=0.0, metavar="RHO",
                        help="sharpness-aware steps (models/sharpness.py; twice the cost; TensorFlow backend): the "
                             "gradient taken at the weights moved RHO up the gradient; 0 turns them off")
    parser.add_argument("--seed", type=int, default=42, help="seeds initialisation, shuffling and augmentation")
    parser.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED,
                        help="picks the validation split; keep it across runs that continue one another "
                             "(--init-weights), so validation faces are never trained on")
    parser.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                        help="stop after the epoch past which one more would end later than SECONDS after the start "
                             "(final.keras then holds that epoch's weights; rerunning the command resumes the run); "
                             "0: no limit")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if not 0 < args.val_fraction < 1:
        parser.error("--val-fraction must be between 0 and 1 (validation faces are what picks the model)")
    if args.time_limit < 0:
        parser.error("--time-limit cannot be negative (0: no limit)")
    if not 0 <= args.random_erasing <= 1:
        parser.error("--random-erasing is a probability: 0-1")
    if args.live_teacher and not (args.teacher and all(Path(teacher).suffix == ".keras" for teacher in args.teacher)):
        parser.error("--live-teacher runs the teachers inside the training step: give them as .keras models (--teacher)")
    if args.distillation_temperature <= 0:
        parser.error("--distillation-temperature must be positive")
    if args.distillation_temperature != 1 and (not args.teacher or args.live_teacher):
        parser.error("--distillation-temperature needs cached teachers: --teacher without --live-teacher")
    if args.sam_radius < 0:
        parser.error("--sam-radius cannot be negative (0: off)")
    if args.sam_radius and args.live_teacher:
        parser.error("--sam-radius and --live-teacher cannot be combined")
    if args.architecture != "vgg" and args.separable_from:  # models.architecture.check_architecture's rule
        parser.error("--separable-from builds vgg blocks only")
    if len(args.width) not in (1, 4) or min(args.width) < 1:  # models.architecture.block_widths' rule; it imports keras
        parser.error("--width takes one number (doubling per block) or four, all positive")
    args.width = args.width[0] if len(args.width) == 1 else args.width  # one number as before, so old runs resume
    return args


def class_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """Per-class loss weights (N / (K n_c)) ** power, scaled so the average training sample weighs 1."""
    counts = np.maximum(counts, 1).astype(np.float64)
    weights = (counts.sum() / (len(counts) * counts)) ** power
    return (weights * counts.sum() / (weights * counts).sum()).astype(np.float32)


def label_targets(faces: FaceSet) -> np.ndarray:
    """One-hot targets (n, 7) for the faces' labels."""
    return np.eye(len(EMOTIONS), dtype=np.float32)[faces.labels]


def teacher_targets(probabilities: np.ndarray, faces: FaceSet, teacher_weight: float,
                    temperature: float = 1.0) -> np.ndarray:
    """Targets (n, 7) blending each face's one-hot label with the teachers' probabilities for it; at a temperature
    other than 1, (n, 14): the teachers' probabilities at that temperature, then the one-hot label."""
    if temperature != 1:
        return np.hstack([with_temperature(probabilities, temperature), label_targets(faces)]).astype(np.float32)
    return (teacher_weight * probabilities + (1 - teacher_weight) * label_targets(faces)).astype(np.float32)


def teachers_probabilities(teachers: list[str], all_train: FaceSet, kept: np.ndarray) -> np.ndarray:
    """The teachers' mean probabilities for the training faces all_train[kept], each teacher's averaged over
    the face and its mirror image (the augmentation flips, so the target should not depend on the side).
    A teacher is a model or a probability file of `python -m models.ensemble`, read instead of computed."""
    train = all_train.subset(kept)
    return np.mean([member_probabilities(teacher, "train", all_train)[kept] if Path(teacher).suffix == ".npz"
                    else predict_with_flip(load_predictor(teacher), train.images) for teacher in teachers], axis=0)


def make_dataset(faces: FaceSet, batch_size: int, weights: np.ndarray | None = None, shuffle_seed: int = 0,
                 epochs: range = range(0, 1), targets: np.ndarray | None = None, mixup: float = 0.0,
                 random_erasing: float = 0.0):
    """Batches (images in [0, 1], targets[, sample weights]) of the given epochs, one epoch after another.

    Plain NumPy, so training runs on any Keras backend (TensorFlow here, JAX or PyTorch on a GPU machine).
    Targets are one-hot labels unless given (e.g. blended with a teacher's probabilities). Each epoch
    visits the faces in an order seeded by (shuffle_seed, epoch), so a resumed run sees the order an
    uninterrupted one would. With `mixup`, every face, target and weight is blended with the batch's
    face in the mirrored position, by a share from Beta(mixup, mixup) seeded by (shuffle_seed, epoch, batch).
    With `random_erasing`, each face first has a rectangle filled with noise with that probability
    (`erase_rectangles`), drawn from a generator of its own, so that the order and mixup stay as without it.
    """
    targets = label_targets(faces) if targets is None else targets
    sample_weights = None if weights is None else weights[faces.labels]
    for epoch in epochs:
        order = np.random.default_rng([shuffle_seed, epoch]).permutation(len(faces))
        for batch, start in enumerate(range(0, len(faces), batch_size)):
            members = order[start:start + batch_size]
            tensors = [model_inputs(faces.images[members]), targets[members]]
            if random_erasing:
                tensors[0] = erase_rectangles(tensors[0], random_erasing,
                                              np.random.default_rng([shuffle_seed, epoch, batch, ERASING_STREAM]))
            if sample_weights is not None:
                tensors.append(sample_weights[members])
            if mixup:
                tensors = mix_with_mirrored_members(tensors, mixup, np.random.default_rng([shuffle_seed, epoch, batch]))
            yield tuple(tensors)


def erase_rectangles(images: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Images (n, h, w, 1) in [0, 1] where, with the given probability, each has one rectangle of uniform noise:
    ERASED_AREA of the image, aspect ratio (height / width) in ERASED_ASPECT, placed wholly inside it."""
    count, height, width = images.shape[:3]
    area = rng.uniform(*ERASED_AREA, size=count) * height * width
    aspect = np.exp(rng.uniform(*np.log(ERASED_ASPECT), size=count))
    rows = np.clip(np.round(np.sqrt(area * aspect)), 1, height).astype(int)
    columns = np.clip(np.round(np.sqrt(area / aspect)), 1, width).astype(int)
    top = (rng.random(count) * (height - rows + 1)).astype(int)
    left = (rng.random(count) * (width - columns + 1)).astype(int)
    erased = rng.random(count) < probability
    row_index, column_index = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    inside = ((row_index >= top[:, None, None]) & (row_index < (top + rows)[:, None, None])
              & (column_index >= left[:, None, None]) & (column_index < (left + columns)[:, None, None])
              & erased[:, None, None])
    noise = rng.random(images.shape, dtype=np.float32)
    return np.where(inside[..., None], noise, images).astype(np.float32)


def mix_with_mirrored_members(tensors: list[np.ndarray], mixup: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Blend every row of each tensor with the row in the mirrored batch position (mixup)."""
    share = rng.beta(mixup, mixup, size=len(tensors[0])).astype(np.float32)
    # keep the larger share on the face itself, so its own label stays the stronger one
    share = np.maximum(share, 1 - share)
    blended = []
    for tensor in tensors:
        tensor_share = share.reshape([-1] + [1] * (tensor.ndim - 1))
        blended.append((tensor_share * tensor + (1 - tensor_share) * tensor[::-1]).astype(np.float32))
    return blended


def compile_training_step(model) -> None:
    """Under JAX, compile the whole training step, augmentation included, into one XLA program.

    Keras marks its rotation, translation and zoom layers as not XLA-compilable, which holds for
    TensorFlow's kernels but not for JAX's, and then runs JAX op by op: on an H200 a width-64 epoch
    did not finish in a minute. (TensorFlow runs the step as a graph either way.)"""
    import keras

    if keras.backend.backend() != "jax":
        return
    for layer in model._flatten_layers():
        layer.supports_jit = True
    model.jit_compile = True


def compute_device() -> str:
    """Where the Keras backend computes: "gpu" when it sees one, else "cpu"."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if backend == "jax":
        import jax

        return jax.default_backend()
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def cpu_has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX or AVX512-BF16; read on Linux, else no)."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolved_precision(precision: str) -> str:
    """The Keras dtype policy for --precision: "auto" is mixed_bfloat16 where bfloat16 is fast, else float32."""
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if compute_device() == "gpu" or cpu_has_bfloat16() else "float32"


def continues_run(saved: dict, requested: dict) -> bool:
    """Whether the requested settings may resume the run saved with `saved` (no ``changed_settings``)."""
    return not changed_settings(saved, requested)


def changed_settings(saved: dict, requested: dict) -> list[str]:
    """The settings that keep the request from resuming the run saved with `saved`, as "name saved -> requested":
    all must be the same, except that a constant-learning-rate run may be given more epochs (its schedule does not
    depend on them). A setting added since the run was saved counts as its default there; INVOCATION_SETTINGS may
    differ, and PATH_SETTINGS are compared as the files they name."""
    constant_rate = requested.get("lr_schedule") == "constant"

    def comparable(settings: dict) -> dict:
        kept = {key: value for key, value in settings.items() if key not in INVOCATION_SETTINGS}
        for key in PATH_SETTINGS:
            if isinstance(kept.get(key), str):
                kept[key] = os.path.realpath(kept[key])
            elif isinstance(kept.get(key), list):
                kept[key] = [os.path.realpath(path) for path in kept[key]]
        if constant_rate:
            kept["epochs"] = None
        return kept

    saved, requested = comparable({**SETTINGS_ADDED_SINCE, **saved}), comparable(requested)
    return [f"{key.replace('_', '-')} {saved.get(key)!r} -> {requested.get(key)!r}"
            for key in sorted(set(saved) | set(requested)) if saved.get(key) != requested.get(key)]


def build_training_model(args: argparse.Namespace, steps_per_epoch: int):
    """Augmentation + classifier (with --live-teacher, the frozen teachers beside it on the same augmented faces:
    models.distillation), compiled with AdamW, warm-up + cosine decay (or constant) and label smoothing."""
    import keras

    from models.architecture import build_augmentation, build_network

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    policy = resolved_precision(args.precision)
    classifier = build_network(args.architecture, args.width, dtype_policy=policy, separable_from=args.separable_from)
    augmented = build_augmentation(args.seed)(inputs)
    if args.live_teacher:
        from models.distillation import LiveDistillationLoss, student_accuracy, student_and_teachers

        outputs = student_and_teachers(augmented, classifier, args.teacher, policy)
        loss = LiveDistillationLoss(args.teacher_weight, label_smoothing=args.label_smoothing)
        metric = keras.metrics.MeanMetricWrapper(student_accuracy, name="accuracy")
    elif args.distillation_temperature != 1:
        from models.distillation import TemperedDistillationLoss, label_accuracy

        outputs = classifier(augmented)
        loss = TemperedDistillationLoss(args.teacher_weight, args.distillation_temperature,
                                        label_smoothing=args.label_smoothing)
        metric = keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")
    else:
        outputs = classifier(augmented)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing)
        metric = "accuracy"
    if args.sam_radius:
        from models.sharpness import SharpnessAwareModel

        model = SharpnessAwareModel(inputs, outputs, name="training_model")
    else:
        model = keras.Model(inputs, outputs, name="training_model")
    warmup_steps = int(args.warmup_epochs * steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.learning_rate / 10,
        decay_steps=max(1, args.epochs * steps_per_epoch - warmup_steps),
        alpha=0.01 if args.lr_schedule == "cosine" else 1.0,
        warmup_target=args.learning_rate,
        warmup_steps=warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=args.weight_decay),
        loss=loss,
        metrics=[metric],
    )
    return model


def classifier_of(training_model):
    """The classifier sub-model inside the training model."""
    return next(layer for layer in training_model.layers if layer.name.startswith("emotion_cnn"))


class EpochAveraging:
    """Stochastic weight averaging during training: folds each epoch's weights into a running mean
    (saved beside the checkpoint, so it resumes), recomputes batch-norm statistics for the mean on
    training faces, and scores it on the validation split."""

    def __init__(self, start_epoch: int, path: Path, recalibration: FaceSet, validation: FaceSet):
        from models.averaging import WeightAverage

        self.start_epoch, self.path = start_epoch, path
        self.recalibration_images = model_inputs(recalibration.images)
        self.validation_images = model_inputs(validation.images)
        self.validation_labels = validation.labels
        self.average = WeightAverage.load(path)
        self.averaged = None  # the float32 net that holds the mean, built once so its compiled predict is reused

    def after_epoch(self, classifier, epoch: int):
        """(validation accuracy, float32 averaged model) once averaging has started, else None; the model is
        the same object every epoch, holding that epoch's mean."""
        from models.architecture import float32_copy
        from models.averaging import recalibrate_batch_norm

        if epoch < self.start_epoch:
            return None
        self.average.add(classifier.get_weights(), epoch)
        self.average.save(self.path)
        if self.averaged is None:
            self.averaged = float32_copy(classifier, self.average.weights)
        else:
            self.averaged.set_weights([weight.astype("float32") for weight in self.average.weights])
        recalibrate_batch_norm(self.averaged, self.recalibration_images)
        probabilities = self.averaged.predict(self.validation_images, batch_size=256, verbose=0)
        return float((probabilities.argmax(axis=1) == self.validation_labels).mean()), self.averaged


def restore_dtype_policies(model, args: argparse.Namespace) -> None:
    """Give the classifier's layers of a checkpoint loaded to resume the dtype policies they were built with: Keras
    loads a SpatialDropout2D of a mixed_bfloat16 net as float32, and the resumed run drifted from the run it
    continues (exact with float32)."""
    from models.architecture import build_network

    built = build_network(args.architecture, args.width, dtype_policy=resolved_precision(args.precision),
                          separable_from=args.separable_from)
    for loaded, as_built in zip(classifier_of(model).layers, built.layers):
        if loaded.dtype_policy.name != as_built.dtype_policy.name:
            loaded.dtype_policy = as_built.dtype_policy


def random_states(model) -> list[list[int]]:
    """States of the model's random seed generators (augmentation, dropout), in layer order;
    checkpoints do not keep them."""
    import keras

    return [[int(v) for v in keras.ops.convert_to_numpy(generator.state)] for generator in seed_generators(model)]


def restore_random_states(model, states: list[list[int]]) -> None:
    """Put the seed generators back where `random_states` found them."""
    generators = seed_generators(model)
    if len(generators) == len(states):
        for generator, state in zip(generators, states):
            generator.state.assign(np.array(state, dtype=generator.state.dtype))


def seed_generators(model) -> list:
    """The model's keras.random.SeedGenerator objects, in layer order."""
    import keras

    return [value for layer in model._flatten_layers() for value in vars(layer).values()
            if isinstance(value, keras.random.SeedGenerator)]


def make_step_progress(steps_per_epoch: int, epochs: int):
    """A tqdm bar on stderr through each epoch's steps, shown only on a terminal (a log file gets the epoch lines)."""
    import keras
    from tqdm import tqdm

    class StepProgress(keras.callbacks.Callback):
        # a bar update needs nothing from the step: under JAX or PyTorch Keras may then run the next step
        # without waiting for this one's results (a callback with a batch hook otherwise makes every step wait)
        async_safe = True

        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                            disable=None)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()

    return StepProgress()


def make_time_limit(deadline: float):
    """A Keras callback that stops training after the epoch past which one more would end after ``deadline``
    (time.monotonic()); its ``stopped_after`` says after which epoch (or None). The next epoch is expected to take
    as long as the last one did, except after the first epoch of a run, whose first step also compiles the
    training step: there the rest of that epoch, scaled up to a whole one, is the estimate."""
    import keras

    class TimeLimit(keras.callbacks.Callback):
        stopped_after = None

        def on_train_begin(self, logs=None):
            self.epoch_started = time.monotonic()
            self.first_epoch, self.first_step_ended = True, None

        def on_train_batch_end(self, batch, logs=None):
            if self.first_step_ended is None:
                self.first_step_ended = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()  # an epoch lasts from the end of the one before: everything between counts
            steps = self.params["steps"]
            if self.first_epoch and steps and steps > 1:  # leave the compilation in its first step out
                next_epoch = (now - self.first_step_ended) * steps / (steps - 1)
            else:
                next_epoch = now - self.epoch_started
            if now + next_epoch > deadline and epoch + 1 < self.params["epochs"]:
                self.model.stop_training = True
                self.stopped_after = epoch + 1
            self.epoch_started, self.first_epoch = now, False

    return TimeLimit()


def make_epoch_callback(output_dir: Path, best_val_accuracy: float, averaging: EpochAveraging | None = None):
    """Per-epoch console line, checkpoint (with optimizer state) and best-model saving.

    With `averaging`, the weight average is scored after every epoch too (logged as
    swa_val_accuracy) and saved as best.keras whenever it beats every model so far.
    """
    import keras

    from models.architecture import float32_copy, save_model

    class EpochCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = best_val_accuracy
            self.started = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            learning_rate = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate if not callable(self.model.optimizer._learning_rate)
                else self.model.optimizer._learning_rate(self.model.optimizer.iterations)))
            val_accuracy = float(logs.get("val_accuracy", 0.0))
            best_note = ""
            if val_accuracy > self.best or not (output_dir / BEST_NAME).exists():  # the first epoch always counts
                self.best, best_note = val_accuracy, "  *best*"
                save_model(float32_copy(classifier_of(self.model)), output_dir / BEST_NAME)
            average_note = ""
            if averaging is not None:
                scored = averaging.after_epoch(classifier_of(self.model), epoch + 1)
                logs["swa_val_accuracy"] = scored[0] if scored else float("nan")
                if scored:
                    average_note = f"  swa of {averaging.average.count} val_acc {scored[0]:.4f}"
                    if scored[0] > self.best:
                        self.best, best_note = scored[0], "  *best: swa*"
                        save_model(scored[1], output_dir / BEST_NAME)
            save_checkpoint(self.model, output_dir, {"epochs_done": epoch + 1, "best_val_accuracy": self.best,
                                                     "random_states": random_states(self.model)})
            print(f"epoch {epoch + 1:3d}  loss {logs.get('loss', 0):.4f}  acc {logs.get('accuracy', 0):.4f}  "
                  f"val_loss {logs.get('val_loss', 0):.4f}  val_acc {val_accuracy:.4f}  lr {learning_rate:.2e}"
                  f"{average_note}  {time.monotonic() - self.started:.1f}s{best_note}", flush=True)

    return EpochCheckpoint()


def save_checkpoint(model, output_dir: Path, state: dict) -> None:
    """Save the training ``model`` and its ``state`` (epochs done...) so that a kill at any point leaves a pair
    that belongs together: the model goes to NEXT_CHECKPOINT_NAME, the state naming it is the commit, and
    only then does it become CHECKPOINT_NAME (a checkpoint saved before its state, killed between the two,
    had its epoch trained again on top of it)."""
    from models.architecture import save_model

    save_model(model, output_dir / NEXT_CHECKPOINT_NAME)
    write_atomically(output_dir / STATE_NAME, json.dumps({**state, "checkpoint": NEXT_CHECKPOINT_NAME}).encode())
    os.replace(output_dir / NEXT_CHECKPOINT_NAME, output_dir / CHECKPOINT_NAME)
    write_atomically(output_dir / STATE_NAME, json.dumps({**state, "checkpoint": CHECKPOINT_NAME}).encode())


def saved_checkpoint(output_dir: Path) -> tuple[Path, dict] | None:
    """The checkpoint to resume from and its state, or None when there is none. A ``save_checkpoint`` that was
    cut off is finished first; a next checkpoint whose state was never saved is dropped."""
    try:
        state = json.loads((output_dir / STATE_NAME).read_text())
    except FileNotFoundError:
        return None
    next_checkpoint, checkpoint = output_dir / NEXT_CHECKPOINT_NAME, output_dir / CHECKPOINT_NAME
    if state.get("checkpoint") == NEXT_CHECKPOINT_NAME:
        if next_checkpoint.exists():  # (else it had taken its final name already)
            os.replace(next_checkpoint, checkpoint)
        state["checkpoint"] = CHECKPOINT_NAME
        write_atomically(output_dir / STATE_NAME, json.dumps(state).encode())
    else:
        next_checkpoint.unlink(missing_ok=True)
    return (checkpoint, state) if checkpoint.exists() else None


def recorded_validation_split(model_path: Path) -> dict:
    """How the training run beside the model drew its validation split from train/: fraction and seed from
    its config.json (runs from before --split-seed split with --seed), else training's defaults."""
    config = model_path.parent / CONFIG_NAME
    if not config.is_file():
        return {"fraction": DEFAULT_VAL_FRACTION, "split_seed": DEFAULT_SPLIT_SEED,
                "from": f"training defaults (no {CONFIG_NAME} beside the model)"}
    settings = json.loads(config.read_text())
    return {"fraction": settings.get("val_fraction", DEFAULT_VAL_FRACTION),
            "split_seed": settings.get("split_seed", settings.get("seed", DEFAULT_SPLIT_SEED)), "from": CONFIG_NAME}


def split_as_recorded(model_path: Path, faces: FaceSet) -> tuple[FaceSet, FaceSet, dict]:
    """train/'s faces split into training and validation parts as the run beside the model split them, and how
    (recorded_validation_split)."""
    split = recorded_validation_split(model_path)
    return (*stratified_split(faces, split["fraction"], split["split_seed"]), split)


def checked_keras_model(option: str, path: str):
    """The .keras model an option names, or DatasetError saying which option and what is wrong with it."""
    try:
        return load_keras_model(path)
    except ModelError as error:
        raise DatasetError(f"{option} {error}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        return train(argv)
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): the last finished epoch is checkpointed; rerun the command to resume",
              file=sys.stderr)
        return 130


def train(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    try:
        if output_dir.exists() and not output_dir.is_dir():
            raise DatasetError(f"--output-dir {output_dir}: is a file, not a folder")
        resuming = saved_checkpoint(output_dir) is not None
        # what this run will read, checked before the data's minutes of loading
        start_from = None
        if args.init_weights and not resuming:
            start_from = checked_keras_model("--init-weights", args.init_weights)
        # a fresh run computes its teachers' targets anew: a file left by an earlier run that never finished an
        # epoch may hold other teachers', another weight's or other faces'
        cached_targets = resuming and not args.live_teacher and (output_dir / TEACHER_TARGETS_NAME).exists()
        for teacher in [] if cached_targets else args.teacher or []:
            if Path(teacher).suffix == ".keras":
                checked_keras_model("--teacher", teacher)
            elif not Path(teacher).is_file():
                raise DatasetError(f"--teacher {teacher}: no such file")
        splits = load_fer2013(args.data, folders=("train",))  # test/ is never looked at
        if missing := [emotion for emotion, count in zip(EMOTIONS, np.bincount(splits["train"].labels,
                                                                            minlength=len(EMOTIONS))) if not count]:
            raise DatasetError(f"{args.data}: no training faces of {', '.join(missing)} (a class folder under train/ "
                               f"that is missing or empty); the model learns all {len(EMOTIONS)} classes "
                               f"({', '.join(EMOTIONS)}) and needs faces of each")
        all_train, val = stratified_split(splits["train"], args.val_fraction, args.split_seed)
        if not len(val):
            raise DatasetError(f"--val-fraction {args.val_fraction:g} of {args.data}'s {len(splits['train'])} "
                               "training faces holds no validation face, and validation picks the model: give more "
                               "faces or a larger fraction")
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: --output-dir {output_dir}: cannot create it ({one_line(error)})", file=sys.stderr)
        return 2

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if args.sam_radius and keras.backend.backend() != "tensorflow":
        print(f"error: --sam-radius needs the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()})",
              file=sys.stderr)
        return 2
    keras.utils.set_random_seed(args.seed)
    kept = np.arange(len(all_train))
    if args.max_train_samples:
        kept = np.random.default_rng(args.seed).permutation(len(all_train))[: args.max_train_samples]
    train = all_train.subset(kept)
    weights = class_weights(train.class_counts(), args.class_weight_power)
    print(f"train {len(train)} faces, validation {len(val)}; class weights "
          + ", ".join(f"{name} {w:.2f}" for name, w in zip(EMOTIONS, weights)), flush=True)
    tempered = args.distillation_temperature != 1
    # a tempered run's loss reads the label from the targets' second half; validation faces have no teacher part
    val_data = (model_inputs(val.images), np.tile(label_targets(val), 2) if tempered else label_targets(val))
    steps_per_epoch = int(np.ceil(len(train) / args.batch_size))

    saved = saved_checkpoint(output_dir)
    if saved is not None:
        checkpoint, state = saved
        saved_config = json.loads((output_dir / CONFIG_NAME).read_text())
        changed = changed_settings(saved_config, vars(args))
        if changed:
            print(f"error: {output_dir} holds a run with different settings ({', '.join(changed)}); use another "
                  "--output-dir, or that run's settings to resume it", file=sys.stderr)
            return 2
        (output_dir / CONFIG_NAME).write_text(json.dumps(vars(args), indent=2))
        if args.live_teacher or tempered:
            import models.distillation  # noqa: F401  (registers the checkpoint's teachers layer, loss and metric)
        if args.sam_radius:
            import models.sharpness  # noqa: F401  (registers the checkpoint's training model)
        model = keras.models.load_model(checkpoint)
        restore_dtype_policies(model, args)
        # continue the augmentation and dropout draws of an uninterrupted run instead of replaying epoch 1's
        restore_random_states(model, state.get("random_states", []))
        print(f"resuming after epoch {state['epochs_done']} (best val_acc {state['best_val_accuracy']:.4f})", flush=True)
    else:
        state = {"epochs_done": 0, "best_val_accuracy": 0.0}
        (output_dir / AVERAGE_NAME).unlink(missing_ok=True)
        (output_dir / TEACHER_TARGETS_NAME).unlink(missing_ok=True)
        (output_dir / CONFIG_NAME).write_text(json.dumps(vars(args), indent=2))
        model = build_training_model(args, steps_per_epoch)
        if start_from is not None:
            try:
                classifier_of(model).set_weights(start_from.get_weights())
            except ValueError:
                width = " ".join(map(str, np.atleast_1d(args.width)))
                print(f"error: --init-weights {args.init_weights}: a network of another shape than this run's "
                      f"(--width {width}, --architecture {args.architecture})", file=sys.stderr)
                return 2
            print(f"starting from the weights of {args.init_weights}", flush=True)
        print(f"{classifier_of(model).count_params():,} parameters, {resolved_precision(args.precision)}", flush=True)
    if args.sam_radius:
        model.radius = args.sam_radius
        print(f"sharpness-aware steps: gradients taken at the weights moved {args.sam_radius:g} up the gradient",
              flush=True)
    compile_training_step(model)
    print(f"Keras on {keras.backend.backend()} ({compute_device()})"
          + (", training step compiled with XLA" if model.jit_compile else ""), flush=True)

    averaging = None
    if args.swa_start_epoch:
        recalibration = train.subset(np.random.default_rng(args.seed).permutation(len(train))[:RECALIBRATION_FACES])
        averaging = EpochAveraging(args.swa_start_epoch, output_dir / AVERAGE_NAME, recalibration, val)
    targets = None
    if args.live_teacher:
        print(f"distilling live from {', '.join(args.teacher)} (weight {args.teacher_weight}): the teachers' "
              "probabilities are computed in every step on the augmented faces the student sees", flush=True)
    elif args.teacher:
        targets_file = output_dir / TEACHER_TARGETS_NAME
        if targets_file.exists():
            with np.load(targets_file) as saved:
                targets = saved["targets"]
        else:
            try:
                probabilities = teachers_probabilities(args.teacher, all_train, kept)
            except (OSError, ValueError, ModelError) as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            targets = teacher_targets(probabilities, train, args.teacher_weight, args.distillation_temperature)
            packed = io.BytesIO()
            np.savez(packed, targets=targets)
            write_atomically(targets_file, packed.getvalue())  # an interrupted save leaves no broken file
        teacher_choice = (targets[:, : len(EMOTIONS)] if tempered
                          else targets - (1 - args.teacher_weight) * label_targets(train)).argmax(axis=1)
        print(f"distilling from {', '.join(args.teacher)} (weight {args.teacher_weight}"
              + (f", temperature {args.distillation_temperature:g}" if tempered else "") + "); the teacher agrees with "
              f"the labels on {(teacher_choice == train.labels).mean():.1%} of training faces", flush=True)
    if state["epochs_done"] < args.epochs:
        train_data = make_dataset(train, args.batch_size, weights, shuffle_seed=args.seed,
                                  epochs=range(state["epochs_done"], args.epochs), targets=targets, mixup=args.mixup,
                                  random_erasing=args.random_erasing)
        callbacks = [
            # first, so that the CSV logger sees the swa_val_accuracy it adds to the epoch's logs
            make_epoch_callback(output_dir, state["best_val_accuracy"], averaging),
            keras.callbacks.CSVLogger(str(output_dir / HISTORY_NAME), append=True),
            make_step_progress(steps_per_epoch, args.epochs),
        ]
        time_limit = make_time_limit(started + args.time_limit) if args.time_limit else None
        model.fit(
            train_data,
            steps_per_epoch=steps_per_epoch,
            validation_data=val_data,
            epochs=args.epochs,
            initial_epoch=state["epochs_done"],
            validation_batch_size=256,
            shuffle=False,  # the batches come in their own seeded order
            verbose=0,
            callbacks=callbacks + ([time_limit] if time_limit else []),
        )
        if time_limit and time_limit.stopped_after:
            print(f"stopped after epoch {time_limit.stopped_after} of {args.epochs}: another would end past the "
                  f"time limit ({args.time_limit:g} s); rerun the command to resume", flush=True)
        from models.architecture import float32_copy, save_model

        save_model(float32_copy(classifier_of(model)), output_dir / FINAL_NAME)
    best = json.loads((output_dir / STATE_NAME).read_text())["best_val_accuracy"]
    print(f"done: best validation accuracy {best:.4f}; inference model {output_dir / BEST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
