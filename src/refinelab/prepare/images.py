"""How an image file becomes a model input: decode, orient, colour mode, size.

The same :class:`Preprocessing` is applied by prepare (to folder datasets) and by
``refinelab predict`` (to the user's images); it is stored in ``data/prepared/meta.json`` and in
``models/params.json`` so predictions see exactly what training saw. Pixel values stay uint8
0-255; every model scales them to [0, 1] itself (its first layer), so scaling can never differ.
"""

from __future__ import annotations

import logging
import stat
import struct
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from refinelab.core.errors import DataError

log = logging.getLogger(__name__)

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
    """``image`` (as :func:`open_image` returns it: mode L or RGB) in the preprocessing's colour mode and size."""
    image = image.convert("L" if preprocessing.color_mode == "grayscale" else "RGB")
    array = np.asarray(fit_to_size(image, preprocessing.image_size, preprocessing.resize), dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


EXIF_ORIENTATION = 0x0112
# Greyscale modes of PIL (1-bit, 8-bit, with alpha, 16- and 32-bit integer); palette and the rest are colour.
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def is_grayscale_mode(mode: str) -> bool:
    return mode in GRAYSCALE_MODES


def to_8_bit(image: Image.Image) -> Image.Image:
    """Mode L or RGB. Greyscale of more than 8 bits is scaled to 0-255 from its type's range (16-bit
    PNGs: value / 257), not clipped; floats all within 0-1 (a scientific TIFF) from 0-1; other modes
    (palette, CMYK, with alpha) convert to RGB or L."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        highest = values.max(initial=0)
        if image.mode == "F" and highest <= 1.0:
            top = 1.0
        else:
            top = 65535.0 if image.mode.startswith("I;16") or highest > 255 else 255.0
        return Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    return image.convert("L" if is_grayscale_mode(image.mode) else "RGB")


def open_image(path: str | Path) -> Image.Image:
    """Decode an image file (JPEG/PNG/BMP/GIF; first frame), turned upright by its EXIF orientation,
    as an 8-bit L or RGB image.

    Anything the decoders raise (a truncated or corrupt file, a non-image, a decompression bomb, a
    colour space that cannot be converted) is a :class:`DataError` naming the file.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:  # PIL's "cannot identify image file" does not say why.
        raise DataError(f"{path}: not a readable image (an empty file, 0 bytes)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # Decode now: a truncated file fails here, not later.
                upright = to_8_bit(ImageOps.exif_transpose(image))  # A new image, usable once the file is closed.
        if any(issubclass(warning.category, Image.DecompressionBombWarning) for warning in caught):
            # PIL's own warning names no file.
            log.warning("%s: %.0f million pixels, decoded (it takes that much memory; PIL refuses twice %.0f million)",
                        path, image.width * image.height / 1e6, Image.MAX_IMAGE_PIXELS / 1e6)
        return upright
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
            struct.error, MemoryError) as exc:  # What PIL's decoders raise for damaged files.
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class ImageHeader:
    height: int
    width: int
    grayscale: bool


# EXIF orientations that turn the image a quarter: upright, its height and width swap.
QUARTER_TURN_ORIENTATIONS = (5, 6, 7, 8)


def read_header(path: str | Path) -> ImageHeader | None:
    """The upright size and greyness of an image file from its header alone (no decoding); None when
    the header is unreadable. A palette of greys only (common in GIFs) counts as greyscale."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # open_image says it, naming the file.
            image = Image.open(path)
        with image:
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURN_ORIENTATIONS:
                width, height = height, width
            if image.mode == "P":
                palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
                grayscale = bool(len(palette)) and bool((palette == palette[:, :1]).all())
            else:
                grayscale = is_grayscale_mode(image.mode)
            return ImageHeader(height, width, grayscale)
    except Exception:  # noqa: BLE001 - an unreadable file is reported when it is decoded.
        return None


def load_image(path: str | Path, preprocessing: Preprocessing) -> np.ndarray:
    """Read an image file into a uint8 array of ``preprocessing.input_shape``."""
    return to_model_input(open_image(path), preprocessing)


def image_files(folder: Path, recursive: bool = False,
                boundary: Path | None = None) -> tuple[list[Path], list[dict[str, str]]]:
    """The image files in ``folder`` (with ``recursive``, also in its sub-folders at any depth), sorted, and
    the files left out, each with why: other files, hidden ones (``.DS_Store``, macOS' ``._photo.jpg``,
    ``.ipynb_checkpoints/``), and links that lead nowhere or in a circle. Links are followed, but not to a
    folder already read or one above ``folder`` (whose images are not all this folder's), nor into another
    folder inside ``boundary`` (another class's, in a dataset). Without ``recursive``, folders are the
    caller's."""
    images, skipped = [], []
    start = folder.resolve()
    seen = {start}
    inside = boundary.resolve() if boundary is not None else None

    def walk(directory: Path) -> None:
        for path in sorted(directory.iterdir()):
            if path.name.startswith("."):
                skipped.append({"file": str(path), "reason": "hidden"})
                continue
            try:
                mode = path.stat().st_mode  # Follows a link.
            except OSError as exc:
                skipped.append({"file": str(path), "reason": f"a link that leads nowhere ({exc.strerror})"})
                continue
            if stat.S_ISDIR(mode):
                if not recursive:
                    continue
                target = path.resolve()
                if target in seen or start.is_relative_to(target):
                    skipped.append({"file": str(path), "reason": "a link to a folder already read, or above it"})
                elif inside is not None and target.is_relative_to(inside) and not target.is_relative_to(start):
                    skipped.append({"file": str(path), "reason": "a link to another folder of the dataset"})
                else:
                    seen.add(target)
                    walk(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                target = path.resolve()
                if inside is not None and target.is_relative_to(inside) and not target.is_relative_to(start):
                    skipped.append({"file": str(path), "reason": "a link to another folder of the dataset"})
                else:
                    images.append(path)
            else:
                skipped.append({"file": str(path), "reason": "not an image file (by its extension)"})

    walk(folder)
    return sorted(images), skipped
