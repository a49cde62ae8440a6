"""The augmentation registry: the Keras layers behind every op, offline copies and previews (the augment
stage's work is refinelab.augment.stage, which imports this module only when it needs Keras; which ops a
run applies is refinelab.augment.policy, without Keras).

Every op in ``params.yaml``'s ``augment:`` section is ONE Keras preprocessing layer, built by the
registry below, and that same layer serves both modes:

- offline: the augment stage runs it once over the training split and appends the transformed
  copies to the originals (``data/augmented``), seeded, so the set is reproducible;
- online: :func:`online_augmenter` chains the layers into a ``keras.layers.Pipeline`` that the
  training input pipeline applies to every training batch, drawn afresh each epoch (on JAX compiled
  into one function: :func:`for_backend`). It is not part of the model, so evaluation and prediction
  never see it.

Images are float32 in 0-255 inside the ops; every chain ends by clipping back to that range.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers
from numpy.lib.format import open_memmap

from refinelab.augment.policy import online_active, op_names
from refinelab.core.backend import compiled
from refinelab.core.fileio import atomic_dir
from refinelab.core.registry import Registry
from refinelab.data.store import Split, write_training_set
from refinelab.params.names import AUGMENTATION_OPS
from refinelab.params.schema import AugmentParams, Params

log = logging.getLogger(__name__)

PIXEL_MAX = 255.0
# Online, a fixed transform (invert, rotate90, a flip) is applied to this fraction of the images.
ONLINE_FIXED_RATE = 0.5
OFFLINE_CHUNK = 512  # Images transformed at a time when writing offline copies.


class ImageTransform(layers.Layer):
    """A fixed (not random) transform of an image batch, applied to every image or to a seeded random
    ``rate`` fraction of them."""

    def __init__(self, transform: Callable, rate: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.transform, self.rate = transform, rate
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        transformed = self.transform(images)
        if self.rate >= 1:
            return transformed
        batch = keras.ops.shape(images)[0]
        chosen = keras.random.uniform((batch, 1, 1, 1), seed=self.generator) < self.rate
        return keras.ops.where(chosen, transformed, images)


class PixelNoise(layers.Layer):
    """Additive Gaussian noise with ``stddev`` in pixel units (Keras' GaussianNoise caps stddev at 1)."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        return images + keras.random.normal(keras.ops.shape(images), stddev=self.stddev, seed=self.generator)


def invert(images):
    return PIXEL_MAX - images


def rotate90(images):
    """A quarter turn anticlockwise (exact: pixels move, none are interpolated)."""
    return keras.ops.rot90(images, k=1, axes=(1, 2))


def flip_horizontal(images):
    return keras.ops.flip(images, axis=2)


def flip_vertical(images):
    return keras.ops.flip(images, axis=1)


def clip_to_pixels(images):
    return keras.ops.clip(images, 0.0, PIXEL_MAX)


# name -> builder(settings, seed, online) -> one Keras layer acting on float NHWC batches in 0-255.
OpBuilder = Callable[[AugmentParams, int, bool], layers.Layer]
AUGMENTATIONS: Registry[OpBuilder] = Registry("augmentation", AUGMENTATION_OPS)


def _register_fixed(name: str, transform: Callable) -> None:
    @AUGMENTATIONS.register(name)
    def build(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
        return ImageTransform(transform, rate=ONLINE_FIXED_RATE if online else 1.0, seed=seed, name=name)


for _name, _transform in (
    ("invert", invert), ("rotate90", rotate90), ("flip_horizontal", flip_horizontal), ("flip_vertical", flip_vertical)
):
    _register_fixed(_name, _transform)


@AUGMENTATIONS.register("rotation")
def rotation(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return layers.RandomRotation(
        settings.rotation / 360, fill_mode=settings.fill_mode, interpolation=settings.interpolation, seed=seed,
        name="rotation",
    )


@AUGMENTATIONS.register("zoom")
def zoom(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return layers.RandomZoom(
        settings.zoom, fill_mode=settings.fill_mode, interpolation=settings.interpolation, seed=seed, name="zoom"
    )


@AUGMENTATIONS.register("shear")
def shear(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return layers.RandomShear(
        settings.shear, settings.shear, fill_mode=settings.fill_mode, interpolation=settings.interpolation,
        seed=seed, name="shear",
    )


@AUGMENTATIONS.register("shift")
def shift(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return layers.RandomTranslation(
        settings.shift, settings.shift, fill_mode=settings.fill_mode, interpolation=settings.interpolation,
        seed=seed, name="shift",
    )


@AUGMENTATIONS.register("brightness")
def brightness(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return layers.RandomBrightness(settings.brightness, value_range=(0, PIXEL_MAX), seed=seed, name="brightness")


@AUGMENTATIONS.register("contrast")
def contrast(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return layers.RandomContrast(settings.contrast, value_range=(0, PIXEL_MAX), seed=seed, name="contrast")


@AUGMENTATIONS.register("noise")
def noise(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    return PixelNoise(settings.noise * PIXEL_MAX, seed=seed, name="noise")


@AUGMENTATIONS.register("cutout")
def cutout(settings: AugmentParams, seed: int, online: bool) -> layers.Layer:
    # factor=(1, 1): every image gets one erased rectangle, filled black.
    return layers.RandomErasing(
        factor=(1.0, 1.0), scale=(0.02, settings.cutout), fill_value=0.0, value_range=(0, PIXEL_MAX), seed=seed,
        name="cutout",
    )


def build_augmenter(
    names: Sequence[str], settings: AugmentParams, seed: int, online: bool
) -> keras.layers.Pipeline:
    """The ops ``names`` in turn, then a clip to 0-255; each op seeded from ``seed`` and its position."""
    seeds = np.random.SeedSequence([seed, len(names)]).generate_state(len(names))
    ops = [AUGMENTATIONS.get(name)(settings, int(op_seed), online) for name, op_seed in zip(names, seeds)]
    return layers.Pipeline([*ops, ImageTransform(clip_to_pixels, name="clip")], name="-".join(names) or "identity")


def online_augmenter(params: Params) -> Callable | None:
    """The training-batch augmentation for ``build_dataset`` (:func:`for_backend`), or None when
    ``augment.mode`` has none."""
    if not online_active(params.augment) or not params.augment.online:
        return None
    return for_backend(build_augmenter(params.augment.online, params.augment, params.seed, online=True))


def for_backend(augmenter: keras.layers.Pipeline) -> Callable:
    """The augmenter as its backend runs it fastest: on JAX one compiled function
    (:class:`CompiledAugmenter`), on TensorFlow the layers themselves (``tf.data`` traces them into its
    graph, and eager TensorFlow ops need no compiling)."""
    return CompiledAugmenter(augmenter) if keras.backend.backend() == "jax" else augmenter


class CompiledAugmenter:
    """An augmenter run as one XLA-compiled function on JAX, where calling the layers runs them op by op
    (measured on a 2-core CPU, 128 images through flip, shift and cutout: 14 ms a batch eager, 2.7 ms
    compiled). The random state goes in and out of each call and back into the layers' seed generators,
    so the draws are the eager ones (the pixels agree to float rounding). TensorFlow needs none of
    this: ``tf.data`` traces the augmenter into its graph."""

    def __init__(self, augmenter: keras.layers.Layer):
        # stateless_call wants a built layer. A Pipeline has no weights of its own, and its layers create
        # their random state when made: nothing is left to build (Layer.build would warn that it cannot tell).
        augmenter.built = True
        self.augmenter, self.name = augmenter, augmenter.name
        self.function = compiled(lambda state, images: augmenter.stateless_call([], state, images, training=True))

    def __call__(self, images):
        state = self.augmenter.non_trainable_variables
        images, new_state = self.function([variable.value for variable in state], images)
        for variable, value in zip(state, new_state):
            variable.assign(value)
        return images


def offline_augmenters(params: Params) -> list[Callable]:
    """One augmenter per offline copy (:func:`for_backend`): ``copies`` per entry, each with its own seed."""
    settings = params.augment
    return [
        for_backend(build_augmenter(op_names(entry), settings, params.seed + 1 + index * settings.copies + copy,
                                    online=False))
        for index, entry in enumerate(settings.offline)
        for copy in range(settings.copies)
    ]


def apply_to_uint8(augmenter: Callable, images: np.ndarray) -> np.ndarray:
    """Run an augmenter over uint8 images; rounds back to uint8."""
    transformed = keras.ops.convert_to_numpy(augmenter(images.astype(np.float32)))
    return np.rint(transformed).astype(np.uint8)


def write_offline(source: Split, augmenters: Sequence[Callable], out_dir: Path) -> int:
    """Write the originals followed by one transformed copy per augmenter; returns the image count.

    The output is written chunk by chunk into memory-mapped ``.npy`` files, so many copies of a large
    set never sit in RAM together. Copy ``k`` of image ``i`` is at ``(k + 1) * len(source) + i``.
    """
    count = len(source)
    total = count * (1 + len(augmenters))
    images = open_memmap(out_dir / "train_images.npy", mode="w+", dtype=np.uint8, shape=(total, *source.images.shape[1:]))
    labels = np.tile(source.labels.astype(np.int64), 1 + len(augmenters))
    images[:count] = source.images
    for block, augmenter in enumerate(augmenters, start=1):
        for start in range(0, count, OFFLINE_CHUNK):
            stop = min(start + OFFLINE_CHUNK, count)
            images[block * count + start: block * count + stop] = apply_to_uint8(augmenter, source.images[start:stop])
        log.info("offline copy %d/%d (%s) written", block, len(augmenters), augmenter.name)
    images.flush()
    del images
    np.save(out_dir / "train_labels.npy", labels)
    write_training_set(out_dir, "augmented", total)
    return total


def write_offline_copies(params: Params, source: Split, out_dir: str | Path) -> int:
    """Write the originals and their offline copies to ``out_dir``; return the count."""
    with atomic_dir(out_dir) as staging:
        return write_offline(source, offline_augmenters(params), staging)


AUGMENTATIONS.check_complete()
