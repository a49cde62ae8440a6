"""Augmentation ops, offline copies, online batches: each does what it says, seeded."""

import copy

import keras
import numpy as np
import pytest

from refinelab.augment.ops import CompiledAugmenter, apply_to_uint8, build_augmenter, online_augmenter
from refinelab.augment.stage import augment, preview_augmenter
from refinelab.core.errors import ParamsError
from refinelab.data.pipeline import PIPELINES, build_dataset
from refinelab.data.store import Split, load_split, load_training_set
from refinelab.params.schema import parse_params

from helpers import collect, write_prepared

RANDOM_OPS = ["rotation", "zoom", "shear", "shift", "brightness", "contrast", "noise", "cutout"]


def params_with(raw_params, **augment):
    raw = copy.deepcopy(raw_params)
    raw["augment"].update(augment)
    return parse_params(raw)


def gradient_images(count=6, size=12, channels=1):
    """Distinct, asymmetric images (no op can leave them unchanged by symmetry)."""
    rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    base = (rows * 17 + columns * 3) % 256
    images = np.stack([(base + 29 * index) % 256 for index in range(count)]).astype(np.uint8)
    return np.repeat(images[..., np.newaxis], channels, axis=-1)


def run_op(name, params, images, seed=0, online=False):
    return apply_to_uint8(build_augmenter([name], params.augment, seed, online=online), images)


def test_fixed_ops_are_exact(raw_params):
    params = params_with(raw_params)
    images = gradient_images()
    extremes = np.zeros_like(images)
    extremes[:, :6] = 255
    np.testing.assert_array_equal(run_op("invert", params, extremes), 255 - extremes)
    np.testing.assert_array_equal(run_op("invert", params, images), 255 - images)
    np.testing.assert_array_equal(run_op("rotate90", params, images), np.rot90(images, 1, axes=(1, 2)))
    np.testing.assert_array_equal(run_op("flip_horizontal", params, images), images[:, :, ::-1])
    np.testing.assert_array_equal(run_op("flip_vertical", params, images), images[:, ::-1])


def test_fixed_ops_online_transform_a_random_part_of_the_batch(raw_params):
    params = params_with(raw_params)
    images = gradient_images(count=64)
    flipped = run_op("flip_horizontal", params, images, online=True)
    changed = [not np.array_equal(after, before) for after, before in zip(flipped, images)]
    mirrored = [np.array_equal(after, before[:, ::-1]) for after, before in zip(flipped, images)]
    assert 10 < sum(changed) < 54
    assert all(changed_one == mirrored_one for changed_one, mirrored_one in zip(changed, mirrored))


@pytest.mark.parametrize("name", RANDOM_OPS)
def test_random_ops_change_images_within_range_seeded(raw_params, name):
    params = params_with(raw_params, rotation=30.0, zoom=0.3, shear=0.3, shift=0.3, noise=0.1)
    images = gradient_images(channels=3)
    # The float output, before any cast to uint8 could hide a missing clip.
    augmenter = build_augmenter([name], params.augment, seed=3, online=False)
    transformed = keras.ops.convert_to_numpy(augmenter(images.astype(np.float32)))
    assert transformed.dtype == np.float32 and transformed.min() >= 0 and transformed.max() <= 255
    first = run_op(name, params, images, seed=3)
    assert first.shape == images.shape and first.dtype == np.uint8
    assert np.abs(first.astype(int) - images).mean() > 1
    np.testing.assert_array_equal(first, run_op(name, params, images, seed=3))
    assert not np.array_equal(first, run_op(name, params, images, seed=4))


def test_cutout_erases_at_most_its_share(raw_params):
    params = params_with(raw_params, cutout=0.25)
    images = np.full((16, 20, 20, 1), 200, np.uint8)
    erased = (run_op("cutout", params, images) == 0).mean(axis=(1, 2, 3))
    assert (erased > 0).all() and (erased <= 0.25 + 1e-6).all()


def test_zero_strength_changes_nothing(raw_params):
    params = params_with(raw_params, rotation=0.0, shift=0.0)
    images = gradient_images()
    np.testing.assert_array_equal(run_op("rotation", params, images), images)
    np.testing.assert_array_equal(run_op("shift", params, images), images)


