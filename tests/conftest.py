"""Shared fixtures: the REAL params.yaml, shrunk; the project copied into a temp git repo (helpers live
in helpers.py)."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path

import pytest

from refinelab.params.files import read_config

from helpers import ROOT, project_files, run


@pytest.fixture
def raw_params() -> dict:
    """The project's real params.yaml, with architectures.yaml and datasets.yaml, as one mapping (tests
    override a few keys)."""
    return read_config(ROOT / "params.yaml")


@pytest.fixture
def tiny_raw_params(raw_params) -> dict:
    params = copy.deepcopy(raw_params)
    params.update(epochs=1, batch_size=32)
    params["data"]["limit"] = 200
    return params


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """The project's files (no data, models or results) in a fresh git + DVC repo."""
    destination = tmp_path / "project"
    for name in project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    for stale in ("dvc.lock", "metrics"):
        path = destination / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    run(["git", "init", "-q"], destination)
    run(["git", "config", "user.email", "test@example.com"], destination)
    run(["git", "config", "user.name", "refinelab tests"], destination)
    return destination


@pytest.fixture
def project_env(project_copy) -> dict:
    """Environment whose `python` and `dvc` are this interpreter's (stage commands call `python`),
    importing the copied project's own ``src/``."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project_copy / "src")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env
