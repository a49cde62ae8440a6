"""The params a stage runs with: validated before its work, and unchanged until it ends."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from refinelab.core.backend import select_backend
from refinelab.core.errors import ParamsError
from refinelab.params.files import param_values, read_config
from refinelab.core.fileio import read_json, write_json
from refinelab.params.layout import DATASETS_FILE, PRESETS_FILE, STAGE_FILES, STAGE_PARAMS
from refinelab.params.schema import Params, parse_params


# What check_params validated, for the stages DVC runs after it in the same invocation (under .dvc/tmp).
CHECKED_RECORD = Path(".dvc", "tmp", "refinelab-checked-params.json")
SHELLS = {"sh", "bash", "dash", "zsh", "fish", "ksh"}


def dvc_invocation() -> list[float] | None:
    """The `dvc` process running this stage (DVC runs a stage through a shell), as (pid, start time), or
    None outside DVC."""
    if "DVC_STAGE" not in os.environ:
        return None
    import psutil  # DVC's own dependency.

    process = psutil.Process().parent()
    while process is not None and process.name() in SHELLS:
        process = process.parent()
    return None if process is None else [process.pid, process.create_time()]


def config_digest(params_file: str | Path) -> str:
    folder = Path(params_file).parent
    return hashlib.sha256(b"".join(path.read_bytes() for path in (Path(params_file), folder / PRESETS_FILE,
                                                                  folder / DATASETS_FILE) if path.is_file())).hexdigest()


def record_checked(params_file: str | Path) -> None:
    """check_params, run by DVC: what it validated, for the stages of the same `dvc` run to compare."""
    if (invocation := dvc_invocation()) is not None:
        write_json(Path(os.environ.get("DVC_ROOT", ".")) / CHECKED_RECORD,
                   {"invocation": invocation, "digest": config_digest(params_file)})


def check_unchanged_since_checked(params_file: str | Path) -> None:
    """A stage DVC runs after check_params in the same `dvc` run finds the params files as they were
    validated. A second `dvc exp run` started meanwhile writes its -S values between two stages, where no
    stage holds the workspace lock: the rest of this run would train on a mix of both runs' values."""
    if (invocation := dvc_invocation()) is None:
        return
    try:
        record = read_json(Path(os.environ.get("DVC_ROOT", ".")) / CHECKED_RECORD)
    except (OSError, ValueError):
        return
    if record.get("invocation") == invocation and record.get("digest") != config_digest(params_file):
        raise ParamsError(
            f"{params_file} changed after check_params validated it in this run (another `dvc exp run` wrote its "
            "values meanwhile?): this run stops rather than train on a mix of both runs' values. Run experiments "
            "one at a time here, or queue them: `dvc exp run --queue -S ...`, then `dvc queue start`")


@contextlib.contextmanager
def stage_params(params_file: str | Path, stage: str, cpu_only: bool = False) -> Iterator[Params]:
    """The validated params for the stage's work, Keras' backend chosen (``cpu_only``: see
    :func:`~refinelab.core.backend.select_backend`); the stage fails if the params it depends on change while
    it runs.

    DVC reads params.yaml for dvc.lock only after a stage finishes: an edit made meanwhile would be
    recorded beside outputs made with the old values, and ``dvc status`` would call them up to date.
    """
    check_unchanged_since_checked(params_file)
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