def test_offline_copies_multiply_the_set_with_labels_aligned(tmp_path, raw_params):
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3, counts=(9, 3, 3))
    source = load_split(prepared, "train")
    images, labels = source.images, source.labels
    assert labels.tolist() == [0, 1, 2] * 3
    params = params_with(raw_params, mode="offline", offline=["invert", "rotate90", ["flip_vertical", "invert"]], copies=2)

    summary = augment(params, prepared, tmp_path / "augmented", tmp_path / "figures")

    out = load_split(tmp_path / "augmented", "train")
    assert len(out) == 9 * 7 and summary["train_images"] == 63 and summary["factor"] == 7
    assert summary["offline"] == "invert,rotate90,flip_vertical+invert" and summary["online"] == ""
    np.testing.assert_array_equal(out.labels, np.tile(labels, 7))
    assert np.bincount(out.labels).tolist() == [21, 21, 21]
    np.testing.assert_array_equal(out.images[:9], images)
    np.testing.assert_array_equal(out.images[9:18], 255 - images)
    np.testing.assert_array_equal(out.images[27:36], np.rot90(images, 1, axes=(1, 2)))
    np.testing.assert_array_equal(out.images[45:54], 255 - images[:, ::-1])
    for figure in ("augmented_one_image.png", "augmented_per_class.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 1000


def test_offline_random_copies_are_seeded(tmp_path, raw_params):
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 2, counts=(8, 2, 2))

    def augmented_with(seed, name):
        raw = copy.deepcopy(raw_params)
        raw["seed"] = seed
        raw["augment"].update(mode="offline", offline=[["rotation", "noise"]], copies=2)
        augment(parse_params(raw), prepared, tmp_path / name, tmp_path / "figures")
        return load_split(tmp_path / name, "train").images

    first, again, other = augmented_with(1, "first"), augmented_with(1, "again"), augmented_with(2, "other")
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[8:], other[8:])
    assert not np.array_equal(first[8:16], first[16:24])  # Two copies, two different draws.


@pytest.mark.parametrize("mode, figures", [
    ("none", ["no_augmentation.png"]), ("online", ["augmented_one_image.png", "augmented_per_class.png"]),
])
def test_without_offline_copies_train_reads_the_prepared_split_and_nothing_is_copied(tmp_path, raw_params, mode, figures):
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 2, counts=(4, 2, 2))
    source = load_split(prepared, "train")
    summary = augment(params_with(raw_params, mode=mode), prepared, tmp_path / "augmented", tmp_path / "figures")
    assert sorted(path.name for path in (tmp_path / "augmented").iterdir()) == ["training_set.json"]
    out = load_training_set(tmp_path / "augmented", prepared)
    np.testing.assert_array_equal(out.images, source.images)
    np.testing.assert_array_equal(out.labels, source.labels)
    assert summary["train_images"] == 4 and (summary["settings"] == {}) == (mode == "none")
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == figures


def test_rotate90_on_non_square_images_is_a_params_error(tmp_path, raw_params):
    prepared = write_prepared(tmp_path / "prepared", (4, 6, 1), 2, counts=(2, 2, 2))
    with pytest.raises(ParamsError, match="rotate90 needs square images; these are 4x6"):
        augment(params_with(raw_params, mode="offline"), prepared, tmp_path / "augmented", tmp_path / "figures")
    assert not (tmp_path / "augmented").exists()


@pytest.mark.parametrize(
    "settings, factor",
    [
        ({"mode": "none", "offline": ["rotate90"], "online": ["rotate90"]}, 1),
        ({"mode": "offline", "offline": ["invert"], "online": ["rotation", "rotate90"]}, 2),
        ({"mode": "online", "offline": ["rotate90"], "online": ["rotation"]}, 1),
    ],
)
def test_rotate90_on_non_square_images_is_fine_where_its_mode_is_inactive(tmp_path, raw_params, settings, factor):
    prepared = write_prepared(tmp_path / "prepared", (4, 6, 1), 2, counts=(4, 2, 2))
    summary = augment(params_with(raw_params, **settings), prepared, tmp_path / "augmented", tmp_path / "figures")
    assert summary["train_images"] == 4 * factor
    figure = "no_augmentation.png" if settings["mode"] == "none" else "augmented_per_class.png"
    assert (tmp_path / "figures" / figure).exists()


