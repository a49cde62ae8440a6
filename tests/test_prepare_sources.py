"""Every dataset registry entry and every bad-input case, on real files written into tmp dirs."""

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from refinelab.core.environment import CACHE_ENV
from refinelab.core.errors import DataError, ParamsError
from refinelab.data.store import load_meta, load_split
from refinelab.params.schema import parse_params
from refinelab.prepare import sources as datasets
from refinelab.prepare.download import PublishedFile
from refinelab.prepare.sources import DATASETS, IdxDataset
from refinelab.prepare.stage import prepare

from helpers import SHARED_DATASETS, write_idx

CHIHUAHUA_MUFFIN = SHARED_DATASETS / "chihuahua-muffin"
SIGNS_TEST = SHARED_DATASETS / "signs" / "test_signs.h5"
needs_shared = pytest.mark.skipif(
    not SHARED_DATASETS.is_dir(), reason=f"{SHARED_DATASETS} is absent (only the project's own machines have it)"
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Downloads and extracted archives go to the test's own cache, never the user's."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_image(path: Path, value: int, size=(12, 12), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if mode == "RGB" else size
    Image.fromarray(np.full(shape, value, np.uint8)).convert(mode).save(path)
    return path


def prepare_with(tmp_path, raw_params, dataset, **sections):
    params = dict(raw_params, dataset=dataset)
    params["data"] = dict(raw_params["data"], **sections.pop("data", {}))
    params.update(sections)
    out = tmp_path / "prepared"
    meta = prepare(parse_params(params), out, tmp_path / "metrics" / "data.json", tmp_path / "metrics" / "data")
    report = json.loads((tmp_path / "metrics" / "data.json").read_text())
    return meta, report, out


def per_class(report, split):
    return report["splits"][split]["per_class"]


# --- the registry -----------------------------------------------------------------------------

def test_every_kind_of_dataset_is_registered():
    assert set(DATASETS.names()) == {"fashion_mnist", "mnist", "digits", "h5", "image_folder", "filename_labels"}


def test_an_unknown_dataset_lists_the_valid_names(raw_params):
    with pytest.raises(ParamsError, match="unknown dataset 'cifar'.*digits, fashion_mnist, filename_labels, h5"):
        parse_params(dict(raw_params, dataset="cifar"))


def test_mnist_is_registered_with_the_published_files():
    names = [published.name for published in datasets.MNIST.files]
    assert names == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert datasets.MNIST.files[2].md5 == "9fb629c4189551a2d022fa330f9573f3"
    assert datasets.MNIST.files[2].content_md5 == "2646ac647ad5339dbf082846283269ea"
    assert "https://ossci-datasets.s3.amazonaws.com/mnist" in datasets.MNIST.urls
    assert datasets.MNIST.class_names == tuple("0123456789")


@pytest.fixture
def idx_upstream(tmp_path):
    """An MNIST-like dataset of generated IDX files served from a file:// 'upstream' folder."""
    rng = np.random.default_rng(0)
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    arrays = {
        "tr-x.gz": rng.integers(0, 255, (30, 6, 6), dtype=np.uint8), "tr-y.gz": np.arange(30, dtype=np.uint8) % 3,
        "te-x.gz": rng.integers(0, 255, (9, 6, 6), dtype=np.uint8), "te-y.gz": np.arange(9, dtype=np.uint8) % 3,
    }
    files = []
    for name, array in arrays.items():
        path = write_idx(upstream / name, array)
        content = gzip.decompress(path.read_bytes())
        files.append(PublishedFile(name, hashlib.md5(path.read_bytes()).hexdigest(), hashlib.md5(content).hexdigest()))
    return upstream, tuple(files), arrays


def test_the_shared_idx_path_downloads_verifies_and_decodes(idx_upstream, tmp_path, monkeypatch):
    upstream, files, arrays = idx_upstream
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path / "keras")
    dataset = IdxDataset("tiny", files, tmp_path / "no-system-dir", (upstream.as_uri(),), ("a", "b", "c"))
    raw = dataset.load()
    np.testing.assert_array_equal(raw.splits["train"].images[..., 0], arrays["tr-x.gz"])
    np.testing.assert_array_equal(raw.splits["test"].labels, arrays["te-y.gz"])
    assert (tmp_path / "keras" / "tiny" / "te-x.gz").is_file()

    (tmp_path / "keras" / "tiny" / "te-y.gz").write_bytes(gzip.compress(bytes(range(9))))
    with pytest.raises(DataError, match="te-y.gz: checksum mismatch"):
        dataset.load()


