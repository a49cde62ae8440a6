"""The architecture registry: one builder per architecture type, presets are data in params.yaml.

Every model takes raw pixel values (0-255) and outputs class probabilities, so the prepared
arrays and images read at predict time go in unchanged. Each builder scales the pixels as its
features need: ``mlp``, ``cnn`` and ``residual_cnn`` to [0, 1] (their first layer); ``transfer``
with its base's own ``preprocess_input``. Where the top-level regularization params apply:

- ``dropout``: after every hidden Dense layer, and before the dense head of a CNN or transfer model;
- ``l2`` and ``l1``: on the kernels of every hidden Dense and Conv2D layer built here (not the
  output layer, and not the layers of a transfer base).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from refinelab.core.errors import DataError, ParamsError
from refinelab.core.fileio import file_digest
from refinelab.core.registry import Registry
from refinelab.models.artifact import load_trained_model
from refinelab.params import names
from refinelab.params.schema import (
    ARCHITECTURE_TYPES,
    ArchitectureSpec,
    CNNSpec,
    MLPSpec,
    ResidualCNNSpec,
    TransferSpec,
)

log = logging.getLogger(__name__)
BASE_MODEL_NAME = "base"  # The name of a transfer model's base: training finds its layers by it.


@dataclass(frozen=True)
class Regularization:
    dropout: float = 0.0
    l2: float = 0.0
    l1: float = 0.0

    def kernel_regularizer(self) -> keras.regularizers.Regularizer | None:
        if self.l1 > 0 and self.l2 > 0:
            return keras.regularizers.L1L2(l1=self.l1, l2=self.l2)
        if self.l1 > 0:
            return keras.regularizers.L1(self.l1)
        return keras.regularizers.L2(self.l2) if self.l2 > 0 else None


FeatureBuilder = Callable[..., keras.KerasTensor]
ARCHITECTURES: Registry[FeatureBuilder] = Registry("architecture type", ARCHITECTURE_TYPES, "refinelab.params.schema.ARCHITECTURE_SPECS")


def scale_to_unit(images):
    return layers.Rescaling(1.0 / 255, name="scale_to_unit")(images)


def dense_stack(features, units: Sequence[int], reg: Regularization, batch_norm: bool, prefix: str):
    """Dense -> [BatchNorm] -> ReLU -> [Dropout] for each entry of ``units``."""
    for index, width in enumerate(units, start=1):
        features = layers.Dense(
            width, use_bias=not batch_norm, kernel_regularizer=reg.kernel_regularizer(), name=f"{prefix}{index}"
        )(features)
        if batch_norm:
            features = layers.BatchNormalization(name=f"{prefix}{index}_bn")(features)
        features = layers.Activation("relu", name=f"{prefix}{index}_relu")(features)
        if reg.dropout > 0:
            features = layers.Dropout(reg.dropout, name=f"{prefix}{index}_dropout")(features)
    return features


def conv_bn(features, filters: int, spec, reg: Regularization, name: str, strides: int = 1, relu: bool = True):
    """Conv2D -> [BatchNorm] -> [ReLU], the unit every convolutional builder stacks."""
    height, width = features.shape[1:3]
    if spec.padding == "valid" and min(height, width) < spec.kernel_size:
        # Found while building, before any training: Keras would fail with a shape error instead.
        raise ParamsError(
            f"{name}: a {spec.kernel_size}x{spec.kernel_size} convolution with padding: valid needs at least that "
            f"many pixels, but its input is {height}x{width} here; use padding: same in the architecture, fewer "
            f"filters entries, or a larger data.image_size"
        )
    features = layers.Conv2D(
        filters,
        spec.kernel_size,
        strides=strides,
        padding=spec.padding,
        use_bias=not spec.batch_norm,
        kernel_regularizer=reg.kernel_regularizer(),
        name=name,
    )(features)
    if spec.batch_norm:
        features = layers.BatchNormalization(name=f"{name}_bn")(features)
    return layers.Activation("relu", name=f"{name}_relu")(features) if relu else features


# The layers that make a feature map one vector per image: where a transfer model's head begins.
POOLING_LAYERS = {"avg": "global_pool", "flatten": "flatten"}


def pool(features, spec):
    """Feature map -> vector (flatten or average), as ``spec.head_pooling`` says."""
    if spec.head_pooling == "avg":
        return layers.GlobalAveragePooling2D(name=POOLING_LAYERS["avg"])(features)
    return layers.Flatten(name=POOLING_LAYERS["flatten"])(features)


def head(features, spec, reg: Regularization):
    """Feature map -> vector (flatten or average), [Dropout], then the dense stack of ``spec.dense``."""
    if len(features.shape) == 4:
        features = pool(features, spec)
    if reg.dropout > 0:
        features = layers.Dropout(reg.dropout, name="features_dropout")(features)
    return dense_stack(features, spec.dense, reg, spec.batch_norm, prefix="head")


@ARCHITECTURES.register("mlp")
def mlp_features(spec: MLPSpec, images, reg: Regularization):
    features = layers.Flatten(name="flatten")(scale_to_unit(images))
    if spec.input_dropout > 0:
        features = layers.Dropout(spec.input_dropout, name="input_dropout")(features)
    return dense_stack(features, spec.hidden, reg, spec.batch_norm, prefix="dense")


@ARCHITECTURES.register("cnn")
def cnn_features(spec: CNNSpec, images, reg: Regularization):
    features = scale_to_unit(images)
    pool = layers.MaxPooling2D if spec.pooling == "max" else layers.AveragePooling2D
    for block, filters in enumerate(spec.filters, start=1):
        for conv in range(1, spec.convs_per_block + 1):
            features = conv_bn(features, filters, spec, reg, name=f"block{block}_conv{conv}")
        # Small inputs run out of pixels before they run out of blocks: stop pooling at 1x1.
        if min(features.shape[1:3]) >= 2:
            features = pool(2, name=f"block{block}_pool")(features)
        if spec.block_dropout > 0:
            features = layers.Dropout(spec.block_dropout, name=f"block{block}_dropout")(features)
    return head(features, spec, reg)


@ARCHITECTURES.register("residual_cnn")
def residual_cnn_features(spec: ResidualCNNSpec, images, reg: Regularization):
    """A stem convolution, then stages of basic residual blocks (two convolutions plus a shortcut);
    every stage after the first halves the resolution in its first block."""
    features = conv_bn(scale_to_unit(images), spec.filters[0], spec, reg, name="stem")
    for stage, filters in enumerate(spec.filters, start=1):
        for block in range(1, spec.blocks_per_stage + 1):
            name = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 and min(features.shape[1:3]) >= 2 else 1
            shortcut = features
            if strides > 1 or features.shape[-1] != filters:
                shortcut = layers.Conv2D(
                    filters, 1, strides=strides, use_bias=False, kernel_regularizer=reg.kernel_regularizer(),
                    name=f"{name}_shortcut",
                )(features)
            features = conv_bn(features, filters, spec, reg, name=f"{name}_conv1", strides=strides)
            features = conv_bn(features, filters, spec, reg, name=f"{name}_conv2", relu=False)
            features = layers.Add(name=f"{name}_add")([features, shortcut])
            features = layers.Activation("relu", name=f"{name}_relu")(features)
    return head(features, spec, reg)


@dataclass(frozen=True)
class ImagenetBase:
    """A ``keras.applications`` network usable as a transfer base, its preprocessing, and the
    weights file Keras downloads for it (``include_top=False``)."""

    constructor: Callable[..., keras.Model]
    preprocess_input: Callable[[np.ndarray], np.ndarray]
    weights_file: str
    # Keras downloads the weights at first use; False: they come installed with refinelab's dependencies.
    downloads: bool = True


TRANSFER_BASES: Registry[Callable[[int], ImagenetBase]] = Registry("transfer base", names.TRANSFER_BASES)


@TRANSFER_BASES.register("vgg16")
def vgg16(input_size: int) -> ImagenetBase:
    applications = keras.applications
    return ImagenetBase(
        applications.VGG16, applications.vgg16.preprocess_input, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )


@TRANSFER_BASES.register("resnet50")
def resnet50(input_size: int) -> ImagenetBase:
    applications = keras.applications
    return ImagenetBase(
        applications.ResNet50, applications.resnet50.preprocess_input,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    )


@TRANSFER_BASES.register("mobilenet_v2")
def mobilenet_v2(input_size: int) -> ImagenetBase:
    rows = input_size if input_size in (96, 128, 160, 192, 224) else 224  # The weights Keras picks.
    applications = keras.applications
    return ImagenetBase(
        applications.MobileNetV2, applications.mobilenet_v2.preprocess_input,
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
    )


@TRANSFER_BASES.register("efficientnet_b0")
def efficientnet_b0(input_size: int) -> ImagenetBase:
    applications = keras.applications
    return ImagenetBase(
        applications.EfficientNetB0, applications.efficientnet.preprocess_input, "efficientnetb0_notop.h5"
    )


@TRANSFER_BASES.register("efficientnet_lite0")
def efficientnet_lite0(input_size: int) -> ImagenetBase:
    from refinelab.models import efficientnet_lite

    return ImagenetBase(
        efficientnet_lite.EfficientNetLite0, efficientnet_lite.preprocess_input, efficientnet_lite.LITE0_FILENAME,
        downloads=False,
    )


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_base(spec: TransferSpec) -> tuple[keras.Model, Callable[[np.ndarray], np.ndarray]]:
    """The base network (no top) for RGB images of ``spec.input_size``, with its ``preprocess_input``."""
    base = TRANSFER_BASES.get(spec.base)(spec.input_size)
    weights = "imagenet" if spec.weights == "imagenet" else None
    try:
        network = base.constructor(
            include_top=False, weights=weights, input_shape=(spec.input_size, spec.input_size, 3)
        )
    except DataError:  # efficientnet_lite0's own reader: a missing package or a wrong file, named.
        raise
    except Exception as exc:  # Keras raises a bare Exception when the download fails.
        if weights is None:
            raise
        file_name = base.weights_file
        raise DataError(
            f"could not get the ImageNet weights of {spec.base} ({exc}). Keras looks for them in "
            f"{keras_cache_dir() / file_name} (the folder is $KERAS_HOME/models, ~/.keras/models by default): "
            f"download {file_name} on a machine with internet (any keras.applications.{base.constructor.__name__}"
            f"(include_top=False, weights='imagenet') call caches it there) and copy it to that path, or use "
            f"base: efficientnet_lite0 (model: efficientnet_lite0), whose weights come installed"
        ) from None
    return network, base.preprocess_input


def transfer_weights(spec: ArchitectureSpec) -> dict[str, str] | None:
    """Which file a transfer model's base weights came from, with its sha256 (for models/params.json);
    None for other architectures and random bases. Call it after building: the file is then in place."""
    if spec.type != "transfer" or spec.weights == "none":
        return None
    if spec.pretrained_path:
        path = Path(spec.pretrained_path)
    elif spec.base == "efficientnet_lite0":
        from refinelab.models import efficientnet_lite

        return {"file": f"{efficientnet_lite.LITE0_DISTRIBUTION}=={efficientnet_lite.LITE0_VERSION}/"
                        f"{efficientnet_lite.LITE0_FILENAME}", "sha256": efficientnet_lite.LITE0_SHA256}
    else:
        # Keras checked the file against the hash it publishes for it (where it publishes one) when it got it.
        path = keras_cache_dir() / TRANSFER_BASES.get(spec.base)(spec.input_size).weights_file
    # None: the file is no longer where it was loaded from (another KERAS_HOME); the run is not stopped for it.
    return {"file": str(path), "sha256": file_digest(path) if path.is_file() else None}


def refinelab_base(path: str) -> keras.Model:
    """A model refinelab trained, without its output layer: its features, taking raw 0-255 pixels."""
    if not Path(path).is_file():
        raise DataError(f"{path}: pretrained model not found (weights: in the transfer architecture)")
    trained = load_trained_model(path, compile=False)
    return keras.Model(trained.inputs, trained.layers[-2].output, name="pretrained_features")


def affine_channel_map(in_channels: int, out_channels: int, preprocess=None) -> tuple[np.ndarray, np.ndarray] | None:
    """(matrix, bias) of the per-pixel map from ``in_channels`` to a base's ``out_channels``, folding in
    the grayscale<->RGB conversion and the base's ``preprocess_input`` (a per-channel affine map in
    every keras.applications base: scaling, mean subtraction, RGB->BGR); None for the identity."""
    if in_channels == out_channels:
        matrix = np.eye(in_channels, dtype="float32")
    elif in_channels == 1:
        matrix = np.ones((1, out_channels), dtype="float32")  # Gray -> the same value in R, G and B.
    else:
        matrix = np.array([[0.299], [0.587], [0.114]], dtype="float32")  # ITU-R 601 luma, as PIL's "L".
    bias = np.zeros(out_channels, dtype="float32")
    if preprocess is not None:

        def preprocess_pixels(pixels: np.ndarray) -> np.ndarray:  # (n, channels) -> (n, channels)
            batch = pixels.reshape(1, 1, -1, out_channels).astype("float32")  # preprocess_input may work in place
            return np.asarray(preprocess(batch), dtype="float32").reshape(-1, out_channels)

        bias = preprocess_pixels(np.zeros((1, out_channels)))[0]
        columns = preprocess_pixels(np.eye(out_channels)) - bias
        probe = np.random.default_rng(0).uniform(0, 255, (16, out_channels))
        if not np.allclose(preprocess_pixels(probe), probe @ columns + bias, atol=1e-3):
            raise ValueError("the base's preprocess_input is not a per-channel affine map")
        matrix = matrix @ columns
    if matrix.shape == (in_channels, in_channels) and np.array_equal(matrix, np.eye(in_channels)) and not bias.any():
        return None
    return matrix, bias


def adapt_input(images, size: Sequence[int], channels: int, preprocess=None):
    """Resize ``images`` to the base's ``size`` and map their channels (and values) to what it expects."""
    if tuple(images.shape[1:3]) != tuple(size):
        images = layers.Resizing(*size, name="resize_to_base")(images)
    channel_map = affine_channel_map(images.shape[-1], channels, preprocess)
    if channel_map is not None:
        # A frozen 1x1 map: a plain Dense layer, so the saved model loads without custom code.
        adapter = layers.Dense(channels, trainable=False, name="preprocess_input")
        images = adapter(images)
        adapter.set_weights(list(channel_map))
    return images


