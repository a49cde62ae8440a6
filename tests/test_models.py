"""Every architecture preset in the real params.yaml builds, trains a step and predicts sanely."""

import numpy as np
import pytest

from conftest import ROOT
from refinelab.config import load_params
from refinelab.models import Regularization, build_model

PARAMS = load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("preset", sorted(PARAMS.architectures))
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (64, 64, 3)])
def test_every_preset_builds_trains_and_predicts(preset, input_shape):
    import keras

    keras.utils.set_random_seed(0)
    classes = 4
    model = build_model(PARAMS.architectures[preset], input_shape, classes, Regularization(dropout=0.2, l2=1e-4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, size=(8, *input_shape)).astype("float32")
    labels = np.arange(8) % classes
    before = [weight.copy() for weight in model.get_weights()]
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (8, classes)
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("preset", ["baseline", "cnn"])
def test_dropout_and_l2_are_in_the_built_model(preset):
    import keras

    model = build_model(PARAMS.architectures[preset], (28, 28, 1), 10, Regularization(dropout=0.25, l2=0.001))
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts and all(layer.rate == 0.25 for layer in dropouts)
    hidden = [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))][:-1]
    assert hidden and all(
        isinstance(layer.kernel_regularizer, keras.regularizers.L2)
        and np.isclose(layer.kernel_regularizer.l2, 0.001)
        for layer in hidden
    )
    assert model.layers[-1].kernel_regularizer is None  # The output layer is not penalised.


def test_no_dropout_or_l2_layers_when_zero():
    import keras

    model = build_model(PARAMS.architectures["bigger"], (28, 28, 1), 10, Regularization())
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in model.layers)


def test_mlp_widths_follow_the_spec():
    import keras

    model = build_model(PARAMS.architectures["bigger"], (28, 28, 1), 10)
    widths = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert widths == [512, 128, 16, 10]
