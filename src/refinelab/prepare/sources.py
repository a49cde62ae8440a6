"""The dataset registry: ``dataset:`` in params.yaml names one of these loaders.

A loader returns the dataset's own splits (always ``train``; ``test`` and ``validation`` when the
dataset has them) with integer labels and either decoded uint8 NHWC images (IDX, HDF5, digits) or
image file paths (folders), which prepare decodes one by one. Prepare splits off what is missing,
preprocesses and writes the prepared arrays.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refinelab.core.errors import DataError, ParamsError
from refinelab.core.fileio import file_digest
from refinelab.core.registry import Registry
from refinelab.params.names import DATASETS as DATASET_NAMES
from refinelab.prepare.download import RAW_DATA, PublishedFile, fetch, is_url, locate, unpinned_url
from refinelab.prepare.idx import read_idx
from refinelab.prepare.images import image_files

if TYPE_CHECKING:
    from refinelab.params.schema import Params

log = logging.getLogger(__name__)
MIRROR_ENV = "REFINELAB_DATA_MIRROR"
KERAS_CACHE = Path.home() / ".keras" / "datasets"


@dataclass(frozen=True)
class SplitSource:
    """One split's labels and its images: decoded (``images``) or files to decode (``files``)."""

    labels: np.ndarray
    images: np.ndarray | None = None
    files: tuple[Path, ...] | None = None

    def __post_init__(self):
        count = len(self.images) if self.images is not None else len(self.files or ())
        if count != len(self.labels):
            raise ValueError(f"{count} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> SplitSource:
        return SplitSource(
            labels=self.labels[indices],
            images=None if self.images is None else self.images[indices],
            files=None if self.files is None else tuple(self.files[index] for index in indices),
        )


@dataclass(frozen=True)
class RawDataset:
    splits: dict[str, SplitSource]
    class_names: tuple[str, ...]
    # Where the data came from: files or folders with their checksums, for the data report.
    source: dict[str, Any] = field(default_factory=dict)
    # Files the loader left out, with why (a collage among labelled photos, a README).
    skipped: tuple[dict[str, str], ...] = ()


DatasetLoader = Callable[["Params"], RawDataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset", DATASET_NAMES)


def check_labels(labels: np.ndarray, class_names: Sequence[str], origin: str) -> None:
    outside = labels[(labels < 0) | (labels >= len(class_names))]
    if len(outside):
        raise DataError(
            f"{origin}: label {int(outside[0])} is outside the {len(class_names)} classes {list(class_names)}"
        )


@dataclass(frozen=True)
class IdxDataset:
    """An MNIST-style dataset: four published IDX files and where to find them."""

    name: str
    files: tuple[PublishedFile, PublishedFile, PublishedFile, PublishedFile]  # train x/y, test x/y
    system_dir: Path
    urls: tuple[str, ...]
    class_names: tuple[str, ...]

    def search_dirs(self) -> list[Path]:
        dirs = []
        if mirror := os.environ.get(MIRROR_ENV):
            dirs.append(Path(mirror))
        dirs += [self.system_dir, KERAS_CACHE / self.name]
        return dirs

    def load(self) -> RawDataset:
        paths = fetch(self.files, self.search_dirs(), self.urls, cache_dir=KERAS_CACHE / self.name)
        train_x, train_y, test_x, test_y = (read_idx(paths[f.name]) for f in self.files)
        splits = {}
        for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(
                    f"{self.name}: {split} images {images.shape} and labels {labels.shape} do not match"
                )
            check_labels(labels.astype(np.int64), self.class_names, f"{self.name} {split}")
            splits[split] = SplitSource(labels=labels.astype(np.int64), images=images[..., np.newaxis].astype(np.uint8))
        source = {
            "name": self.name,
            "files": {name: {"path": str(path), "sha256": file_digest(path)} for name, path in paths.items()},
        }
        return RawDataset(splits=splits, class_names=self.class_names, source=source)


FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    # MD5s as published by Zalando Research (gzip files and their decompressed content).
    files=(
        PublishedFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        PublishedFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        PublishedFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        PublishedFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    ),
    system_dir=Path("/usr/share/datasets/fashion-mnist"),
    urls=(
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    ),
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(params: Params) -> RawDataset:
    return FASHION_MNIST.load()


MNIST = IdxDataset(
    name="mnist",
    # MD5s as torchvision publishes them (gzip files and their decompressed content).
    files=(
        PublishedFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        PublishedFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        PublishedFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        PublishedFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    ),
    system_dir=Path("/usr/share/datasets/mnist"),
    urls=(
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets",
        "https://ossci-datasets.s3.amazonaws.com/mnist",
    ),
    class_names=tuple(str(digit) for digit in range(10)),
)


@DATASETS.register("mnist")
def load_mnist(params: Params) -> RawDataset:
    return MNIST.load()


@DATASETS.register("digits")
def load_digits(params: Params) -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 0-16 grey levels): offline, no test split of its own."""
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., np.newaxis]
    return RawDataset(
        splits={"train": SplitSource(labels=digits.target.astype(np.int64), images=images)},
        class_names=tuple(str(name) for name in digits.target_names),
        source={"name": "sklearn.datasets.load_digits", "scikit-learn": sklearn_version},
    )


def h5_key(template: str, name: str, split: str) -> str:
    """``template`` with ``{split}`` filled in; any other placeholder is a params error."""
    try:
        return template.format(split=split)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise ParamsError(
            f"{name}: {template!r} is not a valid key template ({type(exc).__name__}: {exc}); "
            "the only placeholder allowed is {split} (write {{ and }} for literal braces)"
        ) from None


def read_h5_split(path: Path, split: str, params: Params) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """Images, labels and (when the file lists them) class names from one HDF5 file."""
    import h5py

    options = params.h5
    x_key, y_key = h5_key(options.x_key, "h5.x_key", split), h5_key(options.y_key, "h5.y_key", split)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        for key in (x_key, y_key):
            if key not in handle:
                raise DataError(f"{path}: no key {key!r} (the file has: {', '.join(sorted(handle))}); set h5.x_key/h5.y_key")
        images, labels = np.asarray(handle[x_key]), np.asarray(handle[y_key])
        for key, array in ((x_key, images), (y_key, labels)):
            if array.ndim == 0:
                raise DataError(f"{path}: {key} is a single value, not an array of {'images' if key == x_key else 'labels'}")
        labels = labels.reshape(-1)
        class_names = None
        if options.classes_key in handle:
            class_names = tuple(
                name.decode() if isinstance(name, bytes) else str(name)
                for name in np.asarray(handle[options.classes_key]).reshape(-1)
            )
    if len(images) != len(labels):
        raise DataError(f"{path}: {x_key} has {len(images)} images but {y_key} has {len(labels)} labels")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{path}: {x_key} has shape {images.shape}; expected (n, height, width[, 1 or 3])")
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
            index = int(np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(axis=1))[0])
            raise DataError(f"{path}: {x_key}[{index}] holds NaN or infinite values")
        if images.dtype == np.bool_:
            images = images * np.uint8(255)  # Black and white: 0 and 255, not 0 and 1 (black).
            log.info("%s: %s holds true/false pixels: made black (0) and white (255)", path, x_key)
        elif np.issubdtype(images.dtype, np.floating) and images.max(initial=0) <= 1:
            images = images * 255  # Floats in [0, 1]: scale back to 0-255 like every other source.
        if images.min(initial=0) < 0 or images.max(initial=0) > 255:
            raise DataError(f"{path}: {x_key} values lie outside 0-255")
        images = np.round(images).astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {y_key} holds {labels.dtype} values, not integer class labels")
    return images, labels.astype(np.int64), class_names


@DATASETS.register("h5")
def load_h5(params: Params) -> RawDataset:
    """Train/test HDF5 files (SIGNS layout); one file alone is split into train/validation/test."""
    options = params.h5
    given = {split: location for split in ("train", "test") if (location := getattr(options, split))}
    if not given:
        raise ParamsError("h5: set h5.train and/or h5.test to an HDF5 file path or URL")
    for name in ("x_key", "y_key"):  # Checked before any download.
        h5_key(getattr(options, name), f"h5.{name}", "train")
    sources, loaded = {}, {}
    for split, location in given.items():
        path, sources[split] = locate(location, getattr(options, f"{split}_sha256"))
        loaded[split] = (path, *read_h5_split(path, split, params))
    listed = [(path, names) for path, _, _, names in loaded.values() if names is not None]
    for path, names in listed[1:]:
        if names != listed[0][1]:
            first_path, first_names = listed[0]
            raise DataError(f"{path}: {options.classes_key} {list(names)} differs from {first_path}'s {list(first_names)}")
    if listed:
        class_names = listed[0][1]
    else:  # No list in the files: the classes are the label values 0..highest.
        highest = max(int(labels.max(initial=0)) for _, _, labels, _ in loaded.values())
        class_names = tuple(str(label) for label in range(highest + 1))
    splits = {}
    for split, (path, images, labels, _) in loaded.items():
        check_labels(labels, class_names, str(path))
        # One file alone is the whole dataset: it becomes "train", and test is split off it by fraction.
        splits["train" if len(loaded) == 1 else split] = SplitSource(labels=labels, images=images)
    return RawDataset(splits=splits, class_names=class_names, source={"name": "h5", "files": sources})


def subfolders(folder: Path) -> dict[str, Path]:
    """The folders in ``folder`` by name, hidden ones and broken links left out."""
    return {path.name: path for path in sorted(folder.iterdir()) if not path.name.startswith(".") and path.is_dir()}


def folder_digest(root: Path, files: Sequence[Path]) -> str:
    """One SHA-256 over the files' relative paths and contents: changes when any image does."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path.relative_to(root).as_posix()} {file_digest(path)}\n".encode())
    return digest.hexdigest()


def located(location: str | None, sha256: str | None, section: str) -> tuple[Path, dict[str, str]]:
    if location is None:
        raise ParamsError(f"{section}.path: set it to a folder, or an https:// or file:// URL of a zip/tar.gz archive")
    path, source = locate(location, sha256)
    if not path.is_dir():
        raise DataError(f"{location}: not a folder (or an archive holding one)")
    return path, source


# The built-in datasets' image shape and number of classes, known before prepare: check_params builds the
# architecture for them (tests check each loader against this).
KNOWN_SHAPES = {"fashion_mnist": ((28, 28, 1), 10), "mnist": ((28, 28, 1), 10), "digits": ((8, 8, 1), 10)}


def expected_input(params: Params) -> tuple[tuple[int, int, int] | None, int]:
    """(image shape, classes) the model will be built for, as far as known before prepare: the shape is
    None for a dataset of files without data.image_size, and the classes 2 where the data decides them."""
    native, classes = KNOWN_SHAPES.get(params.dataset, (None, 2))
    if not params.data.image_size:
        return native, classes
    channels = {"grayscale": 1, "rgb": 3}.get(params.data.color_mode, native[-1] if native else 3)
    return (*params.data.image_size, channels), classes


# The params naming a dataset's files or folders, for the datasets that have them, and their checksums'.
LOCATION_KEYS = {"h5": {"train": "train_sha256", "test": "test_sha256"}, "image_folder": {"path": "sha256"},
                 "filename_labels": {"path": "sha256"}}


def check_locations(params: Params) -> None:
    """The chosen dataset's files and folders given by absolute path (or file:// URL) exist: the
    check_params stage looks before DVC deletes any output, prepare would only after. A relative path is
    left to prepare: it names a place in the workspace, and DVC's queue runs experiments in a copy of the
    workspace without its untracked files, where prepare, if its inputs did not change, need not read it.
    A URL must have its sha256 (:func:`unpinned_url`). A path outside ``data/raw/`` (the prepare stage's
    data dependency) is named in a warning: DVC cannot see its files change."""
    section = getattr(params, params.dataset, None)
    for key, sha256_key in LOCATION_KEYS.get(params.dataset, {}).items():
        location = getattr(section, key)
        if location is not None and is_url(location) and getattr(section, sha256_key) is None:
            raise ParamsError("datasets.yaml: " + unpinned_url(location, f"{params.dataset}.{key}", sha256_key))
        if location is None or (is_url(location) and urllib.parse.urlparse(location).scheme != "file"):
            continue  # Unset (the loader says what to set), or fetched from a server by prepare.
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(location).path)) if is_url(location) else Path(location)
        if path.is_absolute() and not path.exists():
            raise ParamsError(f"datasets.yaml: {params.dataset}.{key}: {location}: no such file or folder")
        if not is_url(location) and not path.resolve().is_relative_to(RAW_DATA.resolve()):  # A URL is pinned.
            log.warning(
                "datasets.yaml: %s.%s: %s is outside %s/, the folder DVC watches for prepare: a change to its files "
                "will not re-run prepare. Bring it in with `dvc import-url %s %s/<name>` (or copy it there and "
                "`dvc add` it)", params.dataset, key, location, RAW_DATA, location, RAW_DATA)