def test_the_idx_path_rejects_labels_outside_the_classes(idx_upstream, tmp_path, monkeypatch):
    upstream, files, _ = idx_upstream
    monkeypatch.setenv(datasets.MIRROR_ENV, str(upstream))
    with pytest.raises(DataError, match="label 2 is outside the 2 classes"):
        IdxDataset("tiny", files, tmp_path, (), ("a", "b")).load()


def test_digits_are_offline_scaled_and_split_for_test_by_fraction(tmp_path, raw_params):
    meta, report, out = prepare_with(tmp_path, raw_params, "digits", data={"test_split": 0.25, "validation_split": 0.1})
    assert meta["image_shape"] == [8, 8, 1] and meta["class_names"] == list("0123456789")
    counts = {split: report["splits"][split]["images"] for split in ("train", "validation", "test")}
    assert sum(counts.values()) == 1797 and counts["test"] == 450
    test = load_split(out, "test")
    from sklearn.datasets import load_digits

    expected = 0.25 * np.bincount(load_digits().target)
    assert test.images.max() == 255
    assert np.all(np.abs(np.bincount(test.labels) - expected) <= 1)  # Stratified: a quarter of each class.
    assert [p.name for p in sorted((tmp_path / "metrics" / "data").iterdir())] == [
        "samples_test.png", "samples_train.png", "samples_validation.png"]


# --- HDF5 -------------------------------------------------------------------------------------

def write_h5(path: Path, split: str, images, labels, classes=None, **extra) -> Path:
    with h5py.File(path, "w") as handle:
        handle[f"{split}_set_x"] = images
        handle[f"{split}_set_y"] = labels
        if classes is not None:
            handle["list_classes"] = classes
        for key, value in extra.items():
            handle[key] = value
    return path


def signs_like(count, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (count, 8, 8, 3), dtype=np.uint8), np.arange(count) % classes


def test_h5_train_and_test_files_with_class_names_from_the_file(tmp_path, raw_params):
    train = write_h5(tmp_path / "train.h5", "train", *signs_like(30), classes=np.array([b"cat", b"dog", b"fox"]))
    test = write_h5(tmp_path / "test.h5", "test", *signs_like(9, seed=1), classes=np.array([b"cat", b"dog", b"fox"]))
    meta, report, out = prepare_with(tmp_path, raw_params, "h5", h5={"train": str(train), "test": str(test)})
    assert meta["class_names"] == ["cat", "dog", "fox"]
    assert per_class(report, "test") == {"cat": 3, "dog": 3, "fox": 3}
    assert report["splits"]["train"]["images"] + report["splits"]["validation"]["images"] == 30
    np.testing.assert_array_equal(load_split(out, "test").images, signs_like(9, seed=1)[0])
    assert report["source"]["files"]["test"]["sha256"] == hashlib.sha256(test.read_bytes()).hexdigest()


def test_h5_with_one_file_is_split_three_ways_and_keys_are_configurable(tmp_path, raw_params):
    images, labels = signs_like(40, classes=2)
    with h5py.File(tmp_path / "all.h5", "w") as handle:
        handle["pixels"], handle["target"] = images[..., 0], labels  # Grayscale, no channel axis.
    meta, report, _ = prepare_with(
        tmp_path, raw_params, "h5",
        h5={"train": str(tmp_path / "all.h5"), "test": None, "x_key": "pixels", "y_key": "target"},
        data={"test_split": 0.25, "validation_split": 0.2},
    )
    assert meta["class_names"] == ["0", "1"] and meta["image_shape"] == [8, 8, 1]
    assert {split: report["splits"][split]["images"] for split in ("train", "validation", "test")} == {
        "train": 24, "validation": 6, "test": 10}


