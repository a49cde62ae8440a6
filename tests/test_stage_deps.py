"""Each stage depends on exactly the package rooms (subpackages) it runs, or on single modules of a room
it borrows from: editing reporting, CLI or predict code re-runs no stage, editing a dataset loader re-runs
check_params and prepare, editing the plot stage's figures re-runs only plot."""

import ast
import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run

PACKAGE = ROOT / "src" / "refinelab"
# The package's __init__ holds only its docstring and version.
NOT_A_DEPENDENCY = {"src/refinelab/__init__.py"}


def imported_modules(path: Path) -> set[str]:
    """refinelab modules ``path`` imports, at the top or inside a function."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "refinelab":
            modules.add(node.module)  # A module, or a package whose submodules are imported by name:
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.split(".")[0] == "refinelab"}
    return modules


def module_files(script: Path) -> set[str]:
    """The package files a stage script runs: its imports, and theirs, transitively."""
    seen: set[str] = set()
    pending = list(imported_modules(script))
    while pending:
        module = pending.pop()
        path = PACKAGE / (module.removeprefix("refinelab.").replace(".", "/") + ".py")
        relative = str(path.relative_to(ROOT))
        if relative in seen or not path.is_file():
            continue
        seen.add(relative)
        pending += imported_modules(path)
    return seen


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: str, listed: set[str]) -> bool:
    return any(path == dep or path.startswith(dep + "/") for dep in listed)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_depends_on_the_rooms_it_imports_and_no_others(stage):
    listed = {dep.split()[0] for dep in STAGES[stage]["deps"] if dep.startswith("src/")}
    needed = module_files(ROOT / "stages" / f"{stage}.py") - NOT_A_DEPENDENCY
    assert not (missing := sorted(path for path in needed if not covered(path, listed))), f"missing: {missing}"
    unused = sorted(dep for dep in listed if not any(covered(path, {dep}) for path in needed))
    assert not unused, f"not used: {unused}"
    assert all((ROOT / dep).is_dir() or dep.endswith(".py") for dep in listed)
    assert f"stages/{stage}.py" in STAGES[stage]["deps"]


def test_reporting_cli_and_predict_are_no_stage_dependency():
    used = set().union(*(module_files(ROOT / "stages" / f"{stage}.py") for stage in STAGES))
    assert not {path for path in used if path.startswith(("src/refinelab/cli/", "src/refinelab/report/"))}
    assert "src/refinelab/__main__.py" not in used


def test_the_experiment_table_shows_few_code_columns():
    """`dvc exp show` has a column per dependency path: the package's code takes at most 12."""
    paths = {dep.split()[0] for stage in STAGES.values() for dep in stage["deps"] if dep.startswith("src/")}
    assert len(paths) <= 12, sorted(paths)


def placeholder_outputs(project: Path) -> None:
    """Every path dvc.yaml names that is not in the project, as a small file or a folder holding one."""
    for stage in STAGES.values():
        for entry in stage.get("deps", []) + stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            name = (next(iter(entry)) if isinstance(entry, dict) else entry).split()[0]
            path = project / name
            if path.exists():
                continue
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
            else:
                path.mkdir(parents=True)
                (path / "placeholder.txt").write_text("placeholder")


@pytest.mark.slow
def test_dvc_status_after_editing_code(project_copy, project_env):
    """`dvc status` on a pipeline DVC takes as up to date (`dvc commit` of placeholder outputs, so
    nothing trains), after touching one module at a time."""
    project = project_copy
    placeholder_outputs(project)
    run(["dvc", "commit", "--force", "--quiet"], project, env=project_env)

    def changed_stages_after_touching(name: str) -> set[str]:
        with open(project / "src" / "refinelab" / name, "a") as module:
            module.write("\n# touched\n")
        status = json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout)
        run(["dvc", "commit", "--force", "--quiet"], project, env=project_env)  # Up to date again.
        return {stage.split(":")[-1] for stage in status}

    assert json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout) == {}
    for name in ("report/compare.py", "cli/main.py", "cli/predict.py", "cli/search.py"):
        assert changed_stages_after_touching(name) == set(), name
    assert changed_stages_after_touching("plot/stage.py") == {"plot"}
    assert changed_stages_after_touching("evaluate/stage.py") == {"evaluate"}  # The check can fail.
    assert changed_stages_after_touching("prepare/sources.py") == {"check_params", "prepare"}