# Folder names of a pre-split tree (the first one present is used).
PRESPLIT_FOLDERS = {"train": ("train",), "validation": ("valid", "validation", "val"), "test": ("test",)}


@DATASETS.register("image_folder")
def load_image_folder(params: Params) -> RawDataset:
    """Class-per-subfolder trees: one tree, or pre-split ``train/``, ``valid/`` and ``test/`` trees."""
    root, source = located(params.image_folder.path, params.image_folder.sha256, "image_folder")
    split_dirs = {"train": root}
    folders = subfolders(root)
    by_lower_name = {name.lower(): path for name, path in reversed(folders.items())}
    split_names = {name for names in PRESPLIT_FOLDERS.values() for name in names}
    # Pre-split: train/, or Train/ with only split folders beside it (a class may be called "Train").
    if "train" in folders or ("train" in by_lower_name and set(by_lower_name) <= split_names):
        split_dirs = {}
        for split, folders in PRESPLIT_FOLDERS.items():
            if existing := [by_lower_name[folder] for folder in folders if folder in by_lower_name]:
                split_dirs[split] = existing[0]
    class_names = tuple(sorted(subfolders(split_dirs["train"])))
    loose = {split: image_files(directory) for split, directory in split_dirs.items()}  # Not in a class folder.
    if len(class_names) < 2:
        found = f"only the class folder {class_names[0]!r}" if class_names else "no class folders"
        hint = (f"; its {len(loose['train'][0])} images outside any class folder are not used (for classes named in "
                f"the file names, use dataset: filename_labels)") if loose["train"][0] else ""
        raise DataError(f"{split_dirs['train']}: {found}, and a classifier needs a folder of images for each of "
                        f"two classes or more{hint}")
    splits, skipped, all_files, nested = {}, [], [], 0
    first_seen: dict[Path, Path] = {}  # A file reached through links twice would be in two classes or splits.
    for split, directory in split_dirs.items():
        skipped += [{"file": str(path), "reason": "not in a class folder"} for path in loose[split][0]] + loose[split][1]
        unknown = sorted(set(subfolders(directory)) - set(class_names))
        if unknown:
            raise DataError(f"{directory}: class folders {unknown} are not in train's classes {list(class_names)}")
        files, labels = [], []
        for label, name in enumerate(class_names):
            class_dir = directory / name
            if not class_dir.is_dir():
                continue
            # Sub-folders (a class's photos by date or source) are the class's too.
            found, other = image_files(class_dir, recursive=True, boundary=root)
            unique = []
            for path in found:
                if (original := first_seen.setdefault(path.resolve(), path)) is path:
                    unique.append(path)
                else:
                    other.append({"file": str(path), "reason": f"the same file as {original}"})
            found = unique
            if not found:
                raise DataError(f"{class_dir}: empty class folder (no JPEG/PNG/BMP/GIF images)")
            files += found
            labels += [label] * len(found)
            skipped += other
            nested += sum(path.parent != class_dir for path in found)
        splits[split] = SplitSource(labels=np.array(labels, np.int64), files=tuple(files))
        all_files += files
    source["sha256_of_files"] = folder_digest(root, all_files)
    source["images_in_subfolders"] = nested
    return RawDataset(
        splits=splits, class_names=class_names, source={"name": "image_folder", **source}, skipped=tuple(skipped)
    )


