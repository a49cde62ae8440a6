"""Image grids and how every figure is saved: what prepare and augment draw, and plot too.

Figures are committed with every experiment (DVC experiments are git commits), so each is made
small: 100 dpi, image grids drawn as one picture at their own pixel size (small images enlarged by
whole factors, nearest neighbour; large ones shrunk), and saved as 8-bit palette PNGs without alpha.
Kept apart from ``refinelab.plot.stage`` so that editing the plot stage's figures re-runs only it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only: no display on CI or servers.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from refinelab.core.fileio import atomic_path  # noqa: E402

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