@pytest.mark.parametrize(
    "problem, message",
    [
        ("missing key", r"no key 'train_set_y' \(the file has: list_classes, train_set_x\)"),
        ("count mismatch", "train_set_x has 12 images but train_set_y has 11 labels"),
        ("label outside list_classes", "label 3 is outside the 3 classes"),
        ("not hdf5", "not a readable HDF5 file"),
    ],
)
def test_h5_bad_input_names_the_file_and_key(tmp_path, raw_params, problem, message):
    path = tmp_path / "bad.h5"
    images, labels = signs_like(12)
    if problem == "missing key":
        with h5py.File(path, "w") as handle:
            handle["train_set_x"], handle["list_classes"] = images, np.arange(3)
    elif problem == "count mismatch":
        write_h5(path, "train", images, labels[:11])
    elif problem == "label outside list_classes":
        write_h5(path, "train", images, np.where(labels == 2, 3, labels), classes=np.arange(3))
    else:
        path.write_bytes(b"<html>not the file</html>")
    with pytest.raises(DataError, match=message) as error:
        prepare_with(tmp_path, raw_params, "h5", h5={"train": str(path), "test": None})
    assert str(path) in str(error.value)
    assert not (tmp_path / "prepared").exists()


def test_h5_train_and_test_of_different_sizes_need_image_size(tmp_path, raw_params):
    train = write_h5(tmp_path / "train.h5", "train", *signs_like(12))
    test = write_h5(tmp_path / "test.h5", "test", np.zeros((6, 4, 4, 3), np.uint8), np.arange(6) % 3)
    with pytest.raises(DataError, match="test split: images are 4x4 but train's are 8x8; set data.image_size"):
        prepare_with(tmp_path, raw_params, "h5", h5={"train": str(train), "test": str(test)})


def test_h5_files_with_different_class_lists_are_an_error(tmp_path, raw_params):
    train = write_h5(tmp_path / "train.h5", "train", *signs_like(12), classes=np.array([b"a", b"b", b"c"]))
    test = write_h5(tmp_path / "test.h5", "test", *signs_like(6), classes=np.array([b"a", b"b", b"x"]))
    with pytest.raises(DataError, match=f"{test}: list_classes \\['a', 'b', 'x'\\] differs from {train}'s"):
        prepare_with(tmp_path, raw_params, "h5", h5={"train": str(train), "test": str(test)})


@pytest.mark.parametrize("key, template", [("x_key", "{split}_set_x_{size}"), ("y_key", "{0}_y"), ("x_key", "x_{split")])
def test_h5_key_templates_allow_only_split(tmp_path, raw_params, key, template):
    train = write_h5(tmp_path / "train.h5", "train", *signs_like(12))
    with pytest.raises(ParamsError, match=rf"h5\.{key}: .* the only placeholder allowed is \{{split\}}"):
        prepare_with(tmp_path, raw_params, "h5", h5={"train": str(train), "test": None, key: template})
    assert not (tmp_path / "prepared").exists()


def test_h5_needs_a_file(tmp_path, raw_params):
    with pytest.raises(ParamsError, match="h5: set h5.train and/or h5.test"):
        prepare_with(tmp_path, raw_params, "h5", h5={"train": None, "test": None})


# --- folders ----------------------------------------------------------------------------------

def class_tree(root: Path, per_class=6, classes=("ant", "bee"), suffixes=(".jpg", ".png", ".bmp", ".gif")) -> Path:
    for label, name in enumerate(classes):
        for index in range(per_class):
            write_image(root / name / f"{index}{suffixes[index % len(suffixes)]}", 60 + 120 * label)
    return root


def test_image_folder_one_tree_split_by_fraction(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    (root / "ant" / "notes.txt").write_text("not an image")
    meta, report, out = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)},
                                     data={"test_split": 0.2, "validation_split": 0.25})
    assert meta["class_names"] == ["ant", "bee"] and meta["image_shape"] == [12, 12, 3]
    assert per_class(report, "test") == {"ant": 2, "bee": 2}
    assert per_class(report, "train") == {"ant": 6, "bee": 6}
    assert report["skipped"] == [{"file": str(root / "ant" / "notes.txt"), "reason": "not an image file (by its extension)"}]
    train = load_split(out, "train")
    assert np.all(train.images[train.labels == 0] < 100) and np.all(train.images[train.labels == 1] > 140)


