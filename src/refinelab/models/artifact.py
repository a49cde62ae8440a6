"""The trained model as the pipeline hands it on: ``model.keras`` and, beside it, ``params.json`` (the
train stage's resolved params, class names, image shape and preprocessing). The train stage saves both
here; evaluate, ``refinelab predict`` and transfer from a refinelab model load them here.
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


def trained_backend(model_path: str | Path) -> str:
    """The Keras backend a refinelab model was trained with (its resolved params, saved beside it);
    tensorflow for a model from elsewhere. The .keras file itself is the same for every backend."""
    try:
        resolved = json.loads(record_path(model_path).read_text())
    except (OSError, ValueError):
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


def make_reproducible(archive: Path) -> None:
    """Rewrite a .keras archive without its save time and memory addresses, so that the same training
    gives the same bytes (and `dvc.lock` does not change when a run is repeated)."""
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


def save_model(model: keras.Model, model_path: str | Path, resolved: dict[str, Any]) -> None:
    model_path = Path(model_path)
    with atomic_path(model_path) as temporary:
        model.save(temporary)
        make_reproducible(temporary)
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
