"""The GitHub Actions workflows: valid against GitHub's workflow schema (check-jsonschema's vendored copy,
offline), and saying what they do: bounded runs, one run per pull request, the README's test command,
the same computation on both sides of the report, the committed report on every pull request and the
recomputed one only when the pipeline's inputs change or a label asks, and no image upload outside GitHub
unless opted in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml"))
# The publish opt-in: a repository variable, false unless someone sets it.
PUBLISH_OPT_IN = "vars.CML_PUBLISH_IMAGES == 'true'"
# Any download attempt goes to a closed local port and fails, so a schema that needed the network
# would fail the lint instead of fetching silently.
OFFLINE = {
    **os.environ,
    **{name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")},
    "NO_PROXY": "",
    "no_proxy": "",
}


def check_jsonschema(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *map(str, args)],
        capture_output=True, text=True, env=OFFLINE, timeout=120,
    )


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    if True in workflow:  # YAML 1.1 reads the key `on` as a boolean
        workflow["on"] = workflow.pop(True)
    return workflow


def workflow(name: str) -> dict:
    return load(WORKFLOWS_DIR / name)


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_workflows_exist():
    assert {path.name for path in WORKFLOWS} >= {"report.yml", "tests.yml"}


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflows_are_valid(schema):
    result = check_jsonschema("--builtin-schema", schema, *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


BROKEN = {
    # `runs-on` missing, `steps` a string, an unknown job key: GitHub refuses such a file.
    "vendor.github-workflows": "on: push\njobs:\n  build:\n    stepz: []\n    steps: make test\n",
    "custom.github-workflows-require-timeout": (
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: make test\n"
    ),
}


@pytest.mark.parametrize("schema", sorted(BROKEN))
def test_the_linter_rejects_a_broken_workflow(tmp_path, schema):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN[schema])
    result = check_jsonschema("--builtin-schema", schema, broken)
    assert result.returncode != 0
    assert "broken.yml" in result.stdout + result.stderr


def test_the_lint_cannot_reach_the_network():
    # The OFFLINE environment really blocks downloads: a remote schema fails to load.
    result = check_jsonschema("--no-cache", "--schemafile", "https://json.schemastore.org/github-workflow.json",
                              WORKFLOWS_DIR / "tests.yml")
    assert result.returncode != 0
    assert "download" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_workflow_is_bounded_and_runs_once_per_change(path):
    loaded = load(path)
    concurrency = loaded.get("concurrency")
    assert isinstance(concurrency, dict) and concurrency.get("group"), f"{path.name}: no concurrency group"
    assert "cancel-in-progress" in concurrency, f"{path.name}: an outdated run is not cancelled"
    for name, job in loaded["jobs"].items():
        minutes = job.get("timeout-minutes")
        assert isinstance(minutes, int) and 0 < minutes <= 180, f"{path.name}: job {name} has no sane timeout-minutes"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_workflow_has_minimal_permissions_and_a_pip_cache(path):
    loaded = load(path)
    assert loaded.get("permissions") == {"contents": "read"}, f"{path.name}: top-level permissions are not read-only"
    for job in loaded["jobs"].values():
        writes = {scope for scope, access in (job.get("permissions") or {}).items() if access == "write"}
        assert writes <= {"pull-requests"}, f"{path.name}: writes {writes}"
    setups = [step for step in steps(loaded) if step.get("uses", "").startswith("actions/setup-python@")]
    assert setups, f"{path.name}: no actions/setup-python"
    for setup in setups:
        assert setup["with"]["cache"] == "pip"
        assert setup["with"]["cache-dependency-path"] == "requirements.lock"


def test_the_tests_workflow_runs_make_test_on_main_and_pull_requests():
    loaded = workflow("tests.yml")
    assert loaded["on"]["push"]["branches"] == ["main"]
    assert "pull_request" in loaded["on"]
    (job,) = loaded["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    assert [step["run"].strip() for step in job["steps"] if "run" in step] == ["make test"]
    (setup,) = [step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@")]
    assert str(setup["with"]["python-version"]) == "3.11"


def cml_comments(step: dict) -> list[str]:
    """The `cml comment ...` commands a step runs (a line starting with one, after an optional variable)."""
    return re.findall(r"^\s*(?:[A-Z_]+=\S+\s+)?(cml comment .*)$", step.get("run", ""), flags=re.MULTILINE)


def test_the_report_uploads_images_only_when_the_repository_opts_in():
    """CML's `--publish` defaults to true: every `cml comment` must say `--publish=false`, or be opted in."""
    posting = [step for step in steps(workflow("report.yml")) if cml_comments(step)]
    assert posting, "report.yml posts no comment"
    opted_in = [step for step in posting if PUBLISH_OPT_IN in step.get("if", "")]
    for step in posting:
        for command in cml_comments(step):
            if step in opted_in:
                assert "--publish" in command.split()
            else:
                assert "--publish=false" in command.split(), f"uploads images without the opt-in: {command}"
                assert "vars.CML_PUBLISH_IMAGES != 'true'" in step["if"]
    assert len(opted_in) == 1
    # Never `--publish` outside the opted-in step, in any form (`--publish=true`, `--publish-url`, ...).
    for step in steps(workflow("report.yml")):
        if step not in opted_in:
            assert not re.search(r"--publish(?!=false\b)", step.get("run", "")), step.get("name")


