"""Which frozen features a run can reuse, without Keras: the part of the params that decides what a frozen
base makes of an image.

A transfer model whose base is frozen whole and pretrained, trained without online augmentation, sees each
training image through the same base every epoch and in every experiment that changes only its head
(dropout, l2, learning_rate, epochs, arch.dense, the optimizer). The check_params stage writes this spec;
the features stage depends on it (not on params.yaml), so such experiments reuse the features DVC cached.
"""

from __future__ import annotations

from typing import Any

from refinelab.augment.policy import online_active
from refinelab.params.schema import Params

# The transfer spec's keys that decide a frozen base's output (the rest is the head's).
EXTRACTOR_KEYS = ("type", "base", "weights", "input_size", "freeze", "head_pooling")


def frozen_features(params: Params) -> dict[str, Any]:
    """``{"extractor": spec, "backend": name}`` when the run's features can be computed once, else
    ``{"extractor": None, "why": reason}``."""
    spec = params.architecture
    if spec.type != "transfer":
        why = f"{params.preset} has no pretrained base"
    elif spec.freeze != "all":
        why = f"{params.preset} trains its base (freeze: {spec.freeze})"
    elif spec.weights == "none":
        why = f"{params.preset}'s base has random weights (weights: none)"
    elif online_active(params.augment):
        why = "online augmentation changes the images every epoch"
    elif params.train.distribute != "none":
        why = f"train.distribute: {params.train.distribute} trains the whole model across devices"
    else:
        # The keys the preset (and arch:) set, as set: validated again, they give back the same spec.
        extractor = spec.model_dump(mode="json", include=set(EXTRACTOR_KEYS), exclude_unset=True)
        return {"extractor": {"type": spec.type, **extractor}, "backend": params.backend}
    return {"extractor": None, "why": why}
