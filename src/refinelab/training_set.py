"""The augment stage's work: decide the training set train reads, summarise it, preview it.

Pay only for what a run uses: offline copies and online previews need Keras (imported then, from
:mod:`refinelab.augmentation`); without offline copies nothing is copied (train reads the prepared
split, as ``training_set.json`` says), and with ``augment.mode: none`` the stage imports neither
Keras nor TensorFlow and draws no preview.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refinelab.config import AugmentParams, Params
from refinelab.errors import ParamsError
from refinelab.fileio import atomic_dir
from refinelab.prepared import load_meta, load_split, write_training_set

log = logging.getLogger(__name__)

# Which settings each op reads (reported in metrics/augment.json).
OP_SETTINGS = {
    "rotation": ("rotation", "fill_mode", "interpolation"), "zoom": ("zoom", "fill_mode", "interpolation"),
    "shear": ("shear", "fill_mode", "interpolation"), "shift": ("shift", "fill_mode", "interpolation"),
    "brightness": ("brightness",), "contrast": ("contrast",), "noise": ("noise",), "cutout": ("cutout",),
}
NO_AUGMENTATION_FIGURE = "no_augmentation.png"


def op_names(entry: str | Sequence[str]) -> list[str]:
    """An offline entry is one op name or a list of them."""
    return [entry] if isinstance(entry, str) else list(entry)


def offline_active(settings: AugmentParams) -> bool:
    return settings.mode in ("offline", "both")


def online_active(settings: AugmentParams) -> bool:
    return settings.mode in ("online", "both")


def active_op_lists(settings: AugmentParams) -> list[list[str]]:
    """The op chains the current mode applies: each offline entry's, then the online one."""
    offline = [op_names(entry) for entry in settings.offline] if offline_active(settings) else []
    return offline + ([list(settings.online)] if online_active(settings) and settings.online else [])


def shape_problem(names: Sequence[str], image_shape: Sequence[int]) -> str | None:
    """Why the ops ``names`` cannot keep images of ``image_shape`` as they are, or None when they can."""
    height, width = image_shape[:2]
    if "rotate90" in names and height != width:
        return f"augment: rotate90 needs square images; these are {height}x{width} (set data.image_size)"
    return None


def check_shapes_kept(names: Sequence[str], image_shape: Sequence[int]) -> None:
    problem = shape_problem(names, image_shape)
    if problem:
        raise ParamsError(problem)


def summary(params: Params, source_images: int, train_images: int) -> dict[str, Any]:
    """What ``dvc exp show`` shows beside accuracy: sizes, the active ops and their settings."""
    settings = params.augment
    offline, online = offline_active(settings), online_active(settings)
    offline_entries = ["+".join(op_names(entry)) for entry in settings.offline] if offline else []
    active = {name for names in active_op_lists(settings) for name in names}
    return {
        "mode": settings.mode,
        "source_images": source_images,
        "train_images": train_images,
        "factor": round(train_images / max(source_images, 1), 4),
        "offline": ",".join(offline_entries),
        "copies": settings.copies if offline else 0,
        "online": ",".join(settings.online) if online else "",
        "settings": {key: getattr(settings, key) for name in sorted(active) for key in OP_SETTINGS.get(name, ())},
    }


def augment(params: Params, prepared_dir: str | Path, out_dir: str | Path, figures_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir`` (the training set train reads) and the figures; return the summary."""
    prepared_dir = Path(prepared_dir)
    source = load_split(prepared_dir, "train")
    # Only the ops this mode applies are checked: an inactive setting is never an error.
    for names in active_op_lists(params.augment):
        check_shapes_kept(names, source.images.shape[1:])
    class_names = load_meta(prepared_dir)["class_names"]
    if offline_active(params.augment):
        from refinelab.augmentation import write_offline_copies  # Keras: only when copies are made.

        total = write_offline_copies(params, source, class_names, out_dir, figures_dir)
    else:
        with atomic_dir(out_dir) as staging:
            write_training_set(staging, "prepared", len(source))
        total = len(source)
        if online_active(params.augment):
            from refinelab.augmentation import draw_samples

            draw_samples(params, source, source, class_names, figures_dir)
        else:
            draw_no_augmentation(len(source), figures_dir)
    log.info("augment mode %s: %d training images from %d", params.augment.mode, total, len(source))
    return summary(params, len(source), total)


def draw_no_augmentation(train_images: int, figures_dir: str | Path) -> None:
    """The one figure of a run without augmentation: it says so (``dvc plots diff`` against an
    augmented run shows it beside that run's previews). A folder DVC tracks cannot be empty in git."""
    from refinelab.plotting import message_figure, save_figure

    text = (f"augment.mode: none\ntrain uses the {train_images} prepared training images as they are\n"
            "(try -S augment.mode=online)")
    save_figure(message_figure(text), Path(figures_dir) / NO_AUGMENTATION_FIGURE)