def test_the_report_comments_with_what_its_token_can_do():
    """The default GITHUB_TOKEN can create comments; CML documents that `update` needs a personal token."""
    commands = [command for step in steps(workflow("report.yml")) for command in cml_comments(step)]
    assert any(command.startswith("cml comment create") for command in commands)
    for step in steps(workflow("report.yml")):
        for line in step.get("run", "").splitlines():
            if re.match(r"\s*(\S+=\S+\s+)?cml comment update", line):
                assert line.strip().startswith("REPO_TOKEN=$CML_PAT "), f"update without the personal token: {line}"
    header = (WORKFLOWS_DIR / "report.yml").read_text().split("\nname:")[0]
    assert "CML_PAT" in header and "cml comment update" in header, "the header does not document the token"


def test_the_report_computes_both_sides_the_same_way():
    loaded = workflow("report.yml")
    runs = [step.get("run", "") for step in steps(loaded)]
    experiment_runs = [line.strip() for run in runs for line in run.splitlines() if line.strip().startswith("dvc exp run")]
    assert len(experiment_runs) == 2, experiment_runs  # the base, then this change
    assert all(line.endswith("$EXP_ARGS") for line in experiment_runs), experiment_runs
    assert any('-n "$BASE_EXP"' in line for line in experiment_runs)
    assert any('make report BASE="$BASE_EXP"' in run for run in runs)
    # Without a remote both sides are shrunk by the same params, which the comment states.
    assert loaded["env"]["SHRINK"].split() == ["-S", "epochs=2", "-S", "data.limit=5000"]
    assert any("args=$SHRINK" in run for run in runs)
    assert any("env['SHRINK']" in run and "comment.md" in run for run in runs)
    assert any("--pull --allow-missing" in run for run in runs)


def decide_step() -> dict:
    (step,) = [step for step in steps(workflow("report.yml")) if step.get("name", "").startswith("Decide whether")]
    return step


def decide(tmp_path: Path, touched: str, part: str, action: str = "synchronize", added_label: str = "",
           labelled: bool = False) -> dict[str, str]:
    """Run the report's deciding step (without its pip install) in a repository whose change touches
    ``touched``; the variables it hands to the later steps."""
    repo = tmp_path / f"repo-{part}-{action}-{touched.replace('/', '_')}"
    for name in ("dvc.yaml", "params.yaml", "requirements.lock", "README.md", "src/refinelab/train/stage.py",
                 "src/refinelab/cli/main.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text((ROOT / name).read_text())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    with open(repo / touched, "a") as handle:
        handle.write("\n# changed\n")
    subprocess.run([*git, "commit", "-qam", "change"], cwd=repo, check=True)
    script = "\n".join(line for line in decide_step()["run"].splitlines() if not line.strip().startswith("pip install"))
    environment = {**os.environ, "GITHUB_ENV": str(tmp_path / f"env-{repo.name}"), "RUNNER_TEMP": str(tmp_path),
                   "EVENT_BASE_SHA": base, "ACTION": action, "ADDED_LABEL": added_label,
                   "LABELLED": str(labelled).lower(), "PART": part, "RECOMPUTE_LABEL": "recompute-report",
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=environment, check=True, capture_output=True)
    return dict(line.split("=", 1) for line in Path(environment["GITHUB_ENV"]).read_text().splitlines())


def test_the_committed_report_is_on_every_pull_request_and_trains_nothing(tmp_path):
    loaded = workflow("report.yml")
    assert loaded["jobs"]["report"]["strategy"]["matrix"]["report"] == ["committed", "recomputed"]
    for touched in ("README.md", "src/refinelab/train/stage.py"):
        chosen = decide(tmp_path, touched, "committed")
        assert chosen["MODE"] == "committed" and chosen["BASE_EXP"] == chosen["BASE_SHA"]  # `make report BASE=<commit>`
    assert decide(tmp_path, "README.md", "committed", action="labeled", added_label="x")["MODE"] == "skip"
    for step in steps(loaded):  # Only the recomputing modes run the pipeline.
        if any(line.strip().startswith("dvc exp run") for line in step.get("run", "").splitlines()):
            assert step["if"] == "env.MODE == 'remote' || env.MODE == 'shrunk'", step["name"]


def test_the_recomputed_report_runs_when_the_pipelines_inputs_change_or_a_label_asks(tmp_path):
    assert decide(tmp_path, "src/refinelab/train/stage.py", "recomputed")["MODE"] == "compute"
    assert decide(tmp_path, "params.yaml", "recomputed")["MODE"] == "compute"
    # No stage depends on the CLI or the README: nothing to recompute, unless the label says so.
    assert decide(tmp_path, "src/refinelab/cli/main.py", "recomputed")["MODE"] == "skip"
    assert decide(tmp_path, "README.md", "recomputed")["MODE"] == "skip"
    assert decide(tmp_path, "README.md", "recomputed", labelled=True)["MODE"] == "compute"
    assert decide(tmp_path, "README.md", "recomputed", action="labeled", added_label="recompute-report")["MODE"] == "compute"
    assert decide(tmp_path, "README.md", "recomputed", action="labeled", added_label="docs")["MODE"] == "skip"
    assert "recompute-report" == workflow("report.yml")["env"]["RECOMPUTE_LABEL"]
