"""What check_params checks beyond the params' own values, before DVC deletes any stage's outputs: the
environment, the model files the params name, and whether the architecture fits the images (built for
its shapes only, the first time an architecture meets an image size: about 2 s on Keras' NumPy backend
where JAX is installed, 5-7 s on TensorFlow; then read from the cache)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

from refinelab.core.environment import check_retired
from refinelab.core.errors import ParamsError
from refinelab.core.fileio import cache_root, file_digest, write_json
from refinelab.params.schema import Params, TransferSpec

log = logging.getLogger(__name__)

# The most parameters a model may have: more is what an image size meant for a transfer base gives a dense
# network (data.image_size [768, 768] on Fashion-MNIST: 151 million, a 1.7 GB file, 15.7 GB of memory).
MAX_PARAMETERS = 100_000_000


def check_before_running(params: Params, input_shape: tuple[int, int, int] | None, num_classes: int) -> None:
    """Raise :class:`ParamsError` for what would otherwise fail only when train starts. ``input_shape`` is
    the images' shape when known before prepare (set by data.image_size, or a built-in dataset's)."""
    check_retired()
    spec = params.architecture
    if isinstance(spec, TransferSpec):
        if spec.pretrained_path and not Path(spec.pretrained_path).is_file():
            raise ParamsError(f"{params.preset}: weights: {spec.pretrained_path}: no such model file (train a model "
                              "with refinelab and copy its models/model.keras there)")
        return  # A base's input size is its own: images are resized to it.
    if input_shape is None:
        return
    count = parameter_count(params, input_shape, num_classes)
    if count is None:
        return
    if count > MAX_PARAMETERS:
        raise ParamsError(
            f"{params.preset} on {input_shape[0]}x{input_shape[1]} images would have {count / 1e6:.0f} million "
            f"parameters (at most {MAX_PARAMETERS // 1_000_000} million): use a smaller data.image_size, or a "
            "transfer preset for large photos")
    log.info("%s on %dx%d images: %d parameters", params.preset, input_shape[0], input_shape[1], count)


def parameter_count(params: Params, input_shape: tuple[int, int, int], num_classes: int) -> int | None:
    """The parameters of the model train would build; a :class:`ParamsError` if it cannot be built for
    these images (a preset too deep for them); None if it could not be built for another reason. Kept in the cache by architecture, image shape and
    classes (regularization adds no parameter): an experiment that changes other params imports no Keras."""
    builders = importlib.util.find_spec("refinelab.models.builders").origin  # Its code decides the count too.
    key = json.dumps([params.architecture.model_dump(mode="json"), list(input_shape), num_classes,
                      file_digest(builders)], sort_keys=True)
    record = cache_root() / "preflight" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    try:
        known = json.loads(record.read_text())
        if not (isinstance(known, dict) and ("error" in known or isinstance(known.get("parameters"), int))):
            raise ValueError(record)
    except (OSError, ValueError):  # None yet, or damaged: build.
        try:
            known = {"parameters": build_and_count(params, input_shape, num_classes)}
        except ParamsError as exc:
            known = {"error": f"{params.preset} on {input_shape[0]}x{input_shape[1]} images: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a check that cannot run must not stop every run: train will say.
            log.warning("%s on %dx%d images: not checked before training (%s: %s)", params.preset, *input_shape[:2],
                        type(exc).__name__, exc)
            return None
        with contextlib.suppress(OSError):  # A cache that cannot be written only costs the next run the build.
            write_json(record, known)
    if "error" in known:
        raise ParamsError(known["error"])
    return known["parameters"]


def build_and_count(params: Params, input_shape: tuple[int, int, int], num_classes: int) -> int:
    # Shapes only: this process trains nothing. Keras' NumPy backend needs JAX for its convolutions; without
    # JAX, TensorFlow (a few seconds more to import).
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "numpy" if importlib.util.find_spec("jax") else "tensorflow"
    try:
        from refinelab.models.builders import build_model

        return build_model(params.architecture, input_shape, num_classes, name=params.preset).count_params()
    finally:  # For whatever this process runs next (Keras, once imported, keeps the backend it has).
        if before is None:
            os.environ.pop("KERAS_BACKEND")
        else:
            os.environ["KERAS_BACKEND"] = before
