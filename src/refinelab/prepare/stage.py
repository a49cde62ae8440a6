"""The prepare stage's work: load the selected dataset, split it, write the prepared arrays."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from refinelab.core.errors import DataError
from refinelab.core.fileio import atomic_dir, write_json
from refinelab.core.runner import on_terminal
from refinelab.data.store import SPLITS, SplitWriter, load_split, save_meta
from refinelab.params.schema import Params
from refinelab.prepare.images import Preprocessing, convert_array, open_image, read_header, to_model_input
from refinelab.prepare.sources import DATASETS, RawDataset, SplitSource

log = logging.getLogger(__name__)
ARRAY_BATCH = 1024  # Decoded arrays are preprocessed and written this many images at a time.


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-balanced subset of ``size`` items (all of them if fewer).

    Every class of ``labels`` keeps an item when ``size`` allows one each: a stratified draw rounds a
    rare class's share to none, and a split without it has no metrics for it."""
    indices = np.arange(len(labels))
    if size <= 0 or size >= len(labels):
        return indices
    try:
        subset, rest = train_test_split(indices, train_size=size, stratify=labels, random_state=seed)
    except ValueError:  # Too few items per class to stratify: fall back to a plain seeded draw.
        subset, rest = train_test_split(indices, train_size=size, random_state=seed)
    classes = np.unique(labels)
    if size >= len(classes):
        for label in classes:
            if not np.any(labels[subset] == label):
                rest, subset = swap_one(labels, rest, subset, label)
    return np.sort(subset)


def split_off(
    labels: np.ndarray, fraction: float, seed: int, class_names: Sequence[str], what: str = "validation"
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified split of indices into (kept, held out ``fraction``).

    Every class keeps an image and gives the held-out part one, so its metrics cover every class: a
    stratified split alone rounds a rare class's share to none (2 bees among 33 images gave validation
    and test no bee; sklearn's split keeps both sides at least one image per class, so a class to swap
    with is always there). A class with a single image cannot be on both sides: a :class:`DataError` names it.
    """
    counts = np.bincount(labels, minlength=len(class_names))
    if single := [name for name, count in zip(class_names, counts) if count == 1]:
        raise DataError(
            f"cannot split a {what} set off {len(labels)} training images: class {', '.join(map(repr, single))} "
            f"has 1 of them, and every class needs an image in train and one in {what}: give each class an "
            f"image for every split made from these (3 when both validation and test are)"
        )
    indices = np.arange(len(labels))
    held_out_size = max(math.ceil(fraction * len(labels)), np.count_nonzero(counts))
    try:
        kept, held_out = train_test_split(indices, test_size=held_out_size, stratify=labels, random_state=seed)
    except ValueError as exc:
        raise DataError(
            f"cannot split a {what} set ({fraction:g}) off {len(labels)} images with class counts "
            f"{dict(zip(class_names, counts.tolist()))}: {exc}"
        ) from None
    for label in np.flatnonzero(counts):
        if not np.any(labels[held_out] == label):
            kept, held_out = swap_one(labels, kept, held_out, label)
        if not np.any(labels[kept] == label):
            held_out, kept = swap_one(labels, held_out, kept, label)
    return np.sort(kept), np.sort(held_out)


def swap_one(labels: np.ndarray, source: np.ndarray, target: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Move ``source``'s first image of ``label`` into ``target``, and ``target``'s last image of its largest
    class into ``source``: the sizes stay, and the orders are the seeded split's. That class has two or more
    images where ``target``, holding none of ``label``, has at least as many images as there are classes."""
    given = source[labels[source] == label][0]
    largest = np.bincount(labels[target]).argmax()
    taken = target[labels[target] == largest][-1]
    return np.append(source[source != given], taken), np.append(target[target != taken], given)


