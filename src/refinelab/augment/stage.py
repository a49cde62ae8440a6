"""The augment stage's work: decide the training set train reads, summarise it, preview it.

Pay only for what a run uses: offline copies and online previews need Keras (imported then, from
:mod:`refinelab.augment.ops`); without offline copies nothing is copied (train reads the prepared
split, as ``training_set.json`` says), and with ``augment.mode: none`` the stage imports neither
Keras nor TensorFlow and draws no preview. Train imports none of this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinelab.augment.policy import (
    active_op_lists,
    check_shapes_kept,
    offline_active,
    online_active,
    op_names,
    shape_problem,
    summary,
)
from refinelab.core.figures import image_grid, message_figure, save_figure
from refinelab.core.fileio import atomic_dir
from refinelab.data.store import Split, load_meta, load_split, write_training_set
from refinelab.params.schema import Params

log = logging.getLogger(__name__)
NO_AUGMENTATION_FIGURE = "no_augmentation.png"


def augment(params: Params, prepared_dir: str | Path, out_dir: str | Path, figures_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir`` (the training set train reads) and the figures; return the summary."""
    prepared_dir = Path(prepared_dir)
    source = load_split(prepared_dir, "train")
    # Only the ops this mode applies are checked: an inactive setting is never an error.
    for names in active_op_lists(params.augment):
        check_shapes_kept(names, source.images.shape[1:])
    class_names = load_meta(prepared_dir)["class_names"]
    if offline_active(params.augment):
        from refinelab.augment.ops import write_offline_copies  # Keras: only when copies are made.

        total = write_offline_copies(params, source, out_dir)
        draw_samples(params, source, load_split(out_dir, "train"), class_names, figures_dir)
    else:
        with atomic_dir(out_dir) as staging:
            write_training_set(staging, "prepared", len(source))
        total = len(source)
        if online_active(params.augment):
            draw_samples(params, source, source, class_names, figures_dir)
        else:
            draw_no_augmentation(len(source), figures_dir)
    log.info("augment mode %s: %d training images from %d", params.augment.mode, total, len(source))
    return summary(params, len(source), total)


def draw_no_augmentation(train_images: int, figures_dir: str | Path) -> None:
    """The one figure of a run without augmentation: it says so (``dvc plots diff`` against an
    augmented run shows it beside that run's previews). A folder DVC tracks cannot be empty in git."""
    text = (f"augment.mode: none\ntrain uses the {train_images} prepared training images as they are\n"
            "(try -S augment.mode=online)")
    save_figure(message_figure(text), Path(figures_dir) / NO_AUGMENTATION_FIGURE)


SAMPLE_GRID = 10  # The one-image grid is SAMPLE_GRID x SAMPLE_GRID.
SAMPLES_PER_CLASS = 2
ONLINE_VERSIONS_PER_SAMPLE = 3


def preview_augmenter(params: Params, image_shape: Sequence[int]) -> tuple[Callable | None, str]:
    """The online augmenter and its label; with ``mode: offline`` or ``none``, the one ``mode: online``
    would give, as a preview (none when its ops cannot keep images of ``image_shape``)."""
    from refinelab.augment.ops import online_augmenter  # Keras: only when there is something to preview.

    settings = params.augment
    active = online_active(settings)
    if not active and shape_problem(settings.online, image_shape):
        return None, ""
    if not active:  # The augmenter that mode online would give these settings.
        params = params.model_copy(update={"augment": settings.model_copy(update={"mode": "online"})})
    augmenter = online_augmenter(params)
    if augmenter is None:
        return None, ""
    return augmenter, "online" if active else f"online preview (inactive, mode {settings.mode})"


def draw_samples(params: Params, source: Split, augmented: Split, class_names: list[str], figures_dir: str | Path) -> None:
    """Two PNGs: one training image in many augmented versions, and a few images per class with theirs.

    Offline versions are read back from the written set, so the grid shows exactly what train gets.
    """
    from refinelab.augment.ops import apply_to_uint8

    figures_dir = Path(figures_dir)
    count = len(source)
    copies = len(augmented) // max(count, 1) - 1
    offline_names = [
        "+".join(op_names(entry)) for entry in params.augment.offline for _ in range(params.augment.copies)
    ][:copies]
    online, online_label = preview_augmenter(params, source.images.shape[1:])
    if count == 0:
        return

    versions = SAMPLE_GRID * SAMPLE_GRID - 1
    if online is not None:
        repeated = np.repeat(source.images[:1], versions, axis=0)
        images, label = list(apply_to_uint8(online, repeated)), online_label
    elif copies:
        images = [augmented.images[(1 + index % copies) * count] for index in range(versions)]
        label = "offline copies"
    else:
        images, label = [], "no augmentation"
    save_figure(
        image_grid([source.images[0], *images], ["original"] + [label.split(" ")[0]] * len(images),
                   f"One training image ({class_names[source.labels[0]]}), augmented: {label}", columns=SAMPLE_GRID),
        figures_dir / "augmented_one_image.png",
    )

    per_class_images, titles = [], []
    for class_index, class_name in enumerate(class_names[:10]):
        for index in np.flatnonzero(source.labels == class_index)[:SAMPLES_PER_CLASS]:
            per_class_images.append(source.images[index])
            titles.append(f"{class_name}")
            for block, name in enumerate(offline_names, start=1):
                per_class_images.append(augmented.images[block * count + index])
                titles.append(name)
            if online is not None:
                repeated = np.repeat(source.images[index: index + 1], ONLINE_VERSIONS_PER_SAMPLE, axis=0)
                per_class_images.extend(apply_to_uint8(online, repeated))
                titles.extend(["online"] * ONLINE_VERSIONS_PER_SAMPLE)
    columns = SAMPLES_PER_CLASS * (1 + len(offline_names) + (ONLINE_VERSIONS_PER_SAMPLE if online is not None else 0))
    save_figure(
        image_grid(per_class_images, titles,
                   f"Training images per class and their augmented versions (mode {params.augment.mode})",
                   columns=min(columns, 16)),
        figures_dir / "augmented_per_class.png",
    )
