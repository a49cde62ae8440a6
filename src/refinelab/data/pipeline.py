"""Input pipelines over prepared splits (memory-mapped, gathered batch by batch): ``tf.data`` where
TensorFlow is Keras' backend, a ``keras.utils.PyDataset`` for the others (JAX runs without TensorFlow)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from refinelab.data.store import Split

# Images per batch where nothing is learned (validation, evaluation, prediction): at inference a
# batch's size changes nothing but speed.
INFERENCE_BATCH = 256
EPOCH_LIMIT = 2**31 - 1  # "Endless" for a shuffled training stream.
PIPELINES = ("tf.data", "pydataset")


@dataclass(frozen=True)
class BatchShare:
    """A worker's share of every batch under a multi-worker strategy: parts ``first`` to
    ``first + count - 1`` of the batch cut into ``total`` parts (one per replica of the cluster, their
    sizes a batch's size over ``total``, give or take one), each part an element of its own."""

    first: int
    count: int
    total: int


def short_last_batch(count: int, batch_size: int, replicas: int) -> int:
    """Images a shared stream leaves out of each epoch: a last batch smaller than the replica count, which
    would leave a replica nothing (batch norm's statistics of no images are NaN). The order is drawn
    afresh each epoch, so it is other images each time."""
    remainder = count % batch_size
    return remainder if remainder < replicas else 0


def default_pipeline() -> str:
    return "tf.data" if keras.backend.backend() == "tensorflow" else "pydataset"


def build_dataset(
    split: Split, batch_size: int, shuffle: bool = False, seed: int = 0, augment: Callable | None = None,
    first_epoch: int | None = None, one_hot: int | None = None, max_batches: int | None = None,
    pipeline: str | None = None, share: BatchShare | None = None, replicas: int = 1, fill_last_batch: bool = False,
) -> Any:
    """Batches of (float32 images in 0-255, labels: int64, or one-hot float32 over ``one_hot`` classes),
    read from ``split`` without copying it whole (``PyDataset``: NumPy arrays; augmented images are the
    backend's tensors).

    Only indices are shuffled; each batch is gathered from the (memory-mapped) arrays, so a
    dataset larger than RAM streams from disk. ``augment`` (training data only: see
    ``refinelab.augment.ops.online_augmenter``) maps each image batch, afresh every epoch.
    Shuffled, each epoch draws a new order. With ``first_epoch`` it starts at that epoch, whose
    order is a function of (seed, epoch), so a resumed run sees what an uninterrupted one sees
    (``tf.data``: an endless stream of epochs, to fit with ``steps_per_epoch``; ``PyDataset``: Keras
    numbers epochs through :func:`pipeline_callbacks`). ``max_batches`` stops after that many batches,
    never past one epoch. With ``share`` (``tf.data`` only), this worker's parts of every batch.
    Shuffled training data for ``replicas`` replicas (``share``'s total on a cluster) leaves out an
    epoch's last batch when it is smaller than that (:func:`short_last_batch`). ``fill_last_batch``
    (unshuffled only) fills the last batch up with repeats of the split's last image: every batch then has
    one shape (:func:`predict`).
    """
    if fill_last_batch and shuffle:
        raise ValueError("fill_last_batch is for unshuffled data: a shuffled stream's batches would differ")
    if max_batches is not None:
        max_batches = min(max_batches, math.ceil(len(split) / batch_size))
    pipeline = pipeline or default_pipeline()
    if pipeline == "pydataset":
        if share is not None or replicas > 1:
            raise ValueError("a distribution strategy's batches need the tf.data pipeline")
        return SplitBatches(split, batch_size, shuffle, seed, augment, first_epoch, one_hot, max_batches,
                            fill_last_batch)
    if pipeline != "tf.data":
        raise ValueError(f"unknown pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    replicas = share.total if share is not None else replicas
    return tf_dataset(split, batch_size, shuffle, seed, augment, first_epoch, one_hot, max_batches, share, replicas,
                      fill_last_batch)


def unshuffled_order(count: int, batch_size: int, fill_last_batch: bool) -> np.ndarray:
    """0 .. count - 1, then, to fill the last batch, repeats of the last index (it sorts last in
    :func:`gather`, so the batch keeps this order)."""
    order = np.arange(count)
    if fill_last_batch and count % batch_size:
        order = np.concatenate([order, np.full(batch_size - count % batch_size, count - 1)])
    return order


def predict(model: keras.Model, split: Split, progress: bool = False) -> np.ndarray:
    """The model's outputs for the images of ``split``, in order, in batches of ``INFERENCE_BATCH`` (with
    Keras' progress bar when ``progress``).

    On JAX, a split of more than one batch has its last batch filled up (the extra outputs dropped):
    every such split then has one batch shape, and JAX compiles the prediction once, not once for each
    split's last batch. A split of one batch keeps its size (filling it could multiply the work), and
    TensorFlow's prediction takes any batch size without compiling again."""
    fill = keras.backend.backend() == "jax" and len(split) > INFERENCE_BATCH
    outputs = model.predict(build_dataset(split, INFERENCE_BATCH, fill_last_batch=fill), verbose=1 if progress else 0)
    return outputs[:len(split)]


def gather(split: Split, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images and labels; indices sorted, for sequential reads from the memory map."""
    indices = np.sort(indices)
    return np.ascontiguousarray(split.images[indices]), split.labels[indices].astype(np.int64)


def tf_dataset(
    split: Split, batch_size: int, shuffle: bool, seed: int, augment: Callable | None, first_epoch: int | None,
    one_hot: int | None, max_batches: int | None, share: BatchShare | None, replicas: int, fill_last_batch: bool,
):
    import tensorflow as tf

    count = len(split)
    left_out = short_last_batch(count, batch_size, replicas) if shuffle else 0
    image_type = tf.as_dtype(split.images.dtype)  # uint8 pixels, or a frozen base's float32 features.

    def load(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch_images, batch_labels = tf.numpy_function(lambda i: gather(split, i), [indices], (image_type, tf.int64))
        batch_images.set_shape((None, *split.images.shape[1:]))
        batch_labels.set_shape((None,))
        return tf.cast(batch_images, tf.float32), batch_labels

    if shuffle and first_epoch is not None:
        kept = count - left_out

        def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
            epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=epoch_seed)
            return tf.data.Dataset.from_tensor_slices(order[:kept]).batch(batch_size)

        dataset = tf.data.Dataset.range(first_epoch, EPOCH_LIMIT).flat_map(epoch_batches)
    elif shuffle:
        dataset = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        if left_out:  # The short batch is each epoch's last.
            dataset = dataset.take(count // batch_size)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(unshuffled_order(count, batch_size, fill_last_batch)).batch(batch_size)
    if max_batches is not None:
        dataset = dataset.take(max_batches)
    if share is not None:
        # Cut here, from the same batches of indices on every worker: tf.data's automatic sharding
        # rewrites the pipeline and, with the shuffle, gave workers overlapping images.
        def parts(indices: tf.Tensor) -> tf.data.Dataset:
            # In index order, as a batch is gathered: each part is then the slice of the batch that a
            # one-machine strategy (MirroredStrategy) gives the same replica.
            indices = tf.sort(indices)
            size = tf.size(indices, out_type=tf.int64)
            bounds = tf.range(share.first, share.first + share.count + 1, dtype=tf.int64) * size // share.total
            return tf.data.Dataset.from_tensor_slices((bounds[:-1], bounds[1:])).map(
                lambda start, end: indices[start:end])

        dataset = dataset.flat_map(parts)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        # One call at a time: the random layers draw from stateful seed generators, and parallel calls
        # would take the draws in a varying order (same seed, different images). Each call transforms a
        # whole batch with multi-threaded ops, and the prefetch below overlaps it with training.
        dataset = dataset.map(lambda images, labels: (augment(images), labels))
    if one_hot:
        dataset = dataset.map(lambda images, labels: (images, tf.one_hot(labels, one_hot)),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


class SplitBatches(keras.utils.PyDataset):
    """The batches of :func:`build_dataset` as a Keras ``PyDataset``: no TensorFlow needed.

    Epoch ``e``'s order is a permutation drawn from (seed, e). ``fit`` must be given
    :func:`pipeline_callbacks`: Keras numbers the epochs (initial_epoch, a restored backup) and calls a
    PyDataset's own ``on_epoch_end`` once more than there are epochs (its first batch builds the model).
    Batches are read and augmented in the training thread (one worker: Keras starts no loader thread,
    so nothing is read ahead), in order, so the augmenter's random draws come the same on every run."""

    def __init__(
        self, split: Split, batch_size: int, shuffle: bool, seed: int, augment: Callable | None,
        first_epoch: int | None, one_hot: int | None, max_batches: int | None, fill_last_batch: bool = False,
    ):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.augment, self.one_hot, self.fill_last_batch = augment, one_hot, fill_last_batch
        self.batches = math.ceil(len(split) / batch_size) if max_batches is None else max_batches
        self.epoch = first_epoch or 0
        self.order = self.epoch_order()

    def epoch_order(self) -> np.ndarray:
        if not self.shuffle:
            return unshuffled_order(len(self.split), self.batch_size, self.fill_last_batch)
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.split))

    @property
    def num_batches(self) -> int:
        return self.batches

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        if not 0 <= index < self.batches:
            raise IndexError(f"batch {index} of {self.batches}")
        images, labels = gather(self.split, self.order[index * self.batch_size: (index + 1) * self.batch_size])
        images = images.astype(np.float32)
        if self.augment is not None:
            # Left a backend tensor: on JAX it stays on the device it trains on. Taking it back to NumPy
            # waited there after each step (for a GPU still busy with the last one), and sent it back.
            images = self.augment(images)
        if self.one_hot:
            return images, np.eye(self.one_hot, dtype=np.float32)[labels]
        return images, labels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = self.epoch_order()


class EpochOrder(keras.callbacks.Callback):
    """Gives a :class:`SplitBatches` the number of the epoch ``fit`` is about to train."""

    def __init__(self, dataset: SplitBatches):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


def pipeline_callbacks(dataset: Any) -> list[keras.callbacks.Callback]:
    """What ``fit`` needs besides a training dataset of :func:`build_dataset`."""
    return [EpochOrder(dataset)] if isinstance(dataset, SplitBatches) else []
