"""The augment stage's work. With ``augment.mode: none`` the training split passes through unchanged."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from refinelab.config import Params
from refinelab.fileio import atomic_dir
from refinelab.prepared import load_split

log = logging.getLogger(__name__)


def augment(params: Params, prepared_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the training split that train will read to ``out_dir``; return its summary."""
    prepared_dir = Path(prepared_dir)
    train = load_split(prepared_dir, "train")
    with atomic_dir(out_dir) as staging:
        for suffix in ("images", "labels"):
            shutil.copyfile(prepared_dir / f"train_{suffix}.npy", staging / f"train_{suffix}.npy")
    summary = {"mode": params.augment.mode, "train_images": len(train), "source_images": len(train)}
    log.info("augment mode %s: %d training images", params.augment.mode, len(train))
    return summary
