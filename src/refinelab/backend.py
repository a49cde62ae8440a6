"""Keras' backend (the `backend:` param): chosen through KERAS_BACKEND before Keras is imported.

TensorFlow is the default. With JAX, training, evaluation and prediction run without TensorFlow
installed: the input pipeline is then a ``keras.utils.PyDataset`` (refinelab.pipeline_data).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from refinelab.config import BACKENDS
from refinelab.errors import ParamsError


def select_backend(name: str) -> None:
    """Make ``name`` Keras' backend. Keras reads KERAS_BACKEND once, when it is imported; a process
    that imported it already with another backend cannot switch (that is a bug of the caller)."""
    if name not in BACKENDS:
        raise ParamsError(f"backend: unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    if importlib.util.find_spec(name) is None:
        raise ParamsError(f"backend: {name} is not installed; pip install -c requirements.lock -e '.[{name}]' "
                          "(or choose another backend)")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise RuntimeError(f"Keras was imported with the {keras.backend.backend()} backend before {name} was chosen")
        return
    os.environ["KERAS_BACKEND"] = name
