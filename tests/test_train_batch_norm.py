"""Batch-norm statistics: the momentum for short epochs, the exact re-estimate, the mode check."""

import numpy as np
import pytest

from refinelab.data.store import Split


def stats_model(frozen=False):
    """Input -> BatchNormalization: its moving statistics are the input's own."""
    import keras

    images = keras.Input((4, 4, 2))
    normalization = keras.layers.BatchNormalization(name="bn")
    normalization.trainable = not frozen
    model = keras.Model(images, keras.layers.Flatten()(normalization(images)))
    model.get_layer("bn").momentum = 0.99
    return model


def random_split(count=512, seed=0):
    rng = np.random.default_rng(seed)
    images = np.concatenate([rng.integers(0, 100, (count, 4, 4, 1)), rng.integers(150, 250, (count, 4, 4, 1))], axis=-1)
    return Split(images.astype(np.uint8), np.arange(count) % 2)


@pytest.mark.parametrize("steps, momentum", [(422, 0.99), (63, 1 - 3 / 63), (3, 0.5), (1, 0.5)])
def test_momentum_keeps_keras_default_for_long_epochs_and_shortens_the_window_for_short_ones(steps, momentum):
    from refinelab.train.batch_norm import momentum_for

    assert momentum_for(steps) == pytest.approx(momentum)


# 512 images: two batches of 256; 257: a batch of 256 and one of a single image, which must count for one
# image (weighted as a whole batch, it halved the variance).
@pytest.mark.parametrize("count", [512, 257])
def test_recalibration_sets_the_exact_statistics_of_the_training_images(count):
    from refinelab.train.batch_norm import recalibrate

    model, split = stats_model(), random_split(count)
    used = recalibrate(model, split, seed=0)

    layer = model.get_layer("bn")
    pixels = split.images.astype("float64").reshape(-1, 2)
    assert used == count and layer.momentum == 0.99  # Restored.
    np.testing.assert_allclose(layer.moving_mean.numpy(), pixels.mean(axis=0), rtol=1e-5)
    # The mean of the two batches' variances: the whole set's, less the (tiny) spread of the batch means.
    np.testing.assert_allclose(layer.moving_variance.numpy(), pixels.var(axis=0), rtol=0.02)


def test_a_failed_recalibration_restores_the_momentum_and_the_statistics():
    from refinelab.train.batch_norm import recalibrate

    model = stats_model()
    wrong_shape = Split(np.zeros((8, 4, 4, 3), np.uint8), np.zeros(8, np.int64))  # The model takes 2 channels.
    with pytest.raises(Exception):
        recalibrate(model, wrong_shape, seed=0)
    layer = model.get_layer("bn")
    assert layer.momentum == 0.99
    np.testing.assert_array_equal(layer.moving_mean.numpy(), [0.0, 0.0])


def test_recalibration_leaves_frozen_statistics_alone():
    from refinelab.train.batch_norm import batch_norm_layers, recalibrate

    model = stats_model(frozen=True)
    assert batch_norm_layers(model) == []
    assert recalibrate(model, random_split(), seed=0) == 0
    np.testing.assert_array_equal(model.get_layer("bn").moving_mean.numpy(), [0.0, 0.0])


def test_the_mode_check_finds_unsettled_statistics_and_changes_nothing():
    import keras

    from refinelab.train.batch_norm import mode_accuracies, recalibrate

    # A classifier whose class is the brightness of the first channel, normalized by batch norm.
    rng = np.random.default_rng(0)
    labels = np.arange(512) % 2
    images = rng.integers(0, 40, (512, 4, 4, 2)) + labels[:, None, None, None] * 200
    split = Split(images.astype(np.uint8), labels)
    inputs = keras.Input((4, 4, 2))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization(name="bn")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="decide")(features))
    model.get_layer("decide").set_weights([np.array([[-5.0, 5.0], [0.0, 0.0]]), np.zeros(2)])
    before = [weight.copy() for weight in model.get_weights()]

    training, inference = mode_accuracies(model, split, batch_size=64, seed=0)

    assert training == 1.0 and inference == 0.5  # Moving mean 0: every image looks bright at inference.
    for after, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(after, original)  # The training-mode pass was stateless.
    recalibrate(model, split, seed=0)
    assert mode_accuracies(model, split, batch_size=64, seed=0) == (1.0, 1.0)
