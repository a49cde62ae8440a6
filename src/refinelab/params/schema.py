"""The params schema: params.yaml, architectures.yaml and datasets.yaml as validated, frozen objects.

Every stage validates its params (:func:`parse_params`, through :mod:`refinelab.params.files`) before
doing any heavy work, so a typo'd key or an out-of-range value fails in well under a second with a
message naming the key. Keras-free: the names it accepts come from :mod:`refinelab.params.names`.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from refinelab.core.backend import BACKENDS
from refinelab.core.errors import ParamsError
from refinelab.params.layout import DATASETS_FILE, DATASETS_FILE_KEYS, PRESETS_FILE, TRAIN_STAGE_PARAMS
from refinelab.params.names import AUGMENTATION_OPS, AUTO_PRESETS, DATASETS, OPTIMIZERS, TRANSFER_BASES

DISTRIBUTE_STRATEGIES = ("none", "mirrored", "multi_worker")


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
    # Fraction of train held out as test, for datasets that have no test split of their own.
    test_split: float = Field(0.2, gt=0, lt=1)
    # A corrupt or truncated image file: fail naming it, or skip it and count it in the data report.
    on_bad_image: Literal["fail", "skip"] = "fail"


Sha256 = Optional[Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]]


class H5Params(StrictModel):
    """HDF5 files in the SIGNS layout. Given one file only, test and validation are split off it."""

    train: Optional[str] = None  # a path or an https:// / file:// URL
    test: Optional[str] = None
    train_sha256: Sha256 = None
    test_sha256: Sha256 = None
    # Key names; "{split}" becomes train or test, the role the file is given under.
    x_key: str = "{split}_set_x"
    y_key: str = "{split}_set_y"
    classes_key: str = "list_classes"  # class names, read when the file has this key


class ImageFolderParams(StrictModel):
    """One folder per class; either one tree (split by fraction) or pre-split train/ valid/ test/ folders."""

    path: Optional[str] = None  # a folder, or an https:// / file:// URL of a zip/tar.gz archive
    sha256: Sha256 = None


class FilenameLabelsParams(StrictModel):
    """A flat folder whose labels come from the file names; files matching no class are skipped."""

    path: Optional[str] = None
    sha256: Sha256 = None
    # Class names in label order; a file belongs to the class whose name starts its file name ...
    classes: list[str] = Field(default_factory=list)
    # ... or to the class captured by this regex's first group (matched at the start of the name).
    pattern: Optional[str] = None
    test_dir: Optional[str] = "test_set"  # subfolder holding the test split, if any

    @model_validator(mode="after")
    def _pattern_compiles(self) -> FilenameLabelsParams:
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise ValueError(f"filename_labels.pattern: not a valid regex ({exc})") from None
            if groups < 1:
                raise ValueError(f"filename_labels.pattern: {self.pattern!r} needs a group capturing the class")
        return self


AugmentOp = Literal[tuple(AUGMENTATION_OPS)]


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
    # How they resample. Each geometric op is its own Keras layer, so bilinear resampling compounds:
    # four in a row blur a 28x28 image (edge energy -42%), nearest keeps it sharp (-2%).
    interpolation: Literal["nearest", "bilinear"] = "nearest"


class TrainParams(StrictModel):
    optimizer: Literal[OPTIMIZERS] = "adam"
    # Decoupled weight decay (AdamW's; Keras applies it the same way for adam and sgd).
    weight_decay: float = Field(0.0, ge=0, lt=1)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    # Clip each gradient to this L2 norm; null = no clipping.
    clipnorm: Optional[float] = Field(None, gt=0)
    # constant | cosine (decays to 0 over all epochs) | plateau (halved after 2 epochs without a better
    # validation loss).
    lr_schedule: Literal["constant", "cosine", "plateau"] = "cosine"
    # Epochs without a better validation loss before training stops, keeping the best epoch's
    # weights; 0 turns early stopping off.
    early_stopping: int = Field(0, ge=0)
    # Softened one-hot targets (0 = plain cross-entropy on integer labels).
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # none | balanced: weight each class by n_samples / (n_classes * its count) (scikit-learn's "balanced").
    class_weight: Literal["none", "balanced"] = "none"
    # none | mirrored: one model replica per GPU of this machine (per logical CPU device where there is
    # no GPU), gradients summed across replicas each step; batch_size is the global batch | multi_worker:
    # the same across the machines $TF_CONFIG names, one train-stage process on each (refinelab.train.distribution).
    distribute: str = "none"
    # Stop after this many of `epochs` epochs, the schedule still spanning all of them, and keep the
    # backup: the same params without it continue from there (successive halving's rungs); null = all.
    until_epoch: Optional[int] = Field(None, ge=1)
    # TensorFlow's thread pools in train: auto = its default (every core); a number limits them, for runs
    # side by side (`dvc queue start -j N`). A param, not a machine setting: the count changes how sums are
    # split between threads, so results differ in the last digits (0.7417 and 0.7300 on one run).
    threads: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = "auto"

    @field_validator("distribute")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in DISTRIBUTE_STRATEGIES:
            raise ValueError(f"unknown strategy {value!r}; valid: {', '.join(DISTRIBUTE_STRATEGIES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        if self.optimizer == "adamw" and self.weight_decay == 0:
            raise ValueError("optimizer adamw needs weight_decay > 0 (without it, it is adam)")
        return self


class MLPSpec(StrictModel):
    """A multi-layer perceptron: Flatten, then one Dense layer per entry of ``hidden``."""

    type: Literal["mlp"]
    hidden: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    # Batch norm after each hidden Dense layer. Without it, Adam's first steps on thousands of
    # positive inputs (64x64 RGB = 12,288) push every unit dead and the MLP predicts one class.
    batch_norm: bool = True
    # Dropout on the input pixels (the "visible layer"), besides the top-level dropout after hidden layers.
    input_dropout: float = Field(0.0, ge=0, lt=1)


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
    # Dropout after each conv block's pooling, besides the top-level dropout in the dense head.
    block_dropout: float = Field(0.0, ge=0, lt=1)


class ResidualCNNSpec(StrictModel):
    """A stem convolution, then one stage of ``blocks_per_stage`` residual blocks per entry of ``filters``
    (each stage after the first halves the resolution), then a dense head."""

    type: Literal["residual_cnn"]
    filters: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    blocks_per_stage: int = Field(1, ge=1, le=8)
    kernel_size: int = Field(3, ge=1, le=11)
    padding: Literal["same"] = "same"  # A residual sum needs equal shapes.
    batch_norm: bool = True
    head_pooling: Literal["flatten", "avg"] = "avg"
    dense: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)


TRANSFER_WEIGHTS_HELP = "imagenet, none (random initialisation) or the path of a .keras model refinelab trained"


class TransferSpec(StrictModel):
    """A pretrained base as feature extractor (frozen, partly frozen or fine-tuned), then a new dense head.

    ``weights`` is ``imagenet``, ``none``, or the path of a ``.keras`` model refinelab trained
    (its layers up to the output layer become the base; ``base`` is then left out).
    """

    type: Literal["transfer"]
    base: Optional[Literal[TRANSFER_BASES]] = None
    weights: str = "imagenet"
    # Height = width the images are resized to for a keras.applications base (inside the model).
    input_size: int = Field(96, ge=32, le=512)
    # all | none | the number of base layers frozen from the bottom.
    freeze: Union[Literal["all", "none"], Annotated[int, Field(ge=0)]] = "all"
    head_pooling: Literal["flatten", "avg"] = "avg"
    dense: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [128])
    batch_norm: bool = False  # in the head
    # Learning rate of the unfrozen base layers (the head uses learning_rate); null = learning_rate.
    base_learning_rate: Optional[float] = Field(None, gt=0, le=10)
    # Two-phase schedule: train only the head (base frozen) for head_epochs, then fine-tune the
    # unfrozen base layers with the head for the remaining epochs. 0 = one phase.
    head_epochs: int = Field(0, ge=0)

    @property
    def pretrained_path(self) -> str | None:
        return None if self.weights in ("imagenet", "none") else self.weights

    @model_validator(mode="after")
    def _consistent(self) -> TransferSpec:
        if self.pretrained_path and self.base is not None:
            raise ValueError(f"base: leave it out when weights is a model file ({self.weights!r})")
        if self.pretrained_path and "input_size" in self.model_fields_set:
            raise ValueError(
                f"input_size: leave it out when weights is a model file ({self.weights!r}): "
                "images are resized to that model's own input size"
            )
        if not self.pretrained_path and self.base is None:
            raise ValueError(
                f"base: required ({', '.join(TRANSFER_BASES)}) with weights: {self.weights}"
            )
        if self.pretrained_path and not self.weights.endswith(".keras"):
            raise ValueError(f"weights: expected {TRANSFER_WEIGHTS_HELP}, got {self.weights!r}")
        if self.freeze == "all" and (self.head_epochs or self.base_learning_rate is not None):
            raise ValueError("freeze: all leaves no base layer to fine-tune; head_epochs and base_learning_rate need "
                             "freeze: none or a number of layers")
        return self


# One spec class per architecture type (its `type` literal); refinelab.models.builders registers a builder
# for each.
ARCHITECTURE_SPECS = (MLPSpec, CNNSpec, ResidualCNNSpec, TransferSpec)
ARCHITECTURE_TYPES = tuple(spec.model_fields["type"].annotation.__args__[0] for spec in ARCHITECTURE_SPECS)
ArchitectureSpec = Annotated[Union[ARCHITECTURE_SPECS], Field(discriminator="type")]


MAX_BATCH_SIZE = 65_536
AUTO_MODEL = "auto"  # `model: auto`: the dataset's preset (refinelab.params.names.AUTO_PRESETS).
ARCH_HELP = "one-key tweaks of the preset `model:` names (null keeps the preset's value)"


class Params(StrictModel):
    """params.yaml with its presets and dataset settings. The everyday knobs are top-level keys
    (``-S dropout=0.25``)."""

    model: str
    dropout: float = Field(ge=0, lt=1)
    l2: float = Field(ge=0, le=1)
    l1: float = Field(0.0, ge=0, le=1)
    learning_rate: float = Field(gt=0, le=10)
    epochs: int = Field(ge=1, le=10_000)
    # auto: chosen from the training-set size (refinelab.train.stage.resolve_batch_size); a number wins.
    batch_size: Union[Literal["auto"], int] = "auto"
    dataset: str = "fashion_mnist"
    seed: int = Field(ge=0, le=2**31 - 1)
    # Keras' backend for augment, train and evaluate (refinelab.core.backend); jax runs without TensorFlow.
    backend: Literal[BACKENDS] = "tensorflow"
    # Overrides of the selected preset's spec, e.g. -S arch.filters=[16,32]; other spec keys with
    # -S +arch.<key>=<value>.
    arch: dict[str, Any] = Field(default_factory=dict)
    data: DataParams = DataParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    # From datasets.yaml.
    h5: H5Params = H5Params()
    image_folder: ImageFolderParams = ImageFolderParams()
    filename_labels: FilenameLabelsParams = FilenameLabelsParams()
    # From architectures.yaml.
    architectures: dict[str, ArchitectureSpec] = Field(min_length=1)

    _architecture: Any = PrivateAttr(default=None)
    _preset: str = PrivateAttr(default="")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _auto_or_a_batch(cls, value: Any) -> Any:
        # One message for the two forms (a Union would report one line per member).
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_BATCH_SIZE):
            return value
        raise ValueError(f"expected auto or a whole number from 1 to {MAX_BATCH_SIZE} (got {json.dumps(value)})")

    @model_validator(mode="after")
    def _names_exist(self) -> Params:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"dataset: unknown dataset {self.dataset!r}; valid names: {', '.join(sorted(DATASETS))}"
            )
        self._preset = AUTO_PRESETS[self.dataset] if self.model == AUTO_MODEL else self.model
        if self._preset not in self.architectures:
            auto = f" (model: auto, for dataset {self.dataset})" if self.model == AUTO_MODEL else ""
            raise ValueError(
                f"model: unknown architecture {self._preset!r}{auto}; valid names ({PRESETS_FILE}): "
                f"{AUTO_MODEL}, {', '.join(sorted(self.architectures))}"
            )
        self._architecture = tweaked_preset(self._preset, self.architectures[self._preset], self.arch)
        head_epochs = getattr(self.architecture, "head_epochs", 0)
        if head_epochs >= self.epochs:
            raise ValueError(
                f"{self._preset}.head_epochs ({PRESETS_FILE}): {head_epochs} leaves no fine-tuning epoch "
                f"of epochs={self.epochs}"
            )
        if self.train.until_epoch is not None and self.train.until_epoch > self.epochs:
            raise ValueError(f"train.until_epoch: {self.train.until_epoch} is past the last epoch (epochs={self.epochs})")
        if self.train.until_epoch is not None and self.train.distribute == "multi_worker":
            raise ValueError("train.until_epoch: a multi_worker run keeps no backup to continue from; "
                             "leave train.until_epoch out, or train on one machine")
        if self.backend != "tensorflow" and self.train.distribute != "none":
            raise ValueError(f"train.distribute: {self.train.distribute} is TensorFlow's tf.distribute; it needs "
                             f"backend: tensorflow (got {self.backend})")
        return self

    @property
    def preset(self) -> str:
        """The architectures.yaml preset the run builds: ``model``, or the dataset's for ``model: auto``."""
        return self._preset

    @property
    def architecture(self) -> MLPSpec | CNNSpec | ResidualCNNSpec | TransferSpec:
        """The preset ``model`` names (:attr:`preset`), with the ``arch`` tweaks applied."""
        return self._architecture

    def resolved(self) -> dict[str, Any]:
        """The params the train stage reads, as plain data (saved beside the model).

        Only keys the train stage depends on in dvc.yaml, and the preset it used: anything else could
        change without re-running train and leave the saved copy stale.
        """
        resolved = self.model_dump(mode="json", include=set(TRAIN_STAGE_PARAMS))
        resolved["preset"] = self.preset
        resolved["architecture"] = self.architecture.model_dump(mode="json")
        return resolved


