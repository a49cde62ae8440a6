"""Which augmentation a run applies, without Keras: the active ops, whether they keep an image's
shape, and the summary the augment stage writes (``refinelab.augment.stage`` does that stage's work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refinelab.core.errors import ParamsError
from refinelab.params.names import AUGMENTATION_OPS
from refinelab.params.schema import AugmentParams, Params


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
        "settings": {key: getattr(settings, key) for name in sorted(active) for key in AUGMENTATION_OPS[name]},
    }
