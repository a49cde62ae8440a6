"""``refinelab predict``: classify image files with a trained model, prepared exactly as in training.

The model file itself (or, for models saved before it carried them, the ``params.json`` the train stage
wrote beside it) holds the class names and the :class:`~refinelab.prepare.images.Preprocessing` (size,
colour mode, crop/pad/stretch) of its training data; pixel scaling is inside the model. Each file goes through
:func:`~refinelab.prepare.images.load_image`, the function prepare uses for folder datasets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from refinelab.core.errors import DataError
from refinelab.models.artifact import load_trained_model, prediction_record
from refinelab.prepare.images import Preprocessing, load_image
from refinelab.prepare.images import image_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first

    def to_dict(self) -> dict:
        return {"path": self.path, "top": [{"class": name, "probability": p} for name, p in self.top]}


@dataclass(frozen=True)
class FileError:
    path: str
    error: str


@dataclass(frozen=True)
class Predictor:
    model: keras.Model
    class_names: list[str]
    preprocessing: Preprocessing

    @classmethod
    def load(cls, model_path: str | Path) -> Predictor:
        """The model with its class names and preprocessing (:func:`~refinelab.models.artifact.prediction_record`)."""
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DataError(f"{model_path}: model file not found")
        resolved = prediction_record(model_path)
        try:
            class_names, preprocessing = resolved["class_names"], Preprocessing.from_dict(resolved["preprocessing"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{model_path}: its record has no usable class names and preprocessing ({exc!r})") from None
        return cls(load_trained_model(model_path, compile=False), class_names, preprocessing)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.model.predict(images, verbose=0)

    def predict_files(self, paths: Sequence[Path], top_k: int, batch_size: int = 64):
        """(predictions, errors): an unreadable file is reported in ``errors`` and the rest still predicted."""
        predictions: list[Prediction] = []
        errors: list[FileError] = []
        for start in range(0, len(paths), batch_size):
            readable, images = [], []
            for path in paths[start : start + batch_size]:
                try:
                    images.append(load_image(path, self.preprocessing))
                    readable.append(path)
                except DataError as exc:
                    errors.append(FileError(str(path), str(exc)))
            if not images:
                continue
            for path, row in zip(readable, self.probabilities(np.stack(images))):
                best = np.argsort(-row, kind="stable")[:top_k]
                predictions.append(Prediction(str(path), [(self.class_names[i], float(row[i])) for i in best]))
        return predictions, errors


def expand_targets(targets: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(files, empty folders): files as given, folders expanded (recursively, sorted) to the image files
    they hold, and the folders that hold none.

    A path that does not exist is kept, so it is reported as an error with the others.
    """
    files: list[Path] = []
    empty: list[Path] = []
    for target in map(Path, targets):
        if target.is_dir():
            found = image_files(target, recursive=True)[0]  # As prepare finds a class folder's.
            if not found:
                empty.append(target)
            files.extend(found)
        else:
            files.append(target)
    return files, empty