def test_the_preview_is_the_augmenter_mode_online_would_give(raw_params):
    online = online_augmenter(params_with(raw_params, mode="online"))
    preview, label = preview_augmenter(params_with(raw_params, mode="offline"), (12, 12, 1))
    assert label == "online preview (inactive, mode offline)"
    assert preview.name == online.name == "rotation-zoom-shear-shift-flip_horizontal"  # The ops, in turn.
    assert preview_augmenter(params_with(raw_params, mode="online"), (12, 12, 1))[1] == "online"
    assert preview_augmenter(params_with(raw_params, online=["rotate90"]), (4, 6, 1)) == (None, "")
    assert preview_augmenter(params_with(raw_params, online=[]), (12, 12, 1)) == (None, "")


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_online_augmentation_changes_training_batches_only_seeded(raw_params, pipeline):
    if pipeline == "tf.data" and keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data traces the augmenter's layers into its graph: TensorFlow's backend only")
    params = params_with(raw_params, mode="online")
    split = Split(gradient_images(count=160), np.arange(160, dtype=np.int64))

    def training_epochs(augmenter):
        dataset = build_dataset(split, 8, shuffle=False, augment=augmenter, pipeline=pipeline)
        return collect(dataset), collect(dataset)

    (first_images, first_labels), (second_images, _) = training_epochs(online_augmenter(params))
    (again_images, _), _ = training_epochs(online_augmenter(params))
    assert first_images.dtype == np.float32 and first_images.min() >= 0 and first_images.max() <= 255
    np.testing.assert_array_equal(first_labels, split.labels)
    assert np.abs(first_images - split.images).mean() > 1  # Active in training...
    assert not np.allclose(first_images, second_images)  # ...drawn afresh each epoch...
    np.testing.assert_array_equal(first_images, again_images)  # ...and seeded.
    if pipeline == "pydataset" and keras.backend.backend() == "jax":
        import jax

        # Augmented where the model trains, never taken back to the host (a wait for the device each step).
        assert isinstance(build_dataset(split, 8, augment=online_augmenter(params), pipeline=pipeline)[0][0], jax.Array)
    model = keras.Sequential([keras.Input(split.images.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(160)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    dataset = build_dataset(split, 8, shuffle=True, augment=online_augmenter(params), pipeline=pipeline)
    fit = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(fit.history["loss"]).all()  # What the pipeline yields, fit takes.


def test_training_augments_training_batches_and_never_validation_ones(tmp_path, raw_params, monkeypatch):
    import refinelab.data.pipeline
    import refinelab.train.stage

    prepared = write_prepared(tmp_path / "prepared", (8, 8, 1), 2, counts=(32, 16, 16))
    calls = []

    def recording_build_dataset(split, *args, augment=None, **kwargs):
        calls.append((len(split), augment))
        return build_dataset(split, *args, augment=augment, **kwargs)

    monkeypatch.setattr(refinelab.train.stage, "build_dataset", recording_build_dataset)
    monkeypatch.setattr(refinelab.data.pipeline, "build_dataset", recording_build_dataset)  # Its predict().
    raw = copy.deepcopy(raw_params)
    raw.update(epochs=1, batch_size=16, model="smaller")
    raw["augment"].update(mode="online", online=["rotation", "flip_horizontal"])
    refinelab.train.stage.train(parse_params(raw), prepared, prepared, tmp_path / "model.keras", tmp_path / "live")

    (train_count, train_augment), = [(count, augment) for count, augment in calls if augment is not None]
    assert train_count == 32
    # The layers, which tf.data traces into its graph; on JAX one compiled function of them.
    assert isinstance(train_augment, CompiledAugmenter if keras.backend.backend() == "jax" else keras.layers.Pipeline)
    assert train_augment.name == "rotation-flip_horizontal"
    # Every other dataset (validation during training, the saved model's final validation) is clean.
    assert sorted(count for count, augment in calls if augment is None) == [16, 16]


def test_online_augmenter_only_in_online_modes(raw_params):
    assert online_augmenter(params_with(raw_params)) is None
    assert online_augmenter(params_with(raw_params, mode="offline")) is None
    assert online_augmenter(params_with(raw_params, mode="both")) is not None
    assert online_augmenter(params_with(raw_params, mode="online", online=[])) is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"online": ["rotation", "twirl"]}, "augment.online.1: Input should be 'invert'"),
        ({"mode": "sometimes"}, "augment.mode: Input should be 'none', 'offline', 'online' or 'both'"),
        ({"zoom": 1.5}, "augment.zoom: Input should be less than 1"),
        ({"rotaton": 5}, "augment.rotaton: unknown key; did you mean 'rotation'?"),
    ],
)
def test_bad_augment_params_name_the_key(raw_params, change, message):
    with pytest.raises(ParamsError) as caught:
        params_with(raw_params, **change)
    assert message in str(caught.value)


def test_integer_strengths_are_accepted(raw_params):
    # `dvc exp run -S augment.rotation=15` writes an int.
    assert params_with(raw_params, rotation=15).augment.rotation == 15


def edge_energy(images):
    images = np.asarray(images, dtype=np.float32)
    return float(np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean())


@pytest.mark.parametrize("interpolation, kept", [("nearest", 0.85), ("bilinear", None)])
def test_the_chained_geometric_ops_keep_images_sharp_only_with_nearest(raw_params, interpolation, kept):
    """Each geometric op is its own layer: bilinear resampling compounds over the chain into a blur."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 2, size=(16, 14, 14)) * 255  # Sharp 2x2-pixel blocks: lots of edges.
    images = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)[..., np.newaxis].astype(np.uint8)
    params = params_with(raw_params, interpolation=interpolation)
    augmenter = build_augmenter(["rotation", "zoom", "shear", "shift"], params.augment, seed=3, online=True)
    ratio = edge_energy(apply_to_uint8(augmenter, images)) / edge_energy(images)
    if kept is not None:
        assert ratio > kept
    else:
        assert ratio < 0.8  # The blur the default avoids.
