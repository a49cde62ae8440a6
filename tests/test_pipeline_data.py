import numpy as np

from conftest import collect
from refinelab.pipeline_data import make_dataset
from refinelab.prepared import Split


def test_every_item_once_per_epoch_with_labels_aligned():
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(23, dtype=np.int64)
    seen_images, seen_labels = collect(make_dataset(Split(images, labels), batch_size=5, shuffle=True, seed=1))
    assert seen_images.dtype == np.float32 and seen_images.shape == (23, 2, 2, 1)
    assert sorted(seen_labels.tolist()) == list(range(23))  # Five batches: 5 + 5 + 5 + 5 + 3, one epoch.
    np.testing.assert_array_equal(seen_images[:, 0, 0, 0], seen_labels)


def test_shuffling_is_seeded_per_epoch_and_off_for_evaluation():
    split = Split(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50, dtype=np.int64))
    for first_epoch in (None, 0):  # Reshuffled per pass, or a stream of epochs keyed by their number.
        def epochs(seed, count):
            dataset = make_dataset(split, 8, shuffle=True, seed=seed, first_epoch=first_epoch)
            if first_epoch is None:
                return np.stack([collect(dataset)[1] for _ in range(count)])
            return collect(dataset, count * 7)[1].reshape(count, 50)  # 7 batches an epoch.

        first, again, other = epochs(7, 3), epochs(7, 3), epochs(8, 1)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[0], first[1])  # Each epoch its own.
        assert all(sorted(epoch) == list(range(50)) for epoch in first.tolist())
    assert collect(make_dataset(split, 8))[1].tolist() == list(range(50))


def test_a_stream_starting_at_epoch_k_draws_what_an_uninterrupted_one_draws_there():
    """What resuming after a kill relies on: the order is a function of (seed, epoch)."""
    split = Split(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50, dtype=np.int64))
    uninterrupted = collect(make_dataset(split, 8, shuffle=True, seed=7, first_epoch=0), 4 * 7)[1].reshape(4, 50)
    resumed = collect(make_dataset(split, 8, shuffle=True, seed=7, first_epoch=2), 2 * 7)[1].reshape(2, 50)
    np.testing.assert_array_equal(resumed, uninterrupted[2:])
