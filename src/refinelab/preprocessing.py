"""How an image file becomes a model input: decode, orient, colour mode, size.

The same :class:`Preprocessing` is applied by prepare (to folder datasets) and by
``refinelab predict`` (to the user's images); it is stored in ``data/prepared/meta.json`` and in
``models/params.json`` so predictions see exactly what training saw. Pixel values stay uint8
0-255; every model scales them to [0, 1] itself (its first layer), so scaling can never differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from refinelab.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
ResizeMode = Literal["crop", "pad", "stretch"]
ColorMode = Literal["grayscale", "rgb"]


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, int]  # (height, width)
    color_mode: ColorMode
    resize: ResizeMode = "crop"

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(image_size=tuple(data["image_size"]), color_mode=data["color_mode"], resize=data["resize"])


def fit_to_size(image: Image.Image, size: tuple[int, int], mode: ResizeMode) -> Image.Image:
    """Make ``image`` exactly ``size`` (height, width): centre-crop, pad with black, or stretch."""
    height, width = size
    if image.size == (width, height):
        return image
    if mode == "stretch":
        return image.resize((width, height), Image.Resampling.BILINEAR)
    if mode == "crop":
        return ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    return ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR, color=0)


def convert_array(image: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """Apply ``preprocessing`` to a decoded uint8 HxW or HxWxC array."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return to_model_input(Image.fromarray(array.astype(np.uint8)), preprocessing)


def to_model_input(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    image = image.convert("L" if preprocessing.color_mode == "grayscale" else "RGB")
    array = np.asarray(fit_to_size(image, preprocessing.image_size, preprocessing.resize), dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


def open_image(path: str | Path) -> Image.Image:
    """Decode an image file (JPEG/PNG/BMP/GIF; first frame), turned upright by its EXIF orientation.

    A truncated, corrupt or non-image file raises :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # Decode now: a truncated file fails here, not later.
            return ImageOps.exif_transpose(image)  # A new image, usable once the file is closed.
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def load_image(path: str | Path, preprocessing: Preprocessing) -> np.ndarray:
    """Read an image file into a uint8 array of ``preprocessing.input_shape``."""
    return to_model_input(open_image(path), preprocessing)
