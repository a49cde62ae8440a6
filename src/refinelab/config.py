"""Load params.yaml once, up front, into validated and frozen objects.

Every stage calls :func:`load_params` before doing any heavy work, so a typo'd key or an
out-of-range value fails in well under a second with a message naming the key.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from refinelab.errors import ParamsError

DEFAULT_PARAMS_FILE = Path("params.yaml")


class StrictModel(BaseModel):
    """Unknown keys are errors and types are not silently coerced ("5" is not an int)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataParams(StrictModel):
    validation_split: float = Field(0.1, gt=0, lt=1)
    # Cap on the number of images per split (train, validation, test); 0 keeps them all.
    limit: int = Field(0, ge=0)
    # [height, width] every image is made; null keeps the dataset's own size.
    image_size: Optional[list[Annotated[int, Field(ge=1, le=4096)]]] = Field(None, min_length=2, max_length=2)
    # grayscale | rgb; null keeps the dataset's own.
    color_mode: Optional[Literal["grayscale", "rgb"]] = None
    # How an image of another shape is made image_size: centre crop, pad, or stretch.
    resize: Literal["crop", "pad", "stretch"] = "crop"


# The augmentation ops (the registry in refinelab.augmentation builds them; a test keeps the two in step).
AugmentOp = Literal[
    "invert", "rotate90", "flip_horizontal", "flip_vertical",
    "rotation", "zoom", "shear", "shift", "brightness", "contrast", "noise", "cutout",
]


class AugmentParams(StrictModel):
    """Offline copies and on-the-fly augmentation of the training split (never validation or test)."""

    # none | offline (enlarge the training set once) | online (transform every batch) | both.
    mode: Literal["none", "offline", "online", "both"] = "none"
    # Offline: per entry (an op, or a list of ops applied in turn), `copies` transformed copies of every image.
    offline: list[Union[AugmentOp, list[AugmentOp]]] = Field(default_factory=lambda: ["invert", "rotate90"])
    copies: int = Field(1, ge=1, le=100)
    # Online: ops applied in turn to every training batch, drawn afresh each epoch.
    online: list[AugmentOp] = Field(
        default_factory=lambda: ["rotation", "zoom", "shear", "shift", "flip_horizontal"]
    )
    # Strengths, shared by both modes.
    rotation: float = Field(10.0, ge=0, le=180)  # max degrees, either way
    zoom: float = Field(0.1, ge=0, lt=1)  # max fraction in or out
    shear: float = Field(0.1, ge=0, le=1)  # max fraction of the image sheared across, either axis
    shift: float = Field(0.1, ge=0, lt=1)  # max fraction of height and width
    brightness: float = Field(0.2, ge=0, le=1)  # max change, fraction of the 0-255 range
    contrast: float = Field(0.2, ge=0, le=1)  # max contrast change factor
    noise: float = Field(0.03, ge=0, le=1)  # Gaussian noise standard deviation, fraction of 0-255
    cutout: float = Field(0.2, gt=0, le=1)  # max fraction of the image erased (one rectangle)
    # How rotation, zoom, shear and shift fill pixels that come from outside the image.
    fill_mode: Literal["constant", "nearest", "reflect", "wrap"] = "nearest"


class TrainParams(StrictModel):
    lr_schedule: Literal["constant", "cosine"] = "cosine"


class PlotParams(StrictModel):
    # Images shown in the grid of test predictions drawn by the plot stage.
    grid_size: int = Field(25, ge=1, le=100)


class MLPSpec(StrictModel):
    """A multi-layer perceptron: Flatten, then one Dense layer per entry of ``hidden``."""

    type: Literal["mlp"]
    hidden: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    batch_norm: bool = False


class CNNSpec(StrictModel):
    """Conv blocks (``convs_per_block`` convolutions + pooling per entry of ``filters``), then a dense head."""

    type: Literal["cnn"]
    filters: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    kernel_size: int = Field(3, ge=1, le=11)
    convs_per_block: int = Field(1, ge=1, le=4)
    padding: Literal["same", "valid"] = "same"
    pooling: Literal["max", "avg"] = "max"
    batch_norm: bool = False
    # How the last feature map becomes a vector: flatten it, or average it per channel.
    head_pooling: Literal["flatten", "avg"] = "flatten"
    dense: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [128])


ArchitectureSpec = Annotated[Union[MLPSpec, CNNSpec], Field(discriminator="type")]


class Params(StrictModel):
    """The whole params.yaml. The everyday knobs are top-level keys (``-S dropout=0.25``)."""

    dataset: str = "fashion_mnist"
    model: str
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    learning_rate: float = Field(gt=0, le=10)
    dropout: float = Field(ge=0, lt=1)
    l2: float = Field(ge=0, le=1)
    seed: int = Field(ge=0, le=2**31 - 1)
    data: DataParams = DataParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    plot: PlotParams = PlotParams()
    architectures: dict[str, ArchitectureSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_exist(self) -> Params:
        from refinelab.datasets import DATASETS  # Deferred: keeps this module importable alone.

        if self.model not in self.architectures:
            raise ValueError(
                f"model: unknown architecture {self.model!r}; valid names: "
                f"{', '.join(sorted(self.architectures))}"
            )
        if self.dataset not in DATASETS:
            raise ValueError(
                f"dataset: unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS.names())}"
            )
        return self

    @property
    def architecture(self) -> MLPSpec | CNNSpec:
        return self.architectures[self.model]

    def resolved(self) -> dict[str, Any]:
        """The params that define this run, as plain data (saved beside the model)."""
        resolved = self.model_dump(mode="json", exclude={"architectures"})
        resolved["architecture"] = self.architecture.model_dump(mode="json")
        return resolved


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for model in (Params, DataParams, AugmentParams, TrainParams, PlotParams, MLPSpec, CNNSpec):
        keys.update(model.model_fields)
    return keys


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    # Discriminated unions put the tag in the location ("architectures.x.mlp.hidden"): drop it.
    location = location.replace(".mlp.", ".").replace(".cnn.", ".")
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, sorted(_known_keys()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{location}: unknown key{hint}"
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    return f"{location}: {error['msg']} (got {json.dumps(error.get('input'), default=str)})"


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` listing every problem by key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(error) for error in exc.errors())
        raise ParamsError(f"{source} is invalid:\n  {problems}") from None


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, source=str(path))
