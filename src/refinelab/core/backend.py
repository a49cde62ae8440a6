"""Keras' backend (the `backend:` param): chosen through KERAS_BACKEND before Keras is imported.

TensorFlow is the default. With JAX, training, evaluation and prediction run without TensorFlow
installed: the input pipeline is then a ``keras.utils.PyDataset`` (refinelab.data.pipeline), and
compiled programs are kept on disk for the next process (:func:`keep_jax_compilations`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from refinelab.core.environment import JAX_CACHE_ENV
from refinelab.core.errors import ParamsError
from refinelab.core.fileio import cache_root

BACKENDS = ("tensorflow", "jax")  # The `backend:` param's values.

# Bounds the compilation cache; JAX drops the least recently used programs past it.
JAX_CACHE_BYTES = 2**30


def select_backend(name: str, cpu_only: bool = False) -> None:
    """Make ``name`` Keras' backend. Keras reads KERAS_BACKEND once, when it is imported; a process
    that imported it already with another backend cannot switch (that is a bug of the caller).

    ``cpu_only``: JAX leaves a GPU alone, for work too small to repay starting CUDA and compiling each
    op for the GPU (JAX_PLATFORMS, unless the user set it)."""
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
    if name == "jax":
        keep_jax_compilations()
        if cpu_only:
            os.environ.setdefault("JAX_PLATFORMS", "cpu")


def jax_cache_folder() -> Path | None:
    """$REFINELAB_JAX_CACHE, else jax/ in refinelab's cache folder (refinelab.core.fileio.cache_root); None
    for "off"."""
    folder = os.environ.get(JAX_CACHE_ENV)
    if folder == "off":
        return None
    return Path(folder) if folder else cache_root() / "jax"


def keep_jax_compilations() -> None:
    """JAX's persistent compilation cache, shared by every stage process, experiment and queue worker.

    On JAX each process compiles every program it runs: the model's initializers, its training,
    validation and prediction steps, each new batch shape. Each stage is a process, so evaluate compiled
    again what train had, and every experiment again what the last one had (measured on the 2-core CPU:
    loading the default model took 3.3 s, 0.6 s with the cache). JAX reads these variables when it is
    imported; ones the user set win.
    """
    folder = jax_cache_folder()
    if folder is None:
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(folder))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # Default 1 s: most of ours are less.
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(JAX_CACHE_BYTES))


def compiled(function: Callable) -> Callable:
    """``function`` (of arrays, e.g. around a model's ``stateless_call``) as one XLA program on JAX, where
    layers called outside ``fit`` run op by op, each op compiled on its own for each new shape; as it is on
    TensorFlow, whose eager ops need no compiling."""
    import keras

    if keras.backend.backend() != "jax":
        return function
    import jax

    return jax.jit(function)
