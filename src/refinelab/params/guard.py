"""The params a stage runs with: validated before its work, and unchanged until it ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from refinelab.core.backend import select_backend
from refinelab.core.errors import ParamsError
from refinelab.params.files import param_values, read_config
from refinelab.params.layout import STAGE_FILES, STAGE_PARAMS
from refinelab.params.schema import Params, parse_params


@contextlib.contextmanager
def stage_params(params_file: str | Path, stage: str, cpu_only: bool = False) -> Iterator[Params]:
    """The validated params for the stage's work, Keras' backend chosen (``cpu_only``: see
    :func:`~refinelab.core.backend.select_backend`); the stage fails if the params it depends on change while
    it runs.

    DVC reads params.yaml for dvc.lock only after a stage finishes: an edit made meanwhile would be
    recorded beside outputs made with the old values, and ``dvc status`` would call them up to date.
    """
    keys = STAGE_PARAMS[stage]
    files = [Path(params_file).parent / name for name in STAGE_FILES.get(stage, ())]
    config = read_config(params_file)
    contents = [path.read_bytes() for path in files]
    before = param_values(config, keys)
    params = parse_params(config, source=str(params_file))
    select_backend(params.backend, cpu_only)  # Before the stage's work imports Keras.
    yield params
    after = param_values(read_config(params_file), keys)
    changed = [key for key in keys if before[key] != after[key]]
    changed += [str(path) for path, content in zip(files, contents) if path.read_bytes() != content]
    if changed:
        raise ParamsError(
            f"params changed while the {stage} stage ran ({', '.join(changed)}): its outputs were made with "
            "the old values, which DVC would not record. Run it again; to try other values while a run is going, "
            "queue them (dvc exp run --queue) or run them in a temporary copy (dvc exp run --temp)"
        )
