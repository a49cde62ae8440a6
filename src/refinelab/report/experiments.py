"""The experiments DVC records, as refinelab reads them: ``dvc`` commands run beside this Python, and
``dvc exp show --json`` parsed into runs (params and metrics flattened to dotted keys)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinelab.core.errors import RefinelabError

WORKSPACE = "workspace"


EVALUATION_METRICS = "metrics/evaluate.json"


TIMING_METRICS = "metrics/timing.json"


class DvcCommandError(RefinelabError):
    """A ``dvc`` command the report needs failed."""


@dataclass
class Run:
    """One revision DVC knows: the workspace, a commit, or an experiment."""

    name: str
    rev: str  # a git commit, or WORKSPACE
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, flattened to dotted keys
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics file -> flattened values

    def metric(self, path: str, key: str) -> Any:
        return self.metrics.get(path, {}).get(key)

    @property
    def short_rev(self) -> str:
        return self.rev if self.rev == WORKSPACE else self.rev[:7]


def dvc(args: list[str], repo: Path) -> str:
    """Run ``dvc`` (the one installed beside this Python) in ``repo`` and return its stdout."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise DvcCommandError(f"dvc {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are values."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _run_from_state(name: str, state: dict[str, Any]) -> Run | None:
    data = state.get("data")
    if not data:
        return None
    files = {
        section: {path: flatten(result.get("data") or {}) for path, result in (data.get(section) or {}).items()}
        for section in ("params", "metrics")
    }
    params = {}
    for path, values in files["params"].items():
        # Keys from params files other than params.yaml keep their file's name.
        params.update({key if path == "params.yaml" else f"{path}:{key}": value for key, value in values.items()})
    return Run(name=name, rev=state["rev"], params=params, metrics=files["metrics"])


def runs_from_exp_show(shown: list[dict[str, Any]]) -> tuple[list[Run], list[Run], Run | None]:
    """(baseline commits, finished experiments, workspace) from ``dvc exp show --json``."""
    baselines, experiments, workspace = [], [], None
    for entry in shown:
        if entry["rev"] == WORKSPACE:
            workspace = _run_from_state(WORKSPACE, entry)
            continue
        if baseline := _run_from_state(entry.get("name") or entry["rev"][:7], entry):
            baselines.append(baseline)
        for exp_range in entry.get("experiments") or []:
            state = (exp_range.get("executor") or {}).get("state")
            if state in ("queued", "running", "failed"):
                continue
            for exp in exp_range.get("revs") or []:
                run = _run_from_state(exp.get("name") or exp_range.get("name") or exp["rev"][:7], exp)
                if run:
                    experiments.append(run)
    return baselines, experiments, workspace


def select_runs(shown: list[dict[str, Any]], wanted: list[str]) -> list[Run]:
    """The runs named in ``wanted`` (experiment or branch names, revision prefixes, "workspace");
    with none named, every commit listed and its experiments, leaving out commits with no metrics."""
    baselines, experiments, workspace = runs_from_exp_show(shown)
    if not wanted:
        return [run for run in baselines + experiments if any(run.metrics.values())]
    candidates = baselines + experiments + ([workspace] if workspace else [])
    selected = []
    for name in wanted:
        matches = [run for run in candidates if name == run.name or (len(name) >= 4 and run.rev.startswith(name))]
        if not matches:
            known = ", ".join(run.name for run in candidates) or "none"
            raise RefinelabError(f"no experiment or revision {name!r}; known here: {known}")
        selected.append(matches[0])
    return selected
