"""Reading and writing the three params files: params.yaml, with architectures.yaml's presets and
datasets.yaml's settings beside it, as one mapping (and back, for tests and benchmarks)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from refinelab.core.errors import ParamsError
from refinelab.params.layout import DATASETS_FILE, DATASETS_FILE_KEYS, DEFAULT_PARAMS_FILE, PRESETS_FILE
from refinelab.params.schema import Params, parse_params


def read_params_file(path: str | Path) -> Any:
    """``path`` read as YAML 1.2, as DVC does: ``dvc exp run -S l2=0.00001`` writes ``1e-05``, which a
    YAML 1.1 reader (PyYAML) would take for a string."""
    path = Path(path)
    try:
        return YAML(typ="safe", pure=True).load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None


def check_keys(value: Any, path: Path, where: str = "") -> None:
    """Every key a name: YAML also allows a list or a number as a key (`[model]: cnn_bn`)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                shown = json.dumps(list(key) if isinstance(key, tuple) else key, default=str)
                raise ParamsError(f"{path}: {where}{shown}: a key must be a name, not a list or a number")
            check_keys(item, path, f"{where}{key}.")
    elif isinstance(value, list):
        for item in value:
            check_keys(item, path, where)


def read_mapping(path: Path) -> dict[str, Any]:
    raw = read_params_file(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    check_keys(raw, path)
    return raw


def read_config(params_path: str | Path = DEFAULT_PARAMS_FILE) -> dict[str, Any]:
    """params.yaml with the presets of architectures.yaml (as ``architectures``) and the settings of
    datasets.yaml beside it, as one mapping."""
    params_path = Path(params_path)
    raw = read_mapping(params_path)
    if not raw:
        raise ParamsError(f"{params_path}: empty; it holds every param of the pipeline (`git checkout {params_path}` "
                          "brings the project's back)")
    presets_path, datasets_path = params_path.parent / PRESETS_FILE, params_path.parent / DATASETS_FILE
    if "architectures" in raw:
        raise ParamsError(f"{params_path}: architectures: the presets live in {presets_path}; tweak one with arch:")
    config = {**raw, "architectures": read_mapping(presets_path)}
    for key, value in read_mapping(datasets_path).items():
        if key not in DATASETS_FILE_KEYS:
            raise ParamsError(f"{datasets_path}: {key}: unknown key; it holds {', '.join(DATASETS_FILE_KEYS)}")
        if key == "data" and not isinstance(value, dict):
            raise ParamsError(f"{datasets_path}: data: expected a mapping of keys to values, got {json.dumps(value)}")
        if key == "data" and isinstance(raw.get("data", {}), dict):
            if both := sorted(set(value) & set(raw.get("data", {}))):
                raise ParamsError(f"data.{both[0]}: set in both {params_path} and {datasets_path}; keep one")
            config["data"] = {**raw.get("data", {}), **value}
        elif key in raw:
            raise ParamsError(f"{key}: set in both {params_path} and {datasets_path}; keep one")
        else:
            config[key] = value
    return config


# The data keys params.yaml holds (the rest of data: sits in datasets.yaml).
DATA_KEYS_IN_PARAMS = ("validation_split", "test_split", "limit", "image_size")


def split_config(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of :func:`read_config`: the content of each of the three files, by file name."""
    data = config.get("data", {})
    params = {key: value for key, value in config.items() if key not in DATASETS_FILE_KEYS[:-1] + ("architectures",)}
    params["data"] = {key: value for key, value in data.items() if key in DATA_KEYS_IN_PARAMS}
    datasets = {key: config[key] for key in DATASETS_FILE_KEYS[:-1] if key in config}
    datasets["data"] = {key: value for key, value in data.items() if key not in DATA_KEYS_IN_PARAMS}
    return {DEFAULT_PARAMS_FILE.name: params, PRESETS_FILE: config.get("architectures", {}), DATASETS_FILE: datasets}


def write_config(directory: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config`` (a :func:`read_config` mapping) as params.yaml, architectures.yaml and
    datasets.yaml in ``directory`` (for tests and benchmarks), keys in their order (the order of
    `dvc exp show`'s columns); return the params.yaml path."""
    yaml = YAML()  # Round-trip: keeps the keys' order (the safe dumper sorts them).
    yaml.default_flow_style = False
    for name, content in split_config(config).items():
        with open(Path(directory) / name, "w") as handle:
            yaml.dump(content, handle)
    return Path(directory) / DEFAULT_PARAMS_FILE.name


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> Params:
    return parse_params(read_config(path), source=str(path))


def param_values(raw: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The values of ``keys`` (dotted for nested ones) in a params mapping; None where absent."""
    values = {}
    for key in keys:
        value = raw
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[key] = value
    return values