def test_image_folder_pre_split_folders_are_kept(tmp_path, raw_params):
    root = tmp_path / "dogs-vs-cats"
    class_tree(root / "train", per_class=4, classes=("cat", "dog"))
    class_tree(root / "valid", per_class=2, classes=("cat", "dog"))
    class_tree(root / "test", per_class=3, classes=("cat", "dog"))
    _, report, _ = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)},
                                data={"color_mode": "grayscale"})
    assert [per_class(report, split) for split in ("train", "validation", "test")] == [
        {"cat": 4, "dog": 4}, {"cat": 2, "dog": 2}, {"cat": 3, "dog": 3}]
    assert report["image_shape"] == [12, 12, 1]


def test_image_folder_empty_class_and_unknown_test_class_are_errors(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos")
    (root / "wasp").mkdir()
    with pytest.raises(DataError, match=f"{root / 'wasp'}: empty class folder"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    split_root = tmp_path / "split"
    class_tree(split_root / "train")
    class_tree(split_root / "test", classes=("ant", "wasp"))
    with pytest.raises(DataError, match=r"class folders \['wasp'\] are not in train's classes"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(split_root)})


def flat_folder(root: Path, per_class=5) -> Path:
    for index in range(per_class):
        write_image(root / f"chihuahua-{index}.jpg", 40)
        write_image(root / f"muffin_seen_{index}.png", 200)
        write_image(root / "test_set" / f"chihuahua_unseen_{index}.jpg", 40)
        write_image(root / "test_set" / f"muffin_unseen_{index}.jpg", 200)
    write_image(root / "full.jpg", 128, size=(24, 24))  # The collage: an image that carries no label.
    (root / "README.md").write_text("# about")
    return root


def test_image_folder_on_a_flat_folder_points_to_filename_labels(tmp_path, raw_params):
    """chihuahua-muffin's layout: photos named by class, and one subfolder, which is not a class."""
    root = flat_folder(tmp_path / "cm")
    with pytest.raises(DataError, match=r"only the class folder 'test_set', and a classifier needs a folder of "
                                        r"images for each of two classes or more; its 11 images outside any class "
                                        r"folder are not used \(for classes named in the file names, use "
                                        r"dataset: filename_labels\)"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    assert not (tmp_path / "prepared").exists()
    with pytest.raises(DataError, match="no class folders"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(tmp_path / "cm" / "test_set")})


def test_image_folder_reports_images_outside_the_class_folders(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    write_image(root / "cover.jpg", 128)
    _, report, _ = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    assert report["skipped"] == [{"file": str(root / "cover.jpg"), "reason": "not in a class folder"}]


@pytest.mark.parametrize("dataset, section, key", [
    ("h5", {"h5": {"train": "{here}", "test": "{gone}"}}, "h5.test"),
    ("image_folder", {"image_folder": {"path": "file://{gone}", "sha256": "0" * 64}}, "image_folder.path"),
    ("filename_labels", {"filename_labels": {"path": "{gone}", "classes": ["a", "b"]}}, "filename_labels.path"),
])
def test_a_dataset_path_that_does_not_exist_is_named_by_its_key(tmp_path, raw_params, dataset, section, key):
    places = {"here": str(tmp_path), "gone": str(tmp_path / "gone")}
    filled = json.loads(json.dumps(section).replace("{here}", places["here"]).replace("{gone}", places["gone"]))
    params = parse_params(dict(raw_params, dataset=dataset, **filled))
    with pytest.raises(ParamsError, match=f"datasets.yaml: {key}: .*gone: no such file or folder"):
        datasets.check_locations(params)
    # Present paths, and servers' URLs (prepare fetches them), pass.
    fine = json.loads(json.dumps(section).replace("{gone}", places["here"]).replace("{here}", places["here"]))
    datasets.check_locations(parse_params(dict(raw_params, dataset=dataset, **fine)))
    for elsewhere, sha256 in (("https://example.com/photos.zip", "0" * 64), ("photos/not/in/this/copy", None)):
        # Prepare's to fetch or find.
        folder = {"path": elsewhere, "sha256": sha256}
        datasets.check_locations(parse_params(dict(raw_params, dataset="image_folder", image_folder=folder)))


@pytest.mark.parametrize("dataset, section, key", [
    ("h5", {"h5": {"train": "data/raw/train.h5", "test": "https://example.com/test.h5"}}, "h5.test"),
    ("image_folder", {"image_folder": {"path": "file:///srv/photos.zip"}}, "image_folder.path"),
])
def test_a_url_without_its_sha256_is_refused_before_any_stage_runs(raw_params, dataset, section, key):
    params = parse_params(dict(raw_params, dataset=dataset, **section))
    with pytest.raises(ParamsError) as error:
        datasets.check_locations(params)
    name = section[dataset].get("test", section[dataset].get("path")).rsplit("/", 1)[1]
    assert str(error.value).startswith(f"datasets.yaml: {key}: ") and f"data/raw/{name}" in str(error.value)


def test_a_dataset_of_one_class_is_an_error(tmp_path, raw_params):
    root = flat_folder(tmp_path / "cm")
    with pytest.raises(DataError, match=r"filename_labels: 1 class \('chihuahua'\); a classifier needs two or more"):
        prepare_with(tmp_path, raw_params, "filename_labels",
                     filename_labels={"path": str(root), "classes": ["chihuahua"]})


def test_filename_labels_skips_and_reports_unlabelled_files(tmp_path, raw_params):
    root = flat_folder(tmp_path / "cm")
    meta, report, out = prepare_with(tmp_path, raw_params, "filename_labels",
                                     filename_labels={"path": str(root), "classes": ["chihuahua", "muffin"]},
                                     data={"validation_split": 0.2})
    assert meta["class_names"] == ["chihuahua", "muffin"]
    assert per_class(report, "test") == {"chihuahua": 5, "muffin": 5}
    assert per_class(report, "train") == {"chihuahua": 4, "muffin": 4}
    assert {Path(entry["file"]).name: entry["reason"] for entry in report["skipped"]} == {
        "README.md": "not an image file (by its extension)", "full.jpg": "file name matches no class"}
    assert report["skipped_files"] == 2
    test = load_split(out, "test")
    assert np.all(test.images[test.labels == 0] < 100) and np.all(test.images[test.labels == 1] > 140)


def test_filename_labels_by_regex_with_classes_from_the_names(tmp_path, raw_params):
    root = flat_folder(tmp_path / "cm")
    meta, report, _ = prepare_with(
        tmp_path, raw_params, "filename_labels",
        filename_labels={"path": str(root), "classes": [], "pattern": r"(chihuahua|muffin)[-_]", "test_dir": None},
        data={"test_split": 0.2},
    )
    assert meta["class_names"] == ["chihuahua", "muffin"]
    assert sum(report["splits"][split]["images"] for split in ("train", "validation", "test")) == 10


def test_filename_labels_by_regex_a_test_class_not_in_train_is_named(tmp_path, raw_params):
    root = flat_folder(tmp_path / "cm")
    write_image(root / "test_set" / "blueberry_unseen_0.jpg", 90)
    with pytest.raises(DataError) as error:
        prepare_with(tmp_path, raw_params, "filename_labels",
                     filename_labels={"path": str(root), "classes": [], "pattern": r"(\w+?)[-_]", "test_dir": "test_set"})
    assert str(error.value) == (
        f"{root / 'test_set'}: files of classes ['blueberry'] that are not in train's classes "
        "['chihuahua', 'muffin']: blueberry_unseen_0.jpg"
    )
    assert not (tmp_path / "prepared").exists()


def test_filename_labels_a_class_with_no_files_is_an_error(tmp_path, raw_params):
    root = flat_folder(tmp_path / "cm")
    with pytest.raises(DataError, match=r"no images for classes \['blueberry'\]"):
        prepare_with(tmp_path, raw_params, "filename_labels",
                     filename_labels={"path": str(root), "classes": ["chihuahua", "muffin", "blueberry"]})


def test_filename_labels_pattern_is_validated_up_front(raw_params):
    with pytest.raises(ParamsError, match="needs a group capturing the class"):
        parse_params(dict(raw_params, filename_labels={"pattern": "chihuahua.*"}))
    with pytest.raises(ParamsError, match="not a valid regex"):
        parse_params(dict(raw_params, filename_labels={"pattern": "(unclosed"}))


# --- bad images, sizes, atomicity -------------------------------------------------------------

def test_a_corrupt_image_fails_naming_it_and_writes_nothing(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    broken = root / "bee" / "broken.jpg"
    broken.write_bytes((root / "bee" / "0.jpg").read_bytes()[:60])  # A truncated JPEG.
    with pytest.raises(DataError, match=f"{broken}: not a readable image.*on_bad_image: skip"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photos"]  # No half-written output.


def test_an_empty_image_file_is_named_as_empty(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    (root / "bee" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as raised:
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    assert str(raised.value) == (f"{root / 'bee' / 'empty.jpg'}: not a readable image (an empty file, 0 bytes); "
                                 "set data.on_bad_image: skip to leave such files out")


def test_the_size_log_line_counts_every_other_size(tmp_path, caplog):
    from refinelab.prepare.sources import SplitSource
    from refinelab.prepare.stage import native_shape

    files = [write_image(tmp_path / f"{index}.png", 9) for index in range(4)]
    files += [write_image(tmp_path / f"odd{index}.png", 9, size=(12, 13 + index)) for index in range(7)]
    with caplog.at_level("INFO", logger="refinelab.prepare.stage"):
        assert native_shape({"train": SplitSource(labels=np.zeros(11, np.int64), files=tuple(files))}, None) == (12, 12, 3)
    assert ("4 of 11 images are 12x12; the other 7 are of 7 other sizes: 12x13 (1), 12x14 (1), 12x15 (1), "
            "12x16 (1), 12x17 (1), and 2 sizes more") in caplog.text


def test_a_corrupt_image_is_skipped_and_counted_when_asked(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    (root / "bee" / "empty.png").write_bytes(b"")
    meta, report, _ = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)},
                                   data={"on_bad_image": "skip"})
    assert report["bad_images"] == 1 and report["bad_image_files"][0]["file"] == str(root / "bee" / "empty.png")
    assert sum(meta["counts"].values()) == 20


def test_images_of_another_size_need_image_size(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos")
    odd = write_image(root / "bee" / "wide.png", 90, size=(12, 20))
    with pytest.raises(DataError, match=f"{odd}: 12x20 pixels, but most of the dataset's training images are 12x12; set data.image_size"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    meta, _, out = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)},
                                data={"image_size": [6, 6], "resize": "pad"})
    assert load_split(out, "train").images.shape[1:] == (6, 6, 3)
    assert load_meta(out)["preprocessing"] == {"image_size": [6, 6], "color_mode": "rgb", "resize": "pad"}


# --- archives by URL ------------------------------------------------------------------------

def archive(root: Path, destination: Path) -> Path:
    if destination.suffix == ".zip":
        with zipfile.ZipFile(destination, "w") as bundle:
            for path in sorted(root.rglob("*")):
                bundle.write(path, Path(root.name) / path.relative_to(root))
    else:
        with tarfile.open(destination, "w:gz") as bundle:
            bundle.add(root, arcname=root.name)
    return destination


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_a_file_url_archive_is_verified_cached_and_extracted(tmp_path, raw_params, private_cache, suffix):
    packed = archive(class_tree(tmp_path / "photos"), tmp_path / f"photos{suffix}")
    shutil.rmtree(tmp_path / "photos")
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()
    section = {"path": packed.as_uri(), "sha256": digest}
    meta, report, _ = prepare_with(tmp_path, raw_params, "image_folder", image_folder=section)
    assert meta["class_names"] == ["ant", "bee"] and report["source"]["sha256"] == digest
    assert sum(meta["counts"].values()) == 12

    packed.unlink()  # Cached: a second prepare needs no download.
    assert prepare_with(tmp_path, raw_params, "image_folder", image_folder=section)[0]["counts"] == meta["counts"]


def test_a_file_url_archive_with_the_wrong_sha256_leaves_nothing(tmp_path, raw_params, private_cache):
    packed = archive(class_tree(tmp_path / "photos"), tmp_path / "photos.tar.gz")
    with pytest.raises(DataError, match=f"{packed.as_uri()}: checksum mismatch: SHA-256 [0-9a-f]{{64}} but expected 0{{64}}"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": packed.as_uri(), "sha256": "0" * 64})
    assert [path for path in private_cache.rglob("*") if path.is_file()] == []
    assert not (tmp_path / "prepared").exists()


def test_a_missing_folder_is_named(tmp_path, raw_params):
    with pytest.raises(DataError, match="nowhere/photos: no such file or folder"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(tmp_path / "nowhere/photos")})


def test_the_split_writer_output_is_a_plain_npy(tmp_path):
    from refinelab.data.store import SplitWriter

    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    with SplitWriter(tmp_path, "train", (4, 4, 3)) as writer:
        writer.append(images[:2], np.array([0, 1]))
        writer.append(images[2:], np.array([1, 0, 1]))
    np.testing.assert_array_equal(np.load(tmp_path / "train_images.npy"), images)
    np.testing.assert_array_equal(np.load(tmp_path / "train_labels.npy"), [0, 1, 1, 0, 1])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["train_images.npy", "train_labels.npy"]


# --- the real datasets in ../shared -------------------------------------------------------

@needs_shared
def test_chihuahua_muffin_counts_match_its_source_md(tmp_path, raw_params):
    meta, report, _ = prepare_with(
        tmp_path, raw_params, "filename_labels",
        filename_labels={"path": str(CHIHUAHUA_MUFFIN), "classes": ["chihuahua", "muffin"], "test_dir": "test_set"},
        data={"image_size": [16, 16], "validation_split": 0.1},
    )
    train_plus_validation = {
        name: per_class(report, "train")[name] + per_class(report, "validation")[name] for name in meta["class_names"]
    }
    assert train_plus_validation == {"chihuahua": 13, "muffin": 13}  # SOURCE.md: 13 + 13 train
    assert per_class(report, "test") == {"chihuahua": 7, "muffin": 7}  # SOURCE.md: 7 + 7 test
    skipped = {Path(entry["file"]).name: entry["reason"] for entry in report["skipped"]}
    assert skipped == {"full.jpg": "file name matches no class", "SOURCE.md": "not an image file (by its extension)"}


@needs_shared
def test_signs_test_file_alone_is_split_three_ways(tmp_path, raw_params):
    meta, report, out = prepare_with(
        tmp_path, raw_params, "h5", h5={"train": None, "test": str(SIGNS_TEST)},
        data={"test_split": 0.25, "validation_split": 0.1},
    )
    assert meta["class_names"] == ["0", "1", "2", "3", "4", "5"] and meta["image_shape"] == [64, 64, 3]
    totals = {name: sum(per_class(report, split)[name] for split in ("train", "validation", "test"))
              for name in meta["class_names"]}
    assert totals == {str(digit): 20 for digit in range(6)}  # SOURCE.md: 20 per class
    assert per_class(report, "test") == {str(digit): 5 for digit in range(6)}
    assert report["source"]["files"]["test"]["sha256"] == (
        "539fb746ed9e947eb244cfca73f4d1b03f9bf5524d609eeed2cd76ddb1b179be")


# --- bad bytes: every case ends in the project's own error, naming the file or key -------------

def test_one_greyscale_file_sorted_first_does_not_make_a_colour_folder_grey(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    write_image(root / "ant" / "000_grey.png", 90, mode="L")  # Sorted before every colour photo.
    meta, _, out = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    assert meta["image_shape"] == [12, 12, 3] and meta["preprocessing"]["color_mode"] == "rgb"
    # All grey: grey. Set explicitly: as set.
    grey = class_tree(tmp_path / "grey", per_class=10)
    for path in grey.rglob("*.*"):
        Image.open(path).convert("L").save(path)
    assert prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(grey)})[0]["image_shape"][-1] == 1
    meta, *_ = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)},
                            data={"color_mode": "grayscale"})
    assert meta["image_shape"][-1] == 1


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from refinelab.prepare.images import open_image

    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    np.testing.assert_array_equal(np.asarray(open_image(path)), [[0, 1, 128, 255]])


