"""Sharpness-aware minimisation (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization"), for `models.train --sam-radius RHO`.

Each step takes the loss's gradient g at the weights w, moves the weights to w + RHO g / |g| (the steepest
point of a ball of radius RHO, to first order), takes the gradient there and lets the optimiser apply that
one at w. The net is pulled towards flat minima, where a small change of weights (or of faces) changes the loss
little. A step costs two forward and backward passes. Both passes see the same augmented faces and the same
dropout masks, so a run draws its augmentation and dropout exactly as the same run without SAM; the batch-norm
statistics keep the update of the first pass only.
"""

from __future__ import annotations

import keras

from models.architecture import AUGMENTATION_NAME


@keras.saving.register_keras_serializable(package="emotion_tracer")
class SharpnessAwareModel(keras.Model):
    """A functional training model (faces -> augmentation -> classifier) trained with sharpness-aware steps.

    ``radius`` is not saved with the model: `models.train` sets it from --sam-radius, after building or loading.
    TensorFlow backend only."""

    radius = 0.05

    def train_step(self, data):
        import tensorflow as tf

        from models.train import classifier_of, seed_generators

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        classifier = classifier_of(self)
        faces = self.get_layer(AUGMENTATION_NAME)(x, training=True)
        weights = self.trainable_weights
        generators = seed_generators(classifier)
        generator_states = [tf.identity(generator.state.value) for generator in generators]
        with tf.GradientTape() as tape:
            y_pred = classifier(faces, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        gradients = tape.gradient(loss, weights)
        scale = self.radius / (tf.linalg.global_norm(gradients) + 1e-12)
        ascent = [gradient * scale for gradient in gradients]
        statistics = [(variable, tf.identity(variable.value)) for layer in classifier._flatten_layers()
                      if isinstance(layer, keras.layers.BatchNormalization)
                      for variable in (layer.moving_mean, layer.moving_variance)]
        for weight, step in zip(weights, ascent):
            weight.assign_add(step)
        for generator, state in zip(generators, generator_states):
            generator.state.assign(state)  # the first pass's dropout masks again
        with tf.GradientTape() as tape:
            perturbed_loss = self._compute_loss(x=x, y=y, y_pred=classifier(faces, training=True),
                                                sample_weight=sample_weight, training=True)
        sharp_gradients = tape.gradient(perturbed_loss, weights)
        for weight, step in zip(weights, ascent):
            weight.assign_sub(step)
        for variable, value in statistics:
            variable.assign(value)
        self.optimizer.apply_gradients(zip(sharp_gradients, weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
