"""Live distillation (function matching): the teachers inside the training step, on the very faces the student sees.

Cached distillation (`models.train --teacher`) gives each training face one target, the teachers' probabilities
on the clean face, while the student sees it rotated, shifted, zoomed, relit and blended with another face
(mixup): the target does not match the input. With `--live-teacher` the training model computes the teachers'
mean probabilities on each augmented, mixed batch as it goes and the student matches those (Beyer et al. 2022,
"Knowledge distillation: A good teacher is patient and consistent"). The training model then outputs the
student's 7 probabilities followed by the teachers' 7; the loss and accuracy below read the two halves.

Tempered distillation (`models.train --teacher FILE --distillation-temperature T`, Hinton et al. 2015): the cached
targets carry the teachers' probabilities softened to temperature T beside the label, and the loss matches the
student's probabilities at the same temperature to the first (weight teacher_weight, scaled by T squared) and its
plain probabilities to the label (the rest, label-smoothed).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from models.emotions import EMOTIONS


@keras.saving.register_keras_serializable(package="emotion_tracer")
class TeacherProbabilities(layers.Layer):
    """The mean probabilities of frozen teacher networks: each runs in inference mode (batch-norm statistics as
    trained, no dropout) and is never trained, whatever mode the training model runs in."""

    def __init__(self, teachers: list[keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.teachers = teachers
        for teacher in self.teachers:
            teacher.trainable = False

    def build(self, input_shape):
        self.built = True

    def call(self, faces):
        return ops.mean(ops.stack([teacher(faces, training=False) for teacher in self.teachers]), axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(EMOTIONS))

    def get_config(self):
        return {**super().get_config(),
                "teachers": [keras.saving.serialize_keras_object(teacher) for teacher in self.teachers]}

    @classmethod
    def from_config(cls, config):
        teachers = [keras.saving.deserialize_keras_object(teacher) for teacher in config.pop("teachers")]
        return cls(teachers, **config)


@keras.saving.register_keras_serializable(package="emotion_tracer")
class LiveDistillationLoss(keras.losses.Loss):
    """Cross-entropy of the student's half of the output against teacher_weight x the teachers' half (not
    differentiated) + (1 - teacher_weight) x the face's label (blended by mixup like the face), label-smoothed."""

    def __init__(self, teacher_weight: float, label_smoothing: float = 0.0, name: str = "live_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.teacher_weight, self.label_smoothing = teacher_weight, label_smoothing

    def call(self, y_true, y_pred):
        student, teacher = student_half(y_pred), ops.stop_gradient(y_pred[:, len(EMOTIONS):])
        target = self.teacher_weight * teacher + (1 - self.teacher_weight) * ops.cast(y_true, teacher.dtype)
        return keras.losses.categorical_crossentropy(target, student, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "teacher_weight": self.teacher_weight, "label_smoothing": self.label_smoothing}


def student_half(y_pred):
    """The student's probabilities: the first 7 columns of the training model's output."""
    return y_pred[:, : len(EMOTIONS)]


@keras.saving.register_keras_serializable(package="emotion_tracer")
def student_accuracy(y_true, y_pred):
    """Whether the student's top class is the face's (the label with the larger mixup share)."""
    return keras.metrics.categorical_accuracy(y_true, student_half(y_pred))


def student_and_teachers(augmented, student: keras.Model, teacher_paths: list[str], policy: str = "float32"):
    """The training model's output for live distillation: the student's and the teachers' probabilities on the
    same augmented faces, side by side (n, 14), in float32; the teachers compute in the training's dtype policy
    (bfloat16 on a GPU: half the cost of float32)."""
    from models.architecture import policy_copy

    teachers = [policy_copy(keras.models.load_model(path, compile=False), policy) for path in teacher_paths]
    teacher_output = TeacherProbabilities(teachers, dtype="float32", name="teachers")(augmented)
    return layers.Concatenate(dtype="float32", name="student_and_teachers")([student(augmented), teacher_output])


def with_temperature(probabilities, temperature: float):
    """softmax(log(p) / T), row by row, in the training graph: realtime.classifier.with_temperature for tensors."""
    return ops.softmax(ops.log(ops.maximum(probabilities, 1e-7)) / temperature, axis=-1)


@keras.saving.register_keras_serializable(package="emotion_tracer")
class TemperedDistillationLoss(keras.losses.Loss):
    """teacher_weight x T^2 x the cross-entropy of the student's probabilities at temperature T against the
    targets' first 7 columns (the teachers' at T), + (1 - teacher_weight) x the label-smoothed cross-entropy of
    its plain probabilities against the last 7 (the label); both halves blended by mixup like the face."""

    def __init__(self, teacher_weight: float, temperature: float, label_smoothing: float = 0.0,
                 name: str = "tempered_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.teacher_weight, self.temperature, self.label_smoothing = teacher_weight, temperature, label_smoothing

    def call(self, y_true, y_pred):
        teacher, label = ops.cast(y_true[:, : len(EMOTIONS)], y_pred.dtype), label_half(y_true)
        softened = with_temperature(y_pred, self.temperature)
        return (self.teacher_weight * self.temperature ** 2 * keras.losses.categorical_crossentropy(teacher, softened)
                + (1 - self.teacher_weight) * keras.losses.categorical_crossentropy(
                    ops.cast(label, y_pred.dtype), y_pred, label_smoothing=self.label_smoothing))

    def get_config(self):
        return {**super().get_config(), "teacher_weight": self.teacher_weight, "temperature": self.temperature,
                "label_smoothing": self.label_smoothing}


def label_half(y_true):
    """The face's (mixed) label: the last 7 columns of a tempered distillation target."""
    return y_true[:, len(EMOTIONS):]


@keras.saving.register_keras_serializable(package="emotion_tracer")
def label_accuracy(y_true, y_pred):
    """Whether the student's top class is the face's, read from a tempered distillation target's label half."""
    return keras.metrics.categorical_accuracy(label_half(y_true), y_pred)
