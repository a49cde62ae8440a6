"""The dataset registry: ``dataset:`` in params.yaml names one of these loaders.

A loader returns the dataset's own train and test splits as uint8 NHWC images with integer
labels; the prepare stage then splits validation off train and writes the prepared arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refinelab.download import PublishedFile, fetch, file_digest
from refinelab.errors import DataError
from refinelab.idx import read_idx
from refinelab.registry import Registry

if TYPE_CHECKING:
    from refinelab.config import Params

MIRROR_ENV = "REFINELAB_DATA_MIRROR"
KERAS_CACHE = Path.home() / ".keras" / "datasets"


@dataclass(frozen=True)
class RawDataset:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    # Where the data came from: file names with their checksums, for the data report.
    source: dict[str, Any] = field(default_factory=dict)


DatasetLoader = Callable[["Params"], RawDataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


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
        for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(
                    f"{self.name}: {split} images {images.shape} and labels {labels.shape} do not match"
                )
            if labels.max(initial=0) >= len(self.class_names):
                raise DataError(f"{self.name}: {split} label {labels.max()} is outside the {len(self.class_names)} classes")
        source = {
            "name": self.name,
            "files": {name: {"path": str(path), "sha256": file_digest(path)} for name, path in paths.items()},
        }
        return RawDataset(
            train_images=train_x[..., np.newaxis].astype(np.uint8),
            train_labels=train_y.astype(np.int64),
            test_images=test_x[..., np.newaxis].astype(np.uint8),
            test_labels=test_y.astype(np.int64),
            class_names=self.class_names,
            source=source,
        )


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
