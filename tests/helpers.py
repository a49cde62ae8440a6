"""Helpers the tests share: the project's paths, subprocess runs, IDX and prepared-data writers."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from refinelab.params.files import write_config
from refinelab.prepare.sources import FASHION_MNIST

ROOT = Path(__file__).resolve().parents[1]


SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fashion_mnist_dir() -> Path | None:
    """A folder holding the four official Fashion-MNIST files, if this machine has one."""
    for directory in FASHION_MNIST.search_dirs():
        if all((directory / published.name).is_file() for published in FASHION_MNIST.files):
            return directory
    return None


needs_fashion_mnist = pytest.mark.skipif(
    fashion_mnist_dir() is None,
    reason="Fashion-MNIST files not found (install Debian's dataset-fashion-mnist, as `make test` does)",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def run(command: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def collect(dataset, batches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) batches of a ``build_dataset`` dataset, concatenated: one pass, or the first
    ``batches`` of an endless (shuffled) one."""
    import keras

    batches = [
        (keras.ops.convert_to_numpy(images), keras.ops.convert_to_numpy(labels))
        for images, labels in (dataset if batches is None else dataset.take(batches))
    ]
    return np.concatenate([images for images, _ in batches]), np.concatenate([labels for _, labels in batches])


def write_prepared(directory: Path, image_shape, num_classes: int, counts=(96, 32, 32), seed: int = 0) -> Path:
    """A prepared dataset (train, validation, test; ``counts`` images each) whose classes differ by a
    bright horizontal band: learnable in one epoch. Labels cycle 0, 1, ..., num_classes - 1.

    The folder doubles as augment's output (its training_set.json names the prepared split), so it
    can be passed to train as both folders."""
    from refinelab.data.store import SPLITS, save_meta, save_split, write_training_set

    rng = np.random.default_rng(seed)
    band = image_shape[0] // num_classes
    for split, count in zip(SPLITS, counts):
        labels = np.arange(count) % num_classes
        images = rng.integers(0, 60, size=(count, *image_shape))
        for label in range(num_classes):
            images[labels == label, label * band : (label + 1) * band] += 150
        save_split(directory, split, images.astype(np.uint8), labels)
    color_mode = "grayscale" if image_shape[-1] == 1 else "rgb"
    save_meta(directory, {
        "dataset": "synthetic",
        "class_names": [f"class{label}" for label in range(num_classes)],
        "image_shape": list(image_shape),
        "preprocessing": {"image_size": list(image_shape[:2]), "color_mode": color_mode, "resize": "crop"},
    })
    write_training_set(directory, "prepared", counts[0])
    return directory


def commit_params(project: Path, params: dict, message: str = "tiny config") -> None:
    """Write ``params`` (a :func:`read_config` mapping) as the project's config files and commit everything
    (experiments start from a commit)."""
    write_config(project, params)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message], project)
