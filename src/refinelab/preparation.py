"""The prepare stage's work: load the selected dataset, split it, write the prepared arrays."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from refinelab.config import Params
from refinelab.datasets import DATASETS
from refinelab.fileio import atomic_dir
from refinelab.prepared import save_meta, save_split
from refinelab.preprocessing import Preprocessing, convert_array

log = logging.getLogger(__name__)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-balanced subset of ``size`` items (all of them if fewer)."""
    indices = np.arange(len(labels))
    if size <= 0 or size >= len(labels):
        return indices
    try:
        subset, _ = train_test_split(indices, train_size=size, stratify=labels, random_state=seed)
    except ValueError:  # Too few items per class to stratify: fall back to a plain seeded draw.
        subset, _ = train_test_split(indices, train_size=size, random_state=seed)
    return np.sort(subset)


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified train/validation index split."""
    indices = np.arange(len(labels))
    train, validation = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(validation)


def preprocessing_for(params: Params, native_shape: tuple[int, ...]) -> Preprocessing:
    """The dataset's own size and colour mode, unless params.data overrides them."""
    native_color = "grayscale" if native_shape[-1] == 1 else "rgb"
    return Preprocessing(
        image_size=tuple(params.data.image_size or native_shape[:2]),
        color_mode=params.data.color_mode or native_color,
        resize=params.data.resize,
    )


def apply_preprocessing(images: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    if images.shape[1:] == preprocessing.input_shape:
        return images
    return np.stack([convert_array(image, preprocessing) for image in images]) if len(images) else images.reshape(
        (0, *preprocessing.input_shape)
    )


def prepare(params: Params, out_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir`` with the train/validation/test splits and ``meta.json``; return the meta."""
    raw = DATASETS.get(params.dataset)(params)
    train_idx, validation_idx = split_validation(raw.train_labels, params.data.validation_split, params.seed)
    limit = params.data.limit
    train_idx = train_idx[stratified_subset(raw.train_labels[train_idx], limit, params.seed)]
    validation_idx = validation_idx[stratified_subset(raw.train_labels[validation_idx], limit, params.seed)]
    test_idx = stratified_subset(raw.test_labels, limit, params.seed)
    preprocessing = preprocessing_for(params, raw.train_images.shape[1:])
    splits = {
        "train": (raw.train_images[train_idx], raw.train_labels[train_idx]),
        "validation": (raw.train_images[validation_idx], raw.train_labels[validation_idx]),
        "test": (raw.test_images[test_idx], raw.test_labels[test_idx]),
    }
    splits = {name: (apply_preprocessing(images, preprocessing), labels) for name, (images, labels) in splits.items()}
    meta = {
        "dataset": params.dataset,
        "class_names": list(raw.class_names),
        "image_shape": list(preprocessing.input_shape),
        "preprocessing": preprocessing.to_dict(),
        "counts": {name: int(len(labels)) for name, (_, labels) in splits.items()},
        "source": raw.source,
    }
    with atomic_dir(out_dir) as staging:
        for name, (images, labels) in splits.items():
            save_split(staging, name, images, labels)
        save_meta(staging, meta)
    log.info("prepared %s: %s", params.dataset, meta["counts"])
    return meta
