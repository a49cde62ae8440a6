"""The features stage's work: a frozen base's output for every training and validation image, computed
once and kept as a DVC output, so that experiments changing only the head train on vectors, not photos.

The output is ``data/features/``: ``features.json`` (the extractor spec they were made with, or why there
are none) and, when there are, ``{split}_images.npy`` (float32 vectors, one per image) with
``{split}_labels.npy`` for ``train`` (the training set augment chose), ``validation`` and, when that
training set holds offline copies, ``clean_train`` (the prepared training images alone, which the batch-norm
re-estimate reads). :func:`load_features` is train's side.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refinelab.core.errors import DataError
from refinelab.core.fileio import atomic_dir, read_json, write_json
from refinelab.core.runner import on_terminal
from refinelab.data.store import (
    META_FILE,
    TRAINING_SET_FILE,
    Split,
    load_meta,
    load_split,
    load_training_set,
    training_set_source,
)
from refinelab.features.spec import frozen_features
from refinelab.params.schema import Params, TransferSpec

log = logging.getLogger(__name__)

RECORD_FILE = "features.json"


def data_key(prepared_dir: str | Path, train_dir: str | Path | None = None) -> str:
    """What identifies the images the vectors were made from, cheaply (the arrays themselves are not read):
    prepare's meta.json (dataset, source files' checksum, counts) and the labels of the split, which follow
    the seed; with ``train_dir``, also augment's choice of training set and its labels."""
    digest = hashlib.sha256()
    parts = [Path(prepared_dir) / META_FILE, Path(prepared_dir) / "train_labels.npy",
             Path(prepared_dir) / "validation_labels.npy"]
    if train_dir is not None:
        parts += [Path(train_dir) / TRAINING_SET_FILE, Path(train_dir) / "train_labels.npy"]
    for part in parts:
        digest.update(part.name.encode())
        digest.update(part.read_bytes() if part.is_file() else b"-")
    return digest.hexdigest()


def read_spec(spec_path: str | Path) -> dict[str, Any]:
    """The spec check_params wrote; missing or unreadable is a :class:`DataError` naming the file."""
    try:
        spec = read_json(spec_path)
    except FileNotFoundError:
        raise DataError(f"{spec_path}: missing; the check_params stage writes it (dvc repro runs it first)") from None
    except ValueError as exc:
        raise DataError(f"{spec_path}: not JSON ({exc}); run the check_params stage again") from None
    if not isinstance(spec, dict) or "extractor" not in spec:
        raise DataError(f"{spec_path}: not a features spec (no extractor key); run the check_params stage again")
    return spec


def read_record(folder: Path) -> dict[str, Any] | None:
    """The features stage's record in ``folder``; None (and a warning when it is damaged) otherwise."""
    try:
        record = read_json(folder / RECORD_FILE)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        log.warning("%s: not JSON (%s); the features in %s are not used", folder / RECORD_FILE, exc, folder)
        return None
    return record if isinstance(record, dict) else None


def compute_features(spec_path: str | Path, train_dir: str | Path, prepared_dir: str | Path,
                     out_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir`` for the spec check_params wrote (``spec_path``); return its record."""
    spec = read_spec(spec_path)
    with atomic_dir(out_dir) as folder:
        if spec.get("extractor") is None:
            log.info("no features to compute: %s", spec.get("why"))
            write_json(folder / RECORD_FILE, spec)
            return spec
        from refinelab.data.pipeline import predict
        from refinelab.models.builders import build_extractor

        splits = {"train": load_training_set(train_dir, prepared_dir), "validation": load_split(prepared_dir, "validation")}
        if training_set_source(train_dir) != "prepared":
            splits["clean_train"] = load_split(prepared_dir, "train")
        extractor = build_extractor(TransferSpec.model_validate(spec["extractor"]), load_meta(prepared_dir)["image_shape"])
        counts = {}
        for name, split in splits.items():
            started = time.perf_counter()
            vectors = predict(extractor, split, progress=on_terminal()).astype(np.float32)
            np.save(folder / f"{name}_images.npy", vectors)
            np.save(folder / f"{name}_labels.npy", np.asarray(split.labels, dtype=np.int64))
            counts[name] = len(split)
            log.info("features of %d %s images (%d values each) in %.1f s", len(split), name, vectors.shape[-1],
                     time.perf_counter() - started)
        record = {**spec, "images": counts, "prepared": data_key(prepared_dir),
                  "training_set": data_key(prepared_dir, train_dir)}
        write_json(folder / RECORD_FILE, record)
    return record


@dataclass(frozen=True)
class Features:
    """The frozen base's vectors for train's splits."""

    train: Split
    validation: Split
    clean_train: Split  # The prepared training images' (the training set's when it holds no copies).


def features_of_model(features_dir: str | Path, record: dict[str, Any], prepared_dir: str | Path,
                      prepared_train: int) -> Features | None:
    """The features stage's vectors when they were made by this trained model's base (its ``params.json``
    ``record``) from the ``prepared_train`` prepared training images; None otherwise. Evaluate scores the
    training and validation images on them: the test images always go through the whole model."""
    folder = Path(features_dir)
    made = read_record(folder)
    if made is None or made.get("extractor") is None or made.get("backend") != record.get("backend"):
        return None
    architecture = record.get("architecture", {})
    images = made.get("images", {})
    clean = images.get("clean_train", images.get("train"))
    if {key: architecture.get(key) for key in made["extractor"]} != made["extractor"] or clean != prepared_train:
        return None
    if made.get("prepared") != data_key(prepared_dir):
        return None  # Made from other prepared data (run outside DVC's order).
    train = load_split(folder, "train")
    return Features(train, load_split(folder, "validation"),
                    load_split(folder, "clean_train") if "clean_train" in images else train)


def load_features(features_dir: str | Path, params: Params, train_dir: str | Path, prepared_dir: str | Path,
                  train_images: int) -> Features | None:
    """The features stage's vectors when they were made for ``params``' extractor and the current
    training set of ``train_images`` images; None (train runs the base on every batch) otherwise."""
    wanted = frozen_features(params)
    if wanted["extractor"] is None:
        return None
    folder = Path(features_dir)
    record = read_record(folder)
    if record is None:
        log.warning("%s: no features; the base runs on every batch (the features stage computes them once)", folder)
        return None
    current = record.get("images", {}).get("train") == train_images and \
        record.get("training_set") == data_key(prepared_dir, train_dir)
    if {key: record.get(key) for key in wanted} != wanted or not current:
        log.warning("%s was computed for another base or training set; the base runs on every batch (dvc repro "
                    "runs the features stage first)", folder)
        return None
    train = load_split(folder, "train")
    clean = load_split(folder, "clean_train") if "clean_train" in record["images"] else train
    extractor = wanted["extractor"]
    log.info("training the head on the features in %s (%s), not recomputed", folder,
             extractor.get("base") or extractor.get("weights"))
    return Features(train, load_split(folder, "validation"), clean)
