"""The figures (matplotlib, written as PNG for ``dvc plots show/diff``).

They are committed with every experiment (DVC experiments are git commits), so each is made small:
100 dpi, image grids drawn as one picture at their own pixel size (small images enlarged by whole
factors, nearest neighbour; large ones shrunk), and saved as 8-bit palette PNGs without alpha.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only: no display on CI or servers.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from refinelab.fileio import atomic_path  # noqa: E402
from refinelab.prepared import load_meta, load_split  # noqa: E402

log = logging.getLogger(__name__)
FIGURE_DPI = 100
PALETTE_COLOURS = 256


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` as a palette PNG (RGB quantized to 256 colours, no alpha): a third of the
    size of matplotlib's RGBA output, and the same bytes for the same figure (no timestamp)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=FIGURE_DPI, bbox_inches="tight", pad_inches=0.05, format="png", facecolor="white")
    plt.close(figure)
    picture = Image.open(buffer).convert("RGB").quantize(PALETTE_COLOURS, dither=Image.Dither.NONE)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG", optimize=True)
    log.info("wrote %s", path)


def message_figure(text: str) -> Figure:
    """A small figure that only says ``text`` (where a figure is expected but there is nothing to draw)."""
    figure = Figure(figsize=(5, 0.3 + 0.22 * (text.count("\n") + 1)))
    figure.text(0.5, 0.5, text, ha="center", va="center", fontsize=9)
    return figure


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


def sample_grid(
    images: np.ndarray, labels: np.ndarray, class_names: list[str], title: str, per_class: int = 8, max_classes: int = 10
) -> Figure:
    """One row per class (the first ``max_classes``): its first ``per_class`` images, the row's first
    cell titled with the class name and its image count."""
    cells, titles = [], []
    for label, class_name in enumerate(class_names[:max_classes]):
        members = np.flatnonzero(labels == label)
        row = [images[index] for index in members[:per_class]]
        cells.extend(row + [None] * (per_class - len(row)))
        titles.extend([f"{class_name} ({len(members)})"] + [""] * (per_class - 1))
    return image_grid(cells, titles, f"{title}: {len(labels)} images", columns=per_class)


# Image grids: small images are enlarged (whole factors, nearest neighbour) to about CELL_SMALLEST
# pixels, larger ones shrunk to at most CELL_LARGEST; a cell is at least CELL_MIN_WIDTH wide for its title.
CELL_SMALLEST, CELL_LARGEST, CELL_MIN_WIDTH = 56, 64, 84
CELL_PAD, HEADING_HEIGHT, TITLE_LINE_HEIGHT = 4, 20, 10
TITLE_FONT_SIZE, HEADING_FONT_SIZE = 7, 9


def display_pixels(image: np.ndarray) -> np.ndarray:
    """An HxWxC uint8 image as the RGB pixels a grid cell shows."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    longest = max(rgb.shape[:2])
    if longest < CELL_SMALLEST:
        factor = CELL_SMALLEST // longest
        return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    if longest > CELL_LARGEST:
        shrunk = Image.fromarray(np.ascontiguousarray(rgb))
        shrunk.thumbnail((CELL_LARGEST, CELL_LARGEST), Image.Resampling.BOX)
        return np.asarray(shrunk)
    return rgb


def image_grid(
    images: Sequence[np.ndarray | None], titles: list[str], heading: str, title_colours: list[str] | None = None,
    columns: int | None = None,
) -> Figure:
    """uint8 HxWxC images in a grid (near-square unless ``columns`` is given), each with its own title.

    The grid is one picture drawn at its own pixel size (one ``imshow``, the titles as text over
    it): fast for hundreds of cells, sharp, and small as a PNG. An image that is None leaves its
    cell empty (but titled), so rows can be kept aligned.
    """
    count = len(titles)
    columns = columns or max(1, int(np.ceil(np.sqrt(count))))
    rows = max(1, int(np.ceil(count / columns)))
    pixels = [None if image is None else display_pixels(np.asarray(image)) for image in list(images)[:count]]
    shown = [cell for cell in pixels if cell is not None]
    image_height = max((cell.shape[0] for cell in shown), default=CELL_SMALLEST)
    cell_width = max([CELL_MIN_WIDTH] + [cell.shape[1] for cell in shown])
    title_height = TITLE_LINE_HEIGHT * max([title.count("\n") + 1 for title in titles if title], default=0)
    row_height = title_height + image_height + CELL_PAD
    width = columns * (cell_width + CELL_PAD) + CELL_PAD
    height = HEADING_HEIGHT + rows * row_height + CELL_PAD
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    figure = Figure(figsize=(width / FIGURE_DPI, height / FIGURE_DPI))
    axis = figure.add_axes((0, 0, 1, 1))
    colours = title_colours or ["black"] * count
    for index, (cell, title) in enumerate(zip(pixels, titles)):
        row, column = divmod(index, columns)
        left = CELL_PAD + column * (cell_width + CELL_PAD)
        top = HEADING_HEIGHT + row * row_height
        if cell is not None:
            image_top, image_left = top + title_height, left + (cell_width - cell.shape[1]) // 2
            canvas[image_top: image_top + cell.shape[0], image_left: image_left + cell.shape[1]] = cell
        if title:
            axis.text(left + cell_width / 2, top, title, ha="center", va="top", fontsize=TITLE_FONT_SIZE,
                      color=colours[index], linespacing=1.0)
    axis.imshow(canvas, interpolation="nearest", aspect="auto", extent=(0, width, height, 0))
    axis.set_axis_off()
    axis.text(width / 2, 3, heading, ha="center", va="top", fontsize=HEADING_FONT_SIZE)
    if not count:
        axis.text(width / 2, height / 2, "none", ha="center", va="center")
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
