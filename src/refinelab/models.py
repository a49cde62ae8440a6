"""The architecture registry: one builder per architecture type, presets are data in params.yaml.

Every model takes raw pixel values (0-255) and outputs class probabilities, so the prepared
arrays and images read at predict time go in unchanged. Where the top-level regularization
params apply:

- ``dropout``: after every hidden Dense layer, and before the dense head of a CNN;
- ``l2``: on the kernels of every hidden Dense and Conv2D layer (not the output layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
from keras import layers

from refinelab.config import CNNSpec, MLPSpec
from refinelab.registry import Registry


@dataclass(frozen=True)
class Regularization:
    dropout: float = 0.0
    l2: float = 0.0

    def kernel_regularizer(self) -> keras.regularizers.Regularizer | None:
        return keras.regularizers.L2(self.l2) if self.l2 > 0 else None


FeatureBuilder = Callable[..., keras.KerasTensor]
ARCHITECTURES: Registry[FeatureBuilder] = Registry("architecture type")


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


@ARCHITECTURES.register("mlp")
def mlp_features(spec: MLPSpec, images, reg: Regularization):
    features = layers.Flatten(name="flatten")(images)
    return dense_stack(features, spec.hidden, reg, spec.batch_norm, prefix="dense")


@ARCHITECTURES.register("cnn")
def cnn_features(spec: CNNSpec, images, reg: Regularization):
    features = images
    pool = layers.MaxPooling2D if spec.pooling == "max" else layers.AveragePooling2D
    for block, filters in enumerate(spec.filters, start=1):
        for conv in range(1, spec.convs_per_block + 1):
            name = f"block{block}_conv{conv}"
            features = layers.Conv2D(
                filters,
                spec.kernel_size,
                padding=spec.padding,
                use_bias=not spec.batch_norm,
                kernel_regularizer=reg.kernel_regularizer(),
                name=name,
            )(features)
            if spec.batch_norm:
                features = layers.BatchNormalization(name=f"{name}_bn")(features)
            features = layers.Activation("relu", name=f"{name}_relu")(features)
        # Small inputs run out of pixels before they run out of blocks: stop pooling at 1x1.
        if min(features.shape[1:3]) >= 2:
            features = pool(2, name=f"block{block}_pool")(features)
    if spec.head_pooling == "avg":
        features = layers.GlobalAveragePooling2D(name="global_pool")(features)
    else:
        features = layers.Flatten(name="flatten")(features)
    if reg.dropout > 0:
        features = layers.Dropout(reg.dropout, name="features_dropout")(features)
    return dense_stack(features, spec.dense, reg, spec.batch_norm, prefix="head")


def build_model(
    spec: MLPSpec | CNNSpec,
    input_shape: Sequence[int],
    num_classes: int,
    reg: Regularization = Regularization(),
    name: str = "classifier",
) -> keras.Model:
    images = keras.Input(shape=tuple(input_shape), name="image")
    scaled = layers.Rescaling(1.0 / 255, name="scale_to_unit")(images)
    features = ARCHITECTURES.get(spec.type)(spec, scaled, reg)
    probabilities = layers.Dense(num_classes, activation="softmax", name="classes")(features)
    return keras.Model(images, probabilities, name=name)