def label_from_name(name: str, classes: Sequence[str], pattern: re.Pattern | None) -> str | None:
    """The class a file name carries, or None. A pattern's first group names the class; else the longest class prefix."""
    if pattern is not None:
        match = pattern.match(name)
        return match.group(1) if match else None
    prefixes = [cls for cls in classes if name.startswith(cls)]
    return max(prefixes, key=len) if prefixes else None


@DATASETS.register("filename_labels")
def load_filename_labels(params: Params) -> RawDataset:
    """A flat folder labelled by file names (``chihuahua*.jpg``/``muffin*.jpg``), with an optional test subfolder."""
    options = params.filename_labels
    if not options.classes and options.pattern is None:
        raise ParamsError("filename_labels: set classes (file-name prefixes) or pattern (a regex with a class group)")
    root, source = located(options.path, options.sha256, "filename_labels")
    pattern = re.compile(options.pattern) if options.pattern is not None else None
    split_dirs = {"train": root}
    if options.test_dir and (root / options.test_dir).is_dir():
        split_dirs["test"] = root / options.test_dir
    named, skipped = {}, []
    for split, directory in split_dirs.items():
        files, other = image_files(directory)
        skipped += other
        named[split] = []
        for path in files:
            label = label_from_name(path.name, options.classes, pattern)
            if label is None or (options.classes and label not in options.classes):
                skipped.append({"file": str(path), "reason": "file name matches no class"})
            else:
                named[split].append((path, label))
    class_names = tuple(options.classes) or tuple(sorted({label for _, label in named["train"]}))
    splits = {}
    for split, pairs in named.items():
        counts = {name: sum(label == name for _, label in pairs) for name in class_names}
        if split == "train" and (empty := [name for name, count in counts.items() if count == 0]):
            raise DataError(f"{split_dirs[split]}: no images for classes {empty} (file names must start with the class)")
        if unknown := [path for path, label in pairs if label not in class_names]:
            found = sorted({label for path, label in pairs if label not in class_names})
            shown = ", ".join(path.name for path in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise DataError(
                f"{split_dirs[split]}: files of classes {found} that are not in train's classes {list(class_names)}: {shown}"
            )
        splits[split] = SplitSource(
            labels=np.array([class_names.index(label) for _, label in pairs], np.int64),
            files=tuple(path for path, _ in pairs),
        )
    all_files = [path for split in splits.values() for path in split.files]
    source["sha256_of_files"] = folder_digest(root, all_files)
    return RawDataset(
        splits=splits, class_names=class_names, source={"name": "filename_labels", **source}, skipped=tuple(skipped)
    )


DATASETS.check_complete()
