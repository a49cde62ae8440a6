"""The trained model as the pipeline hands it on: ``model.keras`` and, beside it, ``params.json`` (the
train stage's resolved params, class names, image shape and preprocessing). The train stage saves both
here; evaluate, ``refinelab predict`` and transfer from a refinelab model load them here.

What prediction needs (class names, input shape, colour mode, resize mode, backend, preset) is also
written into the ``.keras`` archive itself (``refinelab.json``, an entry Keras ignores), so a model file
copied anywhere, or fetched with ``dvc artifacts get``, predicts on its own.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refinelab.core.errors import DataError
from refinelab.core.fileio import atomic_path, read_json, write_json

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

RESOLVED_PARAMS_FILE = "params.json"  # Beside the model.
EMBEDDED_RECORD = "refinelab.json"  # Inside the .keras archive.
# The part of the record prediction needs.
PREDICTION_KEYS = ("class_names", "image_shape", "preprocessing", "backend", "preset")
# Keras is imported where a model is saved or loaded, not with this module: the backend a model was
# trained with (trained_backend) is read before Keras is imported, to choose Keras' backend.


def record_path(model_path: str | Path) -> Path:
    return Path(model_path).parent / RESOLVED_PARAMS_FILE


def read_record(model_path: str | Path) -> dict[str, Any]:
    """The ``params.json`` beside the model; missing is a :class:`DataError` naming it."""
    path = record_path(model_path)
    try:
        return read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; the train stage writes it beside the model") from None


def embedded_record(model_path: str | Path) -> dict[str, Any] | None:
    """What prediction needs, from inside the ``.keras`` file; None for a model saved without it, or a file
    that is no zip archive (loading the model names that problem)."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            return json.loads(archive.read(EMBEDDED_RECORD))
    except (KeyError, OSError, zipfile.BadZipFile):
        return None
    except ValueError as exc:
        raise DataError(f"{model_path}: {EMBEDDED_RECORD} inside it is not JSON ({exc})") from None


def prediction_record(model_path: str | Path) -> dict[str, Any]:
    """Class names, preprocessing and backend: from inside the model file, else from ``params.json`` beside
    it (models saved before the record travelled with them)."""
    embedded = embedded_record(model_path)
    return embedded if embedded is not None else read_record(model_path)


def trained_backend(model_path: str | Path) -> str:
    """The Keras backend a refinelab model was trained with (its record, in the model file or beside it);
    tensorflow for a model from elsewhere. The .keras file itself is the same for every backend."""
    try:
        resolved = prediction_record(model_path)
    except (DataError, OSError, ValueError):
        return "tensorflow"
    return resolved.get("backend", "tensorflow") if isinstance(resolved, dict) else "tensorflow"


# What Keras stamps on a saved model besides the model: the time (in its metadata and the zip entries)
# and the memory addresses of shared objects (ids in its config).
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    """The config with each ``shared_object_id`` (an ``id()``) replaced by its order of appearance,
    which keeps what is shared with what."""
    if isinstance(node, dict):
        return {key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
                else renumber_shared_objects(value, numbers) for key, value in node.items()}
    if isinstance(node, list):
        return [renumber_shared_objects(item, numbers) for item in node]
    return node


def make_reproducible(archive: Path, record: dict[str, Any]) -> None:
    """Rewrite a .keras archive without its save time and memory addresses, so that the same training
    gives the same bytes (and `dvc.lock` does not change when a run is repeated), with ``record`` (what
    prediction needs) added as :data:`EMBEDDED_RECORD`."""
    with zipfile.ZipFile(archive) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(archive, "w") as target:
        for info, content in entries:
            if info.filename == KERAS_METADATA:
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            elif info.filename == KERAS_CONFIG:
                content = json.dumps(renumber_shared_objects(json.loads(content), {})).encode()
            stable = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            stable.compress_type, stable.external_attr = info.compress_type, info.external_attr
            target.writestr(stable, content)
        embedded = zipfile.ZipInfo(EMBEDDED_RECORD, date_time=ZIP_EPOCH)
        embedded.compress_type = zipfile.ZIP_DEFLATED
        target.writestr(embedded, json.dumps(record, indent=2, sort_keys=True))


def save_model(model: keras.Model, model_path: str | Path, resolved: dict[str, Any]) -> None:
    model_path = Path(model_path)
    with atomic_path(model_path) as temporary:
        model.save(temporary)
        make_reproducible(temporary, {key: resolved[key] for key in PREDICTION_KEYS if key in resolved})
    write_json(record_path(model_path), resolved)
    log.info("saved %s", model_path)


def load_trained_model(path: str | Path, compile: bool = True) -> keras.Model:
    """A saved ``.keras`` model; a missing or unreadable file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        # Keras itself would report this as "File not found".
        raise DataError(f"{path}: not a Keras model file (a .keras file is a zip archive; this one is not)")
    import keras

    from refinelab.models.optimizers import CUSTOM_OBJECTS

    try:
        return keras.models.load_model(path, compile=compile, custom_objects=CUSTOM_OBJECTS)
    except Exception as exc:  # Keras raises many types here (zip, HDF5, JSON, deserialization errors).
        raise DataError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})") from None
