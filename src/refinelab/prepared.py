"""The on-disk form of prepared data, shared by every stage after prepare.

Each split is a pair of ``.npy`` files (uint8 NHWC images, int64 labels) that later stages
memory-map, so a large dataset is never read into RAM whole; ``meta.json`` holds the class
names and how the images were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refinelab.errors import DataError
from refinelab.fileio import atomic_path, read_json, write_json

SPLITS = ("train", "validation", "test")
META_FILE = "meta.json"


@dataclass(frozen=True)
class Split:
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def save_split(directory: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
    for suffix, array in (("images", images.astype(np.uint8, copy=False)), ("labels", labels.astype(np.int64, copy=False))):
        with atomic_path(directory / f"{name}_{suffix}.npy") as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, array)


def load_split(directory: str | Path, name: str) -> Split:
    directory = Path(directory)
    try:
        images = np.load(directory / f"{name}_images.npy", mmap_mode="r")
        labels = np.load(directory / f"{name}_labels.npy")
    except FileNotFoundError as exc:
        raise DataError(f"{exc.filename}: missing; run the stage that writes {directory} first") from None
    if len(images) != len(labels):
        raise DataError(f"{directory}/{name}: {len(images)} images but {len(labels)} labels")
    return Split(images, labels)


def save_meta(directory: Path, meta: dict[str, Any]) -> None:
    write_json(directory / META_FILE, meta)


def load_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        return read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the prepare stage first") from None
