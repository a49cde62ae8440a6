"""Batch-norm statistics that are right for the data, however short the run.

A BatchNormalization layer normalizes with the current batch's statistics in training and with
moving averages of them at inference. Keras' moving averages start at mean 0 / variance 1 and
forget with momentum 0.99: a window of ~100 steps. A run of a few dozen steps (a small dataset, a
few epochs) ends with averages still far from the data's, and the model that reached 0.85 in
training predicts one class at inference. Two measures:

- :func:`set_momentum` shortens the window to a third of an epoch when an epoch has fewer than
  ~300 steps, so the per-epoch validation numbers are meaningful (momentum never changes the
  weights: only the statistics used at inference);
- :func:`recalibrate` re-estimates the statistics after training, exactly, as the mean of the
  per-batch statistics over up to ``RECALIBRATION_IMAGES`` training images ("precise BN",
  Wu & Johnson 2021), for the model that is saved.

:func:`mode_accuracies` measures what is left of the problem: the accuracy of the same images in
training mode (batch statistics) and inference mode (stored statistics).
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from refinelab.core.backend import compiled
from refinelab.data.pipeline import build_dataset
from refinelab.data.store import Split

log = logging.getLogger(__name__)

KERAS_MOMENTUM = 0.99
# The moving averages cover about a third of an epoch: 1 / (1 - momentum) = steps_per_epoch / 3.
WINDOW_FRACTION_OF_EPOCH = 1 / 3
MIN_MOMENTUM = 0.5
RECALIBRATION_IMAGES = 8192
# Large batches: their statistics are closest to the whole set's, and the passes are few.
RECALIBRATION_BATCH = 256
MODE_CHECK_IMAGES = 512


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers that learn statistics, nested models included (a frozen one
    runs in inference mode and keeps the statistics it has, e.g. a pretrained transfer base's)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += batch_norm_layers(layer)
        elif isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer)
    return found


def momentum_for(steps_per_epoch: int) -> float:
    """Keras' 0.99, or less when an epoch has too few steps for a ~100-step window."""
    window = max(steps_per_epoch * WINDOW_FRACTION_OF_EPOCH, 1.0)
    return float(np.clip(1 - 1 / window, MIN_MOMENTUM, KERAS_MOMENTUM))


def set_momentum(model: keras.Model, steps_per_epoch: int) -> float | None:
    """Set every learning batch-norm layer's momentum for ``steps_per_epoch``; None without such layers."""
    layers = batch_norm_layers(model)
    if not layers:
        return None
    momentum = momentum_for(steps_per_epoch)
    for layer in layers:
        layer.momentum = momentum
    return momentum


def recalibrate(model: keras.Model, split: Split, seed: int) -> int:
    """Replace the moving statistics of every learning batch-norm layer by the mean of their values in
    shuffled batches of training images (up to ``RECALIBRATION_IMAGES``), each batch weighted by its
    image count (a short last batch counts for its few images); returns the images used.

    The batches are the clean training images (no augmentation): the distribution inference sees.
    Only the statistics change; each layer's momentum is restored afterwards.
    """
    layers = batch_norm_layers(model)
    if not layers or len(split) == 0:
        return 0
    batches = build_dataset(split, RECALIBRATION_BATCH, shuffle=True, seed=seed,
                           max_batches=max(1, RECALIBRATION_IMAGES // RECALIBRATION_BATCH))
    momenta = [layer.momentum for layer in layers]
    state = model.non_trainable_variables
    statistics = [variable for layer in layers for variable in (layer.moving_mean, layer.moving_variance)]
    positions = [next(i for i, variable in enumerate(state) if variable is statistic) for statistic in statistics]
    try:
        # Momentum 0: a training-mode pass leaves in each layer the statistics of that batch alone.
        for layer in layers:
            layer.momentum = 0.0
        trainable = [variable.value for variable in model.trainable_variables]
        values = [variable.value for variable in state]
        training_pass = compiled(lambda trainable, values, images: model.stateless_call(
            trainable, values, images, training=True)[1])
        sums = [keras.ops.zeros_like(statistic.value) for statistic in statistics]
        images_used = 0
        for images, _ in batches:
            values = training_pass(trainable, values, images)  # Carries dropout's random state on.
            count = int(images.shape[0])
            sums = [total + count * values[position] for total, position in zip(sums, positions)]
            images_used += count
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    for statistic, total in zip(statistics, sums):
        statistic.assign(total / images_used)
    log.info("re-estimated the statistics of %d batch-norm layers over %d training images", len(layers), images_used)
    return images_used


def mode_accuracies(model: keras.Model, split: Split, batch_size: int, seed: int) -> tuple[float, float] | None:
    """(training-mode, inference-mode) accuracy on up to ``MODE_CHECK_IMAGES`` shuffled images of
    ``split`` in batches of ``batch_size`` (at least 64: smaller batches only add noise); None for a model
    without learning batch-norm layers (the two modes then differ only by dropout). The passes are
    stateless: the model is left as it was."""
    if not batch_norm_layers(model) or len(split) == 0:
        return None
    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    both_modes = compiled(lambda trainable, non_trainable, images: [
        model.stateless_call(trainable, non_trainable, images, training=training)[0] for training in (True, False)])
    correct = {True: 0, False: 0}
    seen = 0
    batch_size = max(batch_size, 64)
    dataset = build_dataset(split, batch_size, shuffle=True, seed=seed, max_batches=max(1, MODE_CHECK_IMAGES // batch_size))
    for images, labels in dataset:
        labels = keras.ops.convert_to_numpy(labels)
        for training, output in zip((True, False), both_modes(trainable, non_trainable, images)):
            correct[training] += int((keras.ops.convert_to_numpy(output).argmax(axis=1) == labels).sum())
        seen += len(labels)
    return correct[True] / seen, correct[False] / seen
