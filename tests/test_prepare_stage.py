import numpy as np
import pytest

from refinelab.core.errors import DataError
from refinelab.data.store import load_meta, load_split
from refinelab.params.schema import parse_params
from refinelab.prepare.sources import FASHION_MNIST
from refinelab.prepare.stage import prepare, split_off, split_validation, stratified_subset

from helpers import needs_fashion_mnist

CLASSES = ["a", "b", "c", "d", "e"]


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), 40)
    train, validation = split_validation(labels, 0.25, seed=3, class_names=CLASSES)
    assert len(validation) == 50 and len(train) == 150
    assert not set(train) & set(validation)
    assert np.bincount(labels[validation]).tolist() == [10] * 5
    again, _ = split_validation(labels, 0.25, seed=3, class_names=CLASSES)
    other, _ = split_validation(labels, 0.25, seed=4, class_names=CLASSES)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


@pytest.mark.parametrize("seed", range(5))
def test_a_rare_class_still_gets_an_image_on_both_sides(seed):
    """31 ants and 2 bees: a stratified test split of 7 rounds the bees' share (0.4) to none."""
    labels = np.array([0] * 31 + [1] * 2)
    kept, held_out = split_off(labels, 0.2, seed, ["ants", "bees"], "test")
    assert len(held_out) == 7 and len(kept) == 26 and not set(kept) & set(held_out)
    assert np.bincount(labels[held_out]).tolist() == [6, 1] and np.bincount(labels[kept]).tolist() == [25, 1]
    np.testing.assert_array_equal(held_out, split_off(labels, 0.2, seed, ["ants", "bees"], "test")[1])  # Seeded.


def test_a_class_of_one_image_is_named():
    labels = np.array([0] * 30 + [1])
    with pytest.raises(DataError, match="class 'bees' has 1 of them, and every class needs an image in train and one in validation"):
        split_validation(labels, 0.1, 0, ["ants", "bees"])


def test_stratified_subset_keeps_class_balance_and_caps():
    labels = np.repeat(np.arange(4), 50)
    subset = stratified_subset(labels, 40, seed=0)
    assert np.bincount(labels[subset]).tolist() == [10] * 4
    np.testing.assert_array_equal(stratified_subset(labels, 0, seed=0), np.arange(200))
    np.testing.assert_array_equal(stratified_subset(labels, 1000, seed=0), np.arange(200))


@pytest.mark.parametrize("rare", [1, 2])
def test_data_limit_keeps_a_rare_class_when_the_subset_has_room_for_every_class(rare):
    """A stratified draw of 10 from 100 + 100 + 2 gives the third class 0.1 of an image: none, and its
    metrics would vanish from that split (with 1 image sklearn cannot stratify: the plain draw)."""
    labels = np.concatenate([np.zeros(100, int), np.ones(100, int), np.full(rare, 2)])
    for seed in range(5):
        subset = stratified_subset(labels, 10, seed=seed)
        assert len(subset) == 10 and len(set(subset)) == 10
        assert np.bincount(labels[subset], minlength=3).min() >= 1, seed
    # Fewer places than classes: nothing to guarantee, the size still holds.
    assert len(stratified_subset(labels, 2, seed=0)) == 2


@needs_fashion_mnist
def test_prepare_writes_limited_splits_and_leaves_test_untouched(tmp_path, tiny_raw_params):
    params = parse_params(tiny_raw_params)
    out = tmp_path / "prepared"
    meta = prepare(params, out)
    assert meta["counts"] == {"train": 200, "validation": 200, "test": 200}
    assert meta["class_names"][0] == "T-shirt/top" and len(meta["class_names"]) == 10
    assert load_meta(out) == meta
    for name in ("train", "validation", "test"):
        split = load_split(out, name)
        assert split.images.shape == (200, 28, 28, 1) and split.images.dtype == np.uint8
        assert np.bincount(split.labels, minlength=10).tolist() == [20] * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # No temporary folders left behind.

    # Test is a stratified subset of the official test set, as published: each image is one of its
    # images, unaltered and with its label, none twice, and none of them leaked into train or validation.
    official = FASHION_MNIST.load().splits["test"]
    official_labels = {image.tobytes(): int(label) for image, label in zip(official.images, official.labels)}
    test = load_split(out, "test")
    test_keys = [image.tobytes() for image in test.images]
    assert [official_labels.get(key) for key in test_keys] == test.labels.tolist()
    assert len(set(test_keys)) == len(test_keys)
    for name in ("train", "validation"):
        assert not set(test_keys) & {image.tobytes() for image in load_split(out, name).images}


@needs_fashion_mnist
def test_prepare_is_deterministic(tmp_path, tiny_raw_params):
    params = parse_params(tiny_raw_params)
    prepare(params, tmp_path / "a")
    prepare(params, tmp_path / "b")
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(load_split(tmp_path / "a", name).images, load_split(tmp_path / "b", name).images)


@needs_fashion_mnist
def test_prepare_resizes_and_converts_colour_when_asked(tmp_path, tiny_raw_params):
    tiny_raw_params["data"].update(image_size=[32, 32], color_mode="rgb", limit=20)
    meta = prepare(parse_params(tiny_raw_params), tmp_path / "prepared")
    assert meta["image_shape"] == [32, 32, 3]
    assert meta["preprocessing"] == {"image_size": [32, 32], "color_mode": "rgb", "resize": "crop"}
    images = load_split(tmp_path / "prepared", "test").images
    assert images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # Grayscale expanded to equal channels.
