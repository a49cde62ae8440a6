"""Each stage depends on exactly the package modules it runs: editing reporting, CLI or predict code
re-runs no stage, editing the plot stage's figures re-runs only plot."""

import ast
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run

PACKAGE = ROOT / "src" / "refinelab"
# The package's __init__ holds only its docstring and version.
NOT_A_DEPENDENCY = {"src/refinelab/__init__.py"}


def imported_modules(path: Path) -> set[str]:
    """refinelab modules ``path`` imports, at the top or inside a function."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "refinelab":
            if node.module == "refinelab":
                modules |= {f"refinelab.{alias.name}" for alias in node.names}
            else:
                modules.add(node.module)
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


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_depends_on_the_modules_it_imports_and_no_others(stage):
    listed = {dep.split()[0] for dep in STAGES[stage]["deps"] if dep.startswith("src/")}
    needed = module_files(ROOT / "stages" / f"{stage}.py") - NOT_A_DEPENDENCY
    assert listed == needed, f"missing: {sorted(needed - listed)}, not used: {sorted(listed - needed)}"
    assert f"stages/{stage}.py" in STAGES[stage]["deps"]


def test_reporting_cli_and_predict_are_no_stage_dependency():
    used = set().union(*(module_files(ROOT / "stages" / f"{stage}.py") for stage in STAGES))
    assert not {f"src/refinelab/{name}.py" for name in ("compare", "cli", "predict", "__main__")} & used


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
    for name in ("compare.py", "cli.py", "predict.py"):
        assert changed_stages_after_touching(name) == set(), name
    assert changed_stages_after_touching("plotting.py") == {"plot"}
    assert changed_stages_after_touching("evaluation.py") == {"evaluate"}  # The check can fail.