def freeze_base(base: keras.Model, spec: TransferSpec, everything: bool = False) -> None:
    """Freeze all, none, or the first ``spec.freeze`` layers of ``base`` (all of it if ``everything``).

    The batch-norm layers of pretrained weights stay frozen even when fine-tuning: a frozen Keras
    BatchNormalization runs in inference mode, so the pretrained statistics are kept (the Keras
    transfer-learning guide's advice; Keras 3 passes fit's ``training=True`` into nested models).
    """
    count = len(base.layers) if everything else {"all": len(base.layers), "none": 0}.get(spec.freeze, spec.freeze)
    pretrained = spec.weights != "none"
    for index, layer in enumerate(base.layers):
        keep_statistics = pretrained and isinstance(layer, layers.BatchNormalization)
        layer.trainable = index >= count and not keep_statistics


def transfer_extractor(spec: TransferSpec, images):
    """Images -> the base's features, one vector per image (the base frozen as ``spec`` says)."""
    if spec.pretrained_path:
        network, preprocess = refinelab_base(spec.pretrained_path), None
    else:
        network, preprocess = imagenet_base(spec)
    base = keras.Model(network.input, network.output, name=BASE_MODEL_NAME)
    freeze_base(base, spec)
    frozen = sum(not layer.trainable for layer in base.layers)
    log.info("transfer base %s: %d of %d layers frozen", spec.base or spec.weights, frozen, len(base.layers))
    height, width, channels = base.input_shape[1:]
    features = base(adapt_input(images, (height, width), channels, preprocess))
    return pool(features, spec) if len(features.shape) == 4 else features