def corrupt_bmp(path: Path) -> Path:
    """About 100 bytes of BMP whose header claims 100,000 x 100,000 pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="BMP")
    data = bytearray(buffer.getvalue()[:100])
    data[18:22] = data[22:26] = (100_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["bomb header", "LAB TIFF named .png", "truncated PNG", "text named .gif"])
def test_every_undecodable_image_is_skipped_when_asked_and_named_when_not(tmp_path, raw_params, kind):
    root = class_tree(tmp_path / "photos", per_class=10)
    bad = root / "bee" / {"bomb header": "bomb.bmp", "LAB TIFF named .png": "lab.png",
                          "truncated PNG": "cut.png", "text named .gif": "notes.gif"}[kind]
    if kind == "bomb header":
        corrupt_bmp(bad)
    elif kind == "LAB TIFF named .png":
        Image.new("LAB", (12, 12)).save(bad, format="TIFF")
    elif kind == "truncated PNG":
        bad.write_bytes((root / "bee" / "1.png").read_bytes()[:40])
    else:
        bad.write_text("not an image")
    if kind == "LAB TIFF named .png":  # Decodable after all: converted to RGB like any photo.
        meta, *_ = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
        assert sum(meta["counts"].values()) == 21
        return
    with pytest.raises(DataError, match=f"{bad}: (too large to decode safely|not a readable image)"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})
    _, report, _ = prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)},
                                data={"on_bad_image": "skip"})
    assert [entry["file"] for entry in report["bad_image_files"]] == [str(bad)]


def test_nan_in_hdf5_float_images_names_the_key_and_index(tmp_path, raw_params):
    images = np.random.default_rng(0).random((12, 8, 8, 3)).astype(np.float32)
    images[7, 3, 2, 1] = np.nan
    path = write_h5(tmp_path / "floats.h5", "train", images, np.arange(12) % 3)
    with pytest.raises(DataError, match=r"floats.h5: train_set_x\[7\] holds NaN or infinite values"):
        prepare_with(tmp_path, raw_params, "h5", h5={"train": str(path), "test": None})


@pytest.mark.parametrize("key", ["train_set_x", "train_set_y"])
def test_hdf5_scalar_datasets_are_named(tmp_path, raw_params, key):
    images, labels = signs_like(12)
    values = {"train_set_x": images, "train_set_y": labels, key: 5}
    path = tmp_path / "scalar.h5"
    with h5py.File(path, "w") as handle:
        for name, value in values.items():
            handle[name] = value
    with pytest.raises(DataError, match=f"scalar.h5: {key} is a single value"):
        prepare_with(tmp_path, raw_params, "h5", h5={"train": str(path), "test": None})


def test_corrupt_gzip_and_overflowing_idx_headers_are_data_errors(tmp_path):
    from refinelab.prepare.idx import decode_idx, read_idx

    corrupt = tmp_path / "train-images-idx3-ubyte.gz"
    corrupt.write_bytes(gzip.compress(b"\x00" * 1000)[:12] + b"garbage that is not deflate data" * 4)
    with pytest.raises(DataError, match=f"{corrupt}: corrupt gzip data"):
        read_idx(corrupt)
    huge = bytes([0, 0, 0x08, 4]) + b"\xff\xff\xff\xff" * 4 + b"\x00" * 16
    with pytest.raises(DataError, match="IDX header declares shape"):
        decode_idx(huge, "huge.idx")


def test_one_huge_image_sorted_first_is_the_one_blamed(tmp_path, raw_params):
    root = class_tree(tmp_path / "photos", per_class=10)
    huge = write_image(root / "ant" / "000_huge.png", 90, size=(300, 300))
    with pytest.raises(DataError, match=f"{huge}: 300x300 pixels, but most of the dataset's training images are 12x12"):
        prepare_with(tmp_path, raw_params, "image_folder", image_folder={"path": str(root)})


def test_the_header_size_is_the_upright_one(tmp_path):
    from refinelab.prepare.images import open_image, read_header

    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotated a quarter: stored 20 wide and 10 high, upright 10 wide and 20 high.
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(path, exif=exif)
    header = read_header(path)
    assert (header.height, header.width) == open_image(path).size[::-1] == (20, 10)