def split_validation(labels: np.ndarray, fraction: float, seed: int, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified train/validation index split."""
    return split_off(labels, fraction, seed, class_names, "validation")


def make_splits(raw: RawDataset, params: Params) -> dict[str, SplitSource]:
    """Train, validation and test: the dataset's own, or split off train (test first); then ``data.limit``."""
    train = raw.splits["train"]
    test = raw.splits.get("test")
    if test is None:
        kept, held_out = split_off(train.labels, params.data.test_split, params.seed, raw.class_names, "test")
        train, test = train.subset(kept), train.subset(held_out)
    validation = raw.splits.get("validation")
    if validation is None:
        kept, held_out = split_validation(train.labels, params.data.validation_split, params.seed, raw.class_names)
        train, validation = train.subset(kept), train.subset(held_out)
    splits = {"train": train, "validation": validation, "test": test}
    return {
        name: split.subset(stratified_subset(split.labels, params.data.limit, params.seed))
        for name, split in splits.items()
    }


def native_shape(splits: dict[str, SplitSource], color_mode: str | None) -> tuple[int, int, int]:
    """(height, width, channels) of the dataset's images. For files, read from the headers of every split's:
    the size most of them have (the odd ones out are named when the split is written), and colour when
    any file is colour (unless ``color_mode`` is set): one greyscale file sorted first must not make a
    folder of photos grey, nor one huge photo make every normal one look wrong, nor a colour photo that
    lands in test be made grey."""
    if splits["train"].images is not None:
        return splits["train"].images.shape[1:]
    files = [path for split in splits.values() for path in split.files or ()]
    headers = [header for header in map(read_header, files) if header is not None]
    if not headers:
        raise DataError("no readable image in the dataset")
    sizes = Counter((header.height, header.width) for header in headers)
    (height, width), count = sizes.most_common(1)[0]
    if len(sizes) > 1:
        others = sizes.most_common()[1:]
        listed = ", ".join(f"{h}x{w} ({n})" for (h, w), n in others[:5])
        more = f", and {len(others) - 5} sizes more" if len(others) > 5 else ""
        log.info("%d of %d images are %dx%d; the other %d are of %d other sizes: %s%s", count, len(headers),
                 height, width, len(headers) - count, len(others), listed, more)
    if color_mode is not None:
        return (height, width, 1 if color_mode == "grayscale" else 3)
    grey = sum(header.grayscale for header in headers)
    if 0 < grey < len(headers):
        log.warning("%d of %d images are greyscale, the others colour: all are made RGB "
                    "(set data.color_mode to choose)", grey, len(headers))
    return (height, width, 1 if grey == len(headers) else 3)


def leave_out_bad_images(raw: RawDataset) -> tuple[RawDataset, list[dict[str, str]]]:
    """``data.on_bad_image: skip``: decode every file first and leave the unreadable ones out before any
    split is made, so that the splits keep every class (a file dropped after splitting could empty a
    class's share of validation, or a whole split). It costs a second decoding of each file."""
    splits, bad = {}, []
    for name, split in raw.splits.items():
        if split.files is None:
            splits[name] = split
            continue
        good = []
        for index, path in enumerate(tqdm(split.files, desc=f"checking {name}", unit="image",
                                          disable=not on_terminal(), leave=False)):
            try:
                open_image(path)
            except DataError as exc:
                log.warning("skipping %s", exc)
                bad.append({"file": str(path), "split": name, "error": str(exc)})
            else:
                good.append(index)
        splits[name] = split.subset(np.array(good, dtype=np.int64))
    return dataclasses.replace(raw, splits=splits), bad


def check_room(out_dir: str | Path, size: int) -> None:
    """Refuse, before decoding anything, prepared arrays the disk has no room for (data.image_size [768, 768]
    makes Fashion-MNIST's 70,000 images 41 GB)."""
    folder = next(parent for parent in Path(out_dir).absolute().parents if parent.exists())
    if size > (free := shutil.disk_usage(folder).free):
        raise DataError(f"the prepared images would take {size >> 20} MB and {folder} has {free >> 20} MB free: "
                        "set a smaller data.image_size (or data.limit)")


def check_splits(splits: dict[str, SplitSource], class_names: Sequence[str], bad_images: int) -> None:
    """No split is empty (train or evaluate would fail after the hour); a class missing from a split is
    named, since that split's scores then say nothing of it."""
    left_out = f" ({bad_images} unreadable image files were left out)" if bad_images else ""
    for name, split in splits.items():
        if not len(split):
            raise DataError(f"the {name} split has no images{left_out}")
        counts = np.bincount(split.labels, minlength=len(class_names))
        if missing := [class_names[label] for label in np.flatnonzero(counts == 0)]:
            if name == "train":
                raise DataError(f"the train split has no images of {missing}{left_out}: the model could not learn them")
            log.warning("the %s split has no images of %s%s: its scores say nothing of them", name, missing, left_out)


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


def write_split(
    directory: Path, name: str, split: SplitSource, preprocessing: Preprocessing, params: Params
) -> list[dict[str, str]]:
    """Preprocess and write one split, one batch or file at a time; return the bad image files skipped."""
    bad_images = []
    # With no data.image_size, every file must have the dataset's own size: no silent resizing.
    required_size = None if params.data.image_size else preprocessing.image_size
    with SplitWriter(directory, name, preprocessing.input_shape) as writer:
        if split.images is not None:
            if required_size and split.images.shape[1:3] != required_size:
                raise DataError(
                    f"{name} split: images are {split.images.shape[1]}x{split.images.shape[2]} but train's are "
                    f"{required_size[0]}x{required_size[1]}; set data.image_size to resize them all"
                )
            for start in range(0, len(split), ARRAY_BATCH):
                batch = slice(start, start + ARRAY_BATCH)
                writer.append(apply_preprocessing(split.images[batch], preprocessing), split.labels[batch])
            return bad_images
        files = zip(split.files, split.labels)
        for path, label in tqdm(files, total=len(split.files), desc=f"decoding {name}", unit="image",
                                disable=not on_terminal(), leave=False):
            try:
                image = open_image(path)
            except DataError as exc:
                if params.data.on_bad_image == "fail":
                    raise DataError(f"{exc}; set data.on_bad_image: skip to leave such files out") from None
                log.warning("skipping %s", exc)
                bad_images.append({"file": str(path), "split": name, "error": str(exc)})
                continue
            if required_size and (image.height, image.width) != required_size:
                raise DataError(
                    f"{path}: {image.height}x{image.width} pixels, but most of the dataset's training images are "
                    f"{required_size[0]}x{required_size[1]}; set data.image_size to resize them all"
                )
            writer.append(to_model_input(image, preprocessing)[np.newaxis], label[np.newaxis])
    return bad_images


def prepare(
    params: Params, out_dir: str | Path, report_file: str | Path | None = None, samples_dir: str | Path | None = None
) -> dict[str, Any]:
    """Write ``out_dir`` with the train/validation/test splits and ``meta.json``; return the meta.

    With ``report_file`` and ``samples_dir``, also write the data report (``metrics/data.json``) and
    a grid of sample images per split.
    """
    raw = DATASETS.get(params.dataset)(params)
    if len(raw.class_names) < 2:
        raise DataError(f"{params.dataset}: {len(raw.class_names)} class ({', '.join(map(repr, raw.class_names))}); "
                        f"a classifier needs two or more")
    bad_images = []
    if params.data.on_bad_image == "skip":
        raw, bad_images = leave_out_bad_images(raw)
    splits = make_splits(raw, params)
    check_splits(splits, raw.class_names, len(bad_images))
    preprocessing = preprocessing_for(params, native_shape(splits, params.data.color_mode))
    check_room(out_dir, sum(map(len, splits.values())) * math.prod(preprocessing.input_shape))
    with atomic_dir(out_dir) as staging:
        for name, split in splits.items():
            bad_images += write_split(staging, name, split, preprocessing, params)
        labels = {name: load_split(staging, name).labels for name in splits}
        meta = {
            "dataset": params.dataset,
            "class_names": list(raw.class_names),
            "image_shape": list(preprocessing.input_shape),
            "preprocessing": preprocessing.to_dict(),
            "counts": {name: int(len(split_labels)) for name, split_labels in labels.items()},
            "source": raw.source,
        }
        save_meta(staging, meta)
    log.info("prepared %s: %s", params.dataset, meta["counts"])
    if report_file is not None:
        write_json(report_file, data_report(meta, labels, raw.skipped, bad_images))
    if samples_dir is not None:
        write_sample_grids(out_dir, meta["class_names"], samples_dir)
    return meta


def data_report(
    meta: dict[str, Any], labels: dict[str, np.ndarray], skipped: Sequence[dict[str, str]], bad_images: list[dict[str, str]]
) -> dict[str, Any]:
    """The first look at a dataset: images per class per split, size, source and what was left out."""
    class_names = meta["class_names"]
    return {
        "dataset": meta["dataset"],
        "image_shape": meta["image_shape"],
        "preprocessing": meta["preprocessing"],
        "splits": {
            name: {
                "images": int(len(split_labels)),
                "per_class": dict(zip(class_names, np.bincount(split_labels, minlength=len(class_names)).tolist())),
            }
            for name, split_labels in labels.items()
        },
        "skipped_files": len(skipped),
        "bad_images": len(bad_images),
        "source": meta["source"],
        "skipped": list(skipped),
        "bad_image_files": bad_images,
    }


def write_sample_grids(prepared_dir: str | Path, class_names: list[str], samples_dir: str | Path) -> None:
    """One PNG per split: a few prepared images of each class, as the model will see them."""
    from refinelab.core.figures import sample_grid, save_figure  # Matplotlib only when a report is asked for.

    samples_dir = Path(samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        split = load_split(prepared_dir, name)
        figure = sample_grid(split.images, split.labels, class_names, f"{name} split")
        save_figure(figure, samples_dir / f"samples_{name}.png")