@ARCHITECTURES.register("transfer")
def transfer_features(spec: TransferSpec, images, reg: Regularization):
    """A pretrained (or fresh) base as feature extractor, frozen as asked, then a new dense head."""
    return head(transfer_extractor(spec, images), spec, reg)


def build_extractor(spec: TransferSpec, input_shape: Sequence[int]) -> keras.Model:
    """A transfer model's frozen part alone: images in, the vectors its head reads out (the features stage
    computes them once; the model train builds from the same spec has the same part)."""
    images = keras.Input(shape=tuple(input_shape), name="image")
    return keras.Model(images, transfer_extractor(spec, images), name="features")


def feature_head(model: keras.Model) -> keras.Model:
    """A transfer model's head as a model of its own: feature vectors in, class probabilities out. It
    shares its layers with ``model``: training it trains the model's head."""
    # Where the head begins: the pooling of the base's feature map, or the base itself where its output is
    # already a vector (a model refinelab trained).
    # (A nested model's own .output is in its graph, not this one: the next layer's input is.)
    pooling = [layer for layer in model.layers if layer.name in POOLING_LAYERS.values()]
    if pooling:
        boundary = pooling[0].output
    else:
        names = [layer.name for layer in model.layers]
        boundary = model.layers[names.index(BASE_MODEL_NAME) + 1].input
    return keras.Model(boundary, model.output, name=f"{model.name}_head")


