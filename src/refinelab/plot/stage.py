"""The plot stage's figures (matplotlib, written as PNG for ``dvc plots show/diff``): learning
curves, the confusion heatmap, test predictions, the most confident mistakes. They are saved the
way ``refinelab.core.figures`` saves every figure."""

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

from refinelab.core.figures import image_grid, save_figure  # noqa: E402
from refinelab.data.store import load_array, load_meta, load_split  # noqa: E402

log = logging.getLogger(__name__)


Series = tuple[list[int], list[float]]
# dvclive's Keras series: (folder under plots/metrics, label) x metric.
LIVE_SPLITS = (("train", "train"), ("eval", "validation"))
LIVE_METRICS = ("loss", "accuracy")


def parse_dvclive_tsv(text: str) -> Series:
    """(epochs, values) from the text of one dvclive ``.tsv`` (columns: timestamp, step, <metric>; the train
    stage logs the epoch's number, from 1, as the step)."""
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    metric = [column for column in rows[0] if column not in ("timestamp", "step")][0] if rows else None
    return [int(row["step"]) for row in rows], [float(row[metric]) for row in rows]


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


# overlaid_learning_curves: run i's colour and marker. tab20's ten dark shades come first, then their
# light twins, so runs 1-10 look as they would with matplotlib's default colours; the 20 markers
# differ between a dark shade's run and its light twin's. After 20 runs the markers shift by one
# per round of colours, so a (colour, marker) pair repeats only after 400 runs.
RUN_COLOURS = tuple(matplotlib.colormaps["tab20"].colors[i] for i in (*range(0, 20, 2), *range(1, 20, 2)))
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h", "d", "8", "H", "+", "x", "1", "2", "3")
# Validation: solid line, filled markers; train: dashed line, hollow markers.
SPLIT_STYLES = {"eval": {"linestyle": "-"}, "train": {"linestyle": "--", "markerfacecolor": "white"}}


def overlaid_learning_curves(curves: Mapping[str, Mapping[tuple[str, str], Series]]) -> plt.Figure:
    """Several runs' learning curves on one chart: one colour and marker per run (distinct for up to 20
    runs), validation a solid line with filled markers, train a dashed line with hollow ones.

    ``curves`` maps a run's name to its series keyed by (split, metric), split being dvclive's
    folder name ("train" or "eval"). The legend names each run once, then the two line styles.
    """
    from matplotlib.lines import Line2D

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    handles = []
    for index, (run, series) in enumerate(curves.items()):
        style = {
            "color": RUN_COLOURS[index % len(RUN_COLOURS)],
            "marker": RUN_MARKERS[(index + index // len(RUN_COLOURS)) % len(RUN_MARKERS)],
            "markersize": 4,
        }
        for axis, metric in zip(axes, LIVE_METRICS):
            for split, label in LIVE_SPLITS:
                if (split, metric) in series:
                    axis.plot(*series[(split, metric)], **style, **SPLIT_STYLES[split], label=f"{run} ({label})")
        handles.append(Line2D([], [], **style, label=run if series else f"{run} (no learning curves)"))
    for axis, metric in zip(axes, LIVE_METRICS):
        axis.set(title=f"{metric.capitalize()}: validation solid, train dashed", xlabel="epoch", ylabel=metric)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        epochs = [epoch for line in axis.get_lines() for epoch in line.get_xdata()]
        if epochs and max(epochs) == min(epochs):  # One epoch: whole-epoch ticks, not 0.95 ... 1.05.
            axis.set_xlim(min(epochs) - 1, max(epochs) + 1)
        axis.grid(alpha=0.3)
    if handles:
        handles += [
            Line2D([], [], color="grey", marker="o", markersize=4, **SPLIT_STYLES["eval"],
                   label="validation: solid, filled markers"),
            Line2D([], [], color="grey", marker="o", markersize=4, **SPLIT_STYLES["train"],
                   label="train: dashed, hollow markers"),
        ]
        figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      ncol=min(4, len(handles)), fontsize=8)
    figure.tight_layout()
    return figure


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows actual, columns predicted: scikit-learn's confusion_matrix, without its two-second import
    in a stage that needs nothing else of it (a test checks they agree)."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_heatmap(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> plt.Figure:
    matrix = confusion_counts(labels, probabilities.argmax(axis=1), len(class_names))
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


def across_classes(labels: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` indices taking the classes in turn (each one's first images first), so a
    grid of a test set sorted by class still shows every class."""
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    rounds = -(-count // max(len(members), 1))
    chosen = [group[rank] for rank in range(rounds) for group in members if rank < len(group)]
    return np.array(chosen[:count], dtype=np.int64)


def prediction_grid(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], count: int
) -> plt.Figure:
    """``count`` test images spread over the classes, titled predicted (true); mistakes in red."""
    shown = across_classes(labels, count)
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
    probabilities = load_array(probabilities_file)
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
