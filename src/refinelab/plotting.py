"""The plot stage's figures (matplotlib, written as PNG for ``dvc plots show/diff``)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only: no display on CI or servers.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from refinelab.fileio import atomic_path  # noqa: E402
from refinelab.prepared import load_meta, load_split  # noqa: E402

log = logging.getLogger(__name__)


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight", format="png")
    plt.close(figure)
    log.info("wrote %s", path)


Series = tuple[list[int], list[float]]
# dvclive's Keras series: (folder under plots/metrics, label) x metric.
LIVE_SPLITS = (("train", "train"), ("eval", "validation"))
LIVE_METRICS = ("loss", "accuracy")


def parse_dvclive_tsv(text: str) -> Series:
    """(epochs, values) from the text of one dvclive ``.tsv`` (columns: timestamp, step, <metric>)."""
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    metric = [column for column in rows[0] if column not in ("timestamp", "step")][0] if rows else None
    return [int(row["step"]) + 1 for row in rows], [float(row[metric]) for row in rows]


def read_dvclive_series(path: Path) -> Series:
    return parse_dvclive_tsv(Path(path).read_text())


def learning_curves(live_plots_dir: str | Path) -> plt.Figure:
    """Train vs validation loss and accuracy per epoch, from dvclive's Keras logs."""
    live_plots_dir = Path(live_plots_dir)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, LIVE_METRICS):
        for split, label in LIVE_SPLITS:
            path = live_plots_dir / split / f"{metric}.tsv"
            if path.exists():
                axis.plot(*read_dvclive_series(path), marker="o", label=label)
        axis.set(title=metric.capitalize(), xlabel="epoch", ylabel=metric)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def overlaid_learning_curves(curves: Mapping[str, Mapping[tuple[str, str], Series]]) -> plt.Figure:
    """Several runs' learning curves on one chart: one colour per run, validation solid, train dashed.

    ``curves`` maps a run's name to its series keyed by (split, metric), split being dvclive's
    folder name ("train" or "eval").
    """
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (run, series) in enumerate(curves.items()):
        colour = colours[index % len(colours)]
        for axis, metric in zip(axes, LIVE_METRICS):
            for split, label in LIVE_SPLITS:
                if (split, metric) in series:
                    axis.plot(
                        *series[(split, metric)], color=colour, marker="o", markersize=3,
                        linestyle="-" if split == "eval" else "--", label=f"{run} ({label})",
                    )
    for axis, metric in zip(axes, LIVE_METRICS):
        axis.set(title=f"{metric.capitalize()}: validation solid, train dashed", xlabel="epoch", ylabel=metric)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(labels)), fontsize=8)
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


def show_image(axis: plt.Axes, image: np.ndarray) -> None:
    """Draw one uint8 HxWxC image (grey when C is 1) on the fixed 0-255 scale, without axes."""
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        axis.imshow(image)
    axis.axis("off")


def sample_grid(
    images: np.ndarray, labels: np.ndarray, class_names: list[str], title: str, per_class: int = 8, max_classes: int = 20
) -> plt.Figure:
    """One row per class (the first ``max_classes``): its first ``per_class`` images, the row's first
    cell titled with the class name and its image count."""
    cells, titles = [], []
    for label, class_name in enumerate(class_names[:max_classes]):
        members = np.flatnonzero(labels == label)
        row = [images[index] for index in members[:per_class]]
        cells.extend(row + [None] * (per_class - len(row)))
        titles.extend([f"{class_name} ({len(members)})"] + [""] * (per_class - 1))
    return image_grid(cells, titles, f"{title}: {len(labels)} images", columns=per_class)


def image_grid(
    images, titles: list[str], heading: str, title_colours: list[str] | None = None, columns: int | None = None
) -> plt.Figure:
    """uint8 HxWxC images in a grid (near-square unless ``columns`` is given), each with its own title.

    An image that is None leaves its cell empty (but titled), so rows can be kept aligned.
    """
    count = len(titles)
    columns = columns or max(1, int(np.ceil(np.sqrt(count))))
    rows = max(1, int(np.ceil(count / columns)))
    dense = columns > 8  # Many small cells: smaller figures per cell and smaller titles.
    cell, font = (1.3, 6) if dense else (1.9, 8)
    figure, axes = plt.subplots(rows, columns, figsize=(cell * columns + 1, (cell + 0.2) * rows + 0.5), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        if images[index] is not None:
            show_image(axis, images[index])
        axis.set_title(titles[index], fontsize=font, color=(title_colours or ["black"] * count)[index])
    if not count:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    figure.suptitle(heading, fontsize=10)
    figure.tight_layout()
    return figure


def prediction_grid(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], count: int
) -> plt.Figure:
    """The first ``count`` test images, titled predicted (true); mistakes in red."""
    shown = np.arange(min(count, len(labels)))
    predicted = probabilities.argmax(axis=1)
    return image_grid(
        images[shown],
        [f"{class_names[predicted[i]]}\n({class_names[labels[i]]})" for i in shown],
        "Test predictions: predicted (true); mistakes in red",
        title_colours=["red" if predicted[i] != labels[i] else "black" for i in shown],
    )


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to ``count`` wrong predictions, the most confident first."""
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    return wrong[np.argsort(-confidence[wrong], kind="stable")][:count]


def misclassification_gallery(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], count: int
) -> plt.Figure:
    """The most confident wrong test predictions: what the model is surest of and still gets wrong."""
    shown = most_confident_mistakes(labels, probabilities, count)
    predicted = probabilities.argmax(axis=1)
    return image_grid(
        images[shown],
        [f"{class_names[predicted[i]]} {probabilities[i, predicted[i]]:.0%}\ntrue: {class_names[labels[i]]}" for i in shown],
        "Most confident mistakes (test set): predicted (confidence), true label",
        title_colours=["red"] * len(shown),
    )


def plot_all(
    live_plots_dir: str | Path,
    prepared_dir: str | Path,
    probabilities_file: str | Path,
    out_dir: str | Path,
    grid_size: int,
    gallery_size: int,
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
    save_figure(
        misclassification_gallery(test.images, test.labels, probabilities, class_names, gallery_size),
        out_dir / "misclassified.png",
    )