def build_model(
    spec: ArchitectureSpec,
    input_shape: Sequence[int],
    num_classes: int,
    reg: Regularization = Regularization(),
    name: str = "classifier",
) -> keras.Model:
    images = keras.Input(shape=tuple(input_shape), name="image")
    features = ARCHITECTURES.get(spec.type)(spec, images, reg)
    probabilities = layers.Dense(num_classes, activation="softmax", name="classes")(features)
    return keras.Model(images, probabilities, name=name)


def transfer_base(model: keras.Model) -> keras.Model | None:
    """The base network of a transfer model (None for other architectures)."""
    try:
        return model.get_layer(BASE_MODEL_NAME)
    except ValueError:
        return None


def count_weights(weights: Sequence[Any]) -> int:
    return int(sum(np.prod(weight.shape) for weight in weights))


def model_summary(model: keras.Model) -> dict[str, Any]:
    """Parameter counts and the layer list (the base of a transfer model is one entry), for metrics/model.json."""
    return {
        "total_params": count_weights(model.weights),
        "trainable_params": count_weights(model.trainable_weights),
        "non_trainable_params": count_weights(model.non_trainable_weights),
        "layers": [
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "params": count_weights(layer.weights),
                "trainable_params": count_weights(layer.trainable_weights),
            }
            for layer in model.layers
        ],
    }


ARCHITECTURES.check_complete()


TRANSFER_BASES.check_complete()
