import numpy as np

from conftest import collect
from refinelab.pipeline_data import make_dataset
from refinelab.prepared import Split


def test_every_item_once_with_labels_aligned():
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(23, dtype=np.int64)
    seen_images, seen_labels = collect(make_dataset(Split(images, labels), batch_size=5, shuffle=True, seed=1))
    assert seen_images.dtype == np.float32 and seen_images.shape == (23, 2, 2, 1)
    assert sorted(seen_labels.tolist()) == list(range(23))
    np.testing.assert_array_equal(seen_images[:, 0, 0, 0], seen_labels)


def test_shuffling_is_seeded_and_off_for_evaluation():
    split = Split(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50, dtype=np.int64))
    first = collect(make_dataset(split, 8, shuffle=True, seed=7))[1]
    again = collect(make_dataset(split, 8, shuffle=True, seed=7))[1]
    other = collect(make_dataset(split, 8, shuffle=True, seed=8))[1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert collect(make_dataset(split, 8))[1].tolist() == list(range(50))
