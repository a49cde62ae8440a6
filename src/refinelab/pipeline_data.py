"""``tf.data`` input pipelines over prepared splits (memory-mapped, gathered batch by batch)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from refinelab.prepared import Split

# Images per batch where nothing is learned (validation, evaluation, prediction): at inference a
# batch's size changes nothing but speed.
INFERENCE_BATCH = 256
EPOCH_LIMIT = 2**31 - 1  # "Endless" for a shuffled training stream.


def make_dataset(
    split: Split, batch_size: int, shuffle: bool = False, seed: int = 0, augment: Callable | None = None,
    first_epoch: int | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images in 0-255, int64 labels), read from ``split`` without copying it whole.

    Only indices are shuffled; each batch is gathered from the (memory-mapped) arrays, so a
    dataset larger than RAM streams from disk. ``augment`` (training data only: see
    ``refinelab.augmentation.online_augmenter``) maps each image batch, afresh every epoch.
    Shuffled, each pass draws a new order; with ``first_epoch`` the dataset is instead an endless stream
    of epochs from that one on, each epoch's order a function of (seed, epoch) (what resuming a killed
    run needs: fit it with ``steps_per_epoch``).
    """
    images, labels = split.images, split.labels
    count = len(labels)

    def gather(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.sort(indices)  # Sequential reads from the memory map.
        return np.ascontiguousarray(images[indices]), labels[indices]

    def load(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch_images, batch_labels = tf.numpy_function(gather, [indices], (tf.uint8, tf.int64))
        batch_images.set_shape((None, *images.shape[1:]))
        batch_labels.set_shape((None,))
        return tf.cast(batch_images, tf.float32), batch_labels

    if shuffle and first_epoch is not None:
        # A run resumed at epoch k (refinelab.resume) starts at k and sees what an uninterrupted run sees.
        def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
            epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=epoch_seed)
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        dataset = tf.data.Dataset.range(first_epoch, EPOCH_LIMIT).flat_map(epoch_batches)
    elif shuffle:
        dataset = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    else:
        dataset = tf.data.Dataset.range(count).batch(batch_size)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        # One call at a time: the random layers draw from stateful seed generators, and parallel calls
        # would take the draws in a varying order (same seed, different images). Each call transforms a
        # whole batch with multi-threaded ops, and the prefetch below overlaps it with training.
        dataset = dataset.map(lambda images, labels: (augment(images), labels))
    return dataset.prefetch(tf.data.AUTOTUNE)
