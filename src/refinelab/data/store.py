"""The on-disk form of prepared data, shared by every stage after prepare.

Each split is a pair of ``.npy`` files (uint8 NHWC images, int64 labels) that later stages
memory-map, so a large dataset is never read into RAM whole; ``meta.json`` holds the class
names and how the images were made.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refinelab.core.errors import DataError
from refinelab.core.fileio import atomic_path, read_json, write_json

SPLITS = ("train", "validation", "test")
META_FILE = "meta.json"
# Written beside the model by train: its params, class names and preprocessing (what predict needs).
# Written by augment: which training split train reads (the prepared one, or augment's copies).
TRAINING_SET_FILE = "training_set.json"
TRAINING_SET_SOURCES = ("prepared", "augmented")


@dataclass(frozen=True)
class Split:
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class SplitWriter:
    """Writes one split batch by batch, so preparing a large dataset never holds it whole in RAM.

    Pixels stream to a raw file beside the output; :meth:`close` writes the ``.npy`` header for the
    final count and copies the pixels after it (images skipped along the way leave no gap).
    """

    def __init__(self, directory: Path, name: str, image_shape: tuple[int, ...]):
        self.directory, self.name, self.image_shape = Path(directory), name, tuple(image_shape)
        self.raw_path = self.directory / f".{name}_images.raw"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.raw_path, "wb")
        self._labels: list[np.ndarray] = []
        self.count = 0

    def append(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.shape[1:] != self.image_shape or len(images) != len(labels):
            raise ValueError(
                f"{self.name}: batch {images.shape} with {len(labels)} labels, expected (n, *{self.image_shape})"
            )
        self._raw.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        self._labels.append(np.asarray(labels, dtype=np.int64))
        self.count += len(labels)

    def close(self) -> None:
        self._raw.close()
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (self.count, *self.image_shape)}
        with atomic_path(self.directory / f"{self.name}_images.npy") as temporary:
            with open(temporary, "wb") as out, open(self.raw_path, "rb") as raw:
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(raw, out, 1 << 20)
        self.raw_path.unlink()
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)
        with atomic_path(self.directory / f"{self.name}_labels.npy") as temporary:
            np.save(temporary, labels)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self._raw.close()
            self.raw_path.unlink(missing_ok=True)


def save_split(directory: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
    with SplitWriter(directory, name, images.shape[1:]) as writer:
        writer.append(images, labels)


def load_array(path: str | Path, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` file a stage wrote (no pickles); a missing, truncated or damaged one is a :class:`DataError`
    naming it."""
    try:
        if mmap:
            return np.lib.format.open_memmap(path, mode="r")
        with open(path, "rb") as handle:  # A .npy only: np.load would take a zip for an .npz.
            return np.lib.format.read_array(handle, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the stage that writes it first") from None
    except (ValueError, OSError, EOFError) as exc:  # What numpy raises for a short or mangled file.
        raise DataError(f"{path}: not a readable array file ({exc}); run the stage that writes it again") from None


def load_split(directory: str | Path, name: str) -> Split:
    directory = Path(directory)
    images = load_array(directory / f"{name}_images.npy", mmap=True)
    labels = load_array(directory / f"{name}_labels.npy")
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


def write_training_set(directory: str | Path, source: str, images: int) -> None:
    """Record in augment's output which train split train reads: ``prepared`` (no copy is made
    when there are no offline copies) or ``augmented`` (the split in ``directory``)."""
    if source not in TRAINING_SET_SOURCES:
        raise ValueError(f"training set source {source!r}; valid: {', '.join(TRAINING_SET_SOURCES)}")
    write_json(Path(directory) / TRAINING_SET_FILE, {"source": source, "images": images})


def training_set_source(train_dir: str | Path) -> str:
    """Which train split augment's ``training_set.json`` in ``train_dir`` names: prepared or augmented."""
    path = Path(train_dir) / TRAINING_SET_FILE
    try:
        source = read_json(path)["source"]
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the augment stage first") from None
    if source not in TRAINING_SET_SOURCES:
        raise DataError(f"{path}: unknown source {source!r}; re-run the augment stage")
    return source


def load_training_set(train_dir: str | Path, prepared_dir: str | Path) -> Split:
    """The split train fits on, as augment's ``training_set.json`` in ``train_dir`` names it."""
    return load_split(prepared_dir if training_set_source(train_dir) == "prepared" else train_dir, "train")