_SPEC_ADAPTER = TypeAdapter(ArchitectureSpec)


def tweaked_preset(name: str, preset: BaseModel, tweaks: dict[str, Any]):
    """``preset`` with every non-null key of ``tweaks`` (params' ``arch:``) replacing its value."""
    if not isinstance(tweaks, dict):
        raise ValueError(f"arch: expected a mapping of {ARCH_HELP}, got {json.dumps(tweaks, default=str)}")
    changes = {key: value for key, value in tweaks.items() if value is not None}
    if not changes:
        return preset
    spec_keys = sorted(set(type(preset).model_fields) - {"type"})
    if unknown := sorted(set(changes) - set(spec_keys)):
        raise ValueError(
            f"arch.{unknown[0]}: the {preset.type} preset {name!r} has no such key (its keys: {', '.join(spec_keys)})"
        )
    try:
        return _SPEC_ADAPTER.validate_python({**preset.model_dump(exclude_unset=True), **changes})
    except ValidationError as exc:
        problems = "; ".join(
            f"arch.{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise ValueError(f"{problems} (tweaking preset {name!r})") from None


def _param_paths() -> list[str]:
    """Every key params.yaml can hold, dotted (``train.distribute``): the top level and its sections."""
    paths = []
    for name, field in Params.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            paths += [f"{name}.{key}" for key in section.model_fields]
        else:
            paths.append(name)
    return paths


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for model in (
        Params, DataParams, AugmentParams, TrainParams, *ARCHITECTURE_SPECS, H5Params, ImageFolderParams,
        FilenameLabelsParams,
    ):
        keys.update(model.model_fields)
    return keys


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    # Discriminated unions put the tag in the location ("architectures.x.mlp.hidden"): drop it.
    location = re.sub(rf"\.({'|'.join(ARCHITECTURE_TYPES)})(?=\.|$)", "", location, count=1)
    # Presets and dataset settings live in their own files: say which.
    if location.startswith("architectures."):
        location = f"{PRESETS_FILE}: {location.removeprefix('architectures.')}"
    elif location.split(".")[0] in DATASETS_FILE_KEYS[:-1]:
        location = f"{DATASETS_FILE}: {location}"
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        # A key of params.yaml put in the wrong section: name the one it belongs to (a top-level
        # `distribute` is `train.distribute`), then the closest known name.
        elsewhere = [path for path in _param_paths() if path.rsplit(".", 1)[-1] == key and path != location]
        close = elsewhere or difflib.get_close_matches(key, sorted(_known_keys()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{location}: unknown key{hint}"
    if error["type"] == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        return f"{location}: {message}" if location else message
    if error["type"] == "missing":
        return f"{location}: missing (the project's params.yaml has every key with its default)"
    given = json.dumps(error.get("input"), default=str)
    return f"{location}: {error['msg']} (got {given if len(given) <= 80 else given[:77] + '...'})"


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` listing every problem by key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(error) for error in exc.errors())
        raise ParamsError(f"{source} is invalid:\n  {problems}") from None


