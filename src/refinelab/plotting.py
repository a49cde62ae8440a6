"""The plot stage's figures (matplotlib, written as PNG for ``dvc plots show/diff``)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only: no display on CI or servers.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn.metrics import confusion_matrix  # noqa: E402

from refinelab.fileio import atomic_path  # noqa: E402
from refinelab.prepared import load_meta, load_split  # noqa: E402

log = logging.getLogger(__name__)


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight", format="png")
    plt.close(figure)
    log.info("wrote %s", path)


def read_dvclive_series(path: Path) -> tuple[list[int], list[float]]:
    """(steps, values) from one dvclive ``.tsv`` (columns: timestamp, step, <metric>)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    metric = [column for column in rows[0] if column not in ("timestamp", "step")][0] if rows else None
    return [int(row["step"]) + 1 for row in rows], [float(row[metric]) for row in rows]


def learning_curves(live_plots_dir: str | Path) -> plt.Figure:
    """Train vs validation loss and accuracy per epoch, from dvclive's Keras logs."""
    live_plots_dir = Path(live_plots_dir)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for split, label in (("train", "train"), ("eval", "validation")):
            path = live_plots_dir / split / f"{metric}.tsv"
            if path.exists():
                axis.plot(*read_dvclive_series(path), marker="o", label=label)
        axis.set(title=metric.capitalize(), xlabel="epoch", ylabel=metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_heatmap(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> plt.Figure:
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), labels=list(range(len(class_names))))
    size = max(5.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (test set)")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > threshold else "black")
    figure.tight_layout()
    return figure


def prediction_grid(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], count: int
) -> plt.Figure:
    """The first ``count`` test images, titled predicted (true); mistakes in red."""
    count = min(count, len(labels))
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    predicted = probabilities.argmax(axis=1)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        image = images[index]
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        wrong = predicted[index] != labels[index]
        axis.set_title(
            f"{class_names[predicted[index]]}\n({class_names[labels[index]]})",
            fontsize=8,
            color="red" if wrong else "black",
        )
    figure.suptitle("Test predictions: predicted (true); mistakes in red", fontsize=10)
    figure.tight_layout()
    return figure


def plot_all(
    live_plots_dir: str | Path, prepared_dir: str | Path, probabilities_file: str | Path, out_dir: str | Path, grid_size: int
) -> None:
    """Write the plot stage's PNGs to ``out_dir``."""
    out_dir = Path(out_dir)
    class_names = load_meta(prepared_dir)["class_names"]
    test = load_split(prepared_dir, "test")
    probabilities = np.load(probabilities_file)
    save_figure(learning_curves(live_plots_dir), out_dir / "learning_curves.png")
    save_figure(confusion_heatmap(test.labels, probabilities, class_names), out_dir / "confusion_matrix.png")
    save_figure(
        prediction_grid(test.images, test.labels, probabilities, class_names, grid_size),
        out_dir / "test_predictions.png",
    )


def image_grid(images: list[np.ndarray], titles: list[str], columns: int, title: str) -> plt.Figure:
    """uint8 HxWxC images in rows of ``columns``, each with a small title."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.45 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(images):
            continue
        image = images[index]
        grayscale = image.shape[-1] == 1
        axis.imshow(image[..., 0] if grayscale else image, cmap="gray" if grayscale else None, vmin=0, vmax=255)
        axis.set_title(titles[index], fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
