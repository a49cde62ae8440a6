"""Both input pipelines (tf.data for TensorFlow, a Keras PyDataset for the other backends) give every
image once per epoch with its label, a seeded order per epoch, and the same epoch when resumed."""

import numpy as np
import pytest

from refinelab.data.pipeline import PIPELINES, SplitBatches, build_dataset
from refinelab.data.store import Split

from helpers import collect

pytestmark = pytest.mark.parametrize("pipeline", PIPELINES)


def epochs(dataset, count: int, batches_per_epoch: int) -> np.ndarray:
    """The labels of ``count`` epochs, one row each, as Keras' fit would draw them: a tf.data stream
    is read on (or re-iterated per pass), a PyDataset is given each epoch's number (EpochOrder)."""
    if isinstance(dataset, SplitBatches):
        rows = []
        for epoch in range(dataset.epoch, dataset.epoch + count):
            dataset.set_epoch(epoch)
            rows.append(collect(dataset)[1])
        return np.stack(rows)
    if dataset.cardinality() < 0:  # An endless stream of epochs.
        return collect(dataset, count * batches_per_epoch)[1].reshape(count, -1)
    return np.stack([collect(dataset)[1] for _ in range(count)])


def test_every_item_once_per_epoch_with_labels_aligned(pipeline):
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(23, dtype=np.int64)
    dataset = build_dataset(Split(images, labels), batch_size=5, shuffle=True, seed=1, pipeline=pipeline)
    seen_images, seen_labels = collect(dataset)
    assert seen_images.dtype == np.float32 and seen_images.shape == (23, 2, 2, 1)
    assert seen_labels.dtype == np.int64
    assert sorted(seen_labels.tolist()) == list(range(23))  # Five batches: 5 + 5 + 5 + 5 + 3, one epoch.
    np.testing.assert_array_equal(seen_images[:, 0, 0, 0], seen_labels)


def test_shuffling_is_seeded_per_epoch_and_off_for_evaluation(pipeline):
    split = Split(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50, dtype=np.int64))
    for first_epoch in (None, 0):  # Reshuffled per pass, or epochs keyed by their number.
        def draw(seed, count):
            return epochs(build_dataset(split, 8, shuffle=True, seed=seed, first_epoch=first_epoch, pipeline=pipeline),
                          count, 7)

        first, again, other = draw(7, 3), draw(7, 3), draw(8, 1)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[0], first[1])  # Each epoch its own.
        assert all(sorted(epoch) == list(range(50)) for epoch in first.tolist())
    assert collect(build_dataset(split, 8, pipeline=pipeline))[1].tolist() == list(range(50))


def test_a_stream_starting_at_epoch_k_draws_what_an_uninterrupted_one_draws_there(pipeline):
    """What resuming after a kill relies on: the order is a function of (seed, epoch)."""
    split = Split(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50, dtype=np.int64))
    uninterrupted = epochs(build_dataset(split, 8, shuffle=True, seed=7, first_epoch=0, pipeline=pipeline), 4, 7)
    resumed = epochs(build_dataset(split, 8, shuffle=True, seed=7, first_epoch=2, pipeline=pipeline), 2, 7)
    np.testing.assert_array_equal(resumed, uninterrupted[2:])


def test_max_batches_stops_early_and_never_past_one_epoch(pipeline):
    split = Split(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50, dtype=np.int64))
    assert len(collect(build_dataset(split, 8, shuffle=True, max_batches=2, pipeline=pipeline))[1]) == 16
    assert len(collect(build_dataset(split, 8, shuffle=True, max_batches=100, pipeline=pipeline))[1]) == 50


def test_a_filled_last_batch_repeats_the_last_image_in_order(pipeline):
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1)
    split = Split(images, np.arange(23, dtype=np.int64))
    batches = [keras_numpy(labels) for _, labels in build_dataset(split, 5, fill_last_batch=True, pipeline=pipeline)]
    assert [len(labels) for labels in batches] == [5] * 5  # 23 images and two repeats of the last.
    assert np.concatenate(batches).tolist() == [*range(23), 22, 22]
    with pytest.raises(ValueError, match="fill_last_batch is for unshuffled data"):
        build_dataset(split, 5, shuffle=True, fill_last_batch=True, pipeline=pipeline)


def keras_numpy(tensor) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(tensor)
