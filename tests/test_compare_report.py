"""`refinelab compare` and `make report` on real tiny experiments in a temporary git + DVC repo."""

import json
import re
import sys

import pytest

from conftest import commit_params, needs_fashion_mnist, run

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def table_rows(markdown: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("-")]


def test_compare_experiments_then_report_the_workspace_against_main(project_copy, project_env, tiny_raw_params):
    project = project_copy
    params = dict(tiny_raw_params, model="baseline", dropout=0.0)  # An MLP: fast.
    params["data"] = dict(params["data"], limit=100)
    commit_params(project, params)
    run(["git", "branch", "-M", "main"], project)
    run(["dvc", "repro"], project, env=project_env)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline results"], project)

    run(["dvc", "exp", "run", "-S", "dropout=0.25", "--name", "dropout-25"], project, env=project_env)
    # `-S` edits the workspace's params.yaml, which still holds the previous experiment's: reset dropout.
    run(["dvc", "exp", "run", "-S", "dropout=0.0", "-S", "l2=0.001", "-S", "model=smaller", "--name", "smaller-l2"],
        project, env=project_env)

    # Default: the current commit and all its experiments.
    run([sys.executable, "-m", "refinelab", "compare"], project, env=project_env)
    report = (project / "compare.md").read_text()
    header, *rows = table_rows(report)
    assert header[:2] == ["experiment", "rev"]
    # Only the params that differ between the runs, then the metrics.
    assert set(header[2 : header.index("test accuracy")]) == {"model", "dropout", "l2"}
    by_name = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(by_name) == {"main", "dropout-25", "smaller-l2"}
    assert by_name["dropout-25"]["dropout"] == "0.25" and by_name["main"]["dropout"] == "0.0"
    assert by_name["smaller-l2"]["model"] == "smaller" and by_name["smaller-l2"]["l2"] == "0.001"
    assert by_name["smaller-l2"]["dropout"] == "0.0"
    accuracies = [float(row[header.index("test accuracy")]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert {"ECE", "top-5 accuracy", "train seconds", "images/s", "params"} <= set(header)
    assert "![" in report and (project / "compare_learning_curves.png").stat().st_size > 10_000

    # Naming two experiments compares just those; an .html output is a page with the curves embedded.
    run([sys.executable, "-m", "refinelab", "compare", "dropout-25", "smaller-l2", "-o", "two.html"], project, env=project_env)
    page = (project / "two.html").read_text()
    assert sorted(re.findall(r"<tr><td>([^<]+)</td>", page)) == ["dropout-25", "smaller-l2"]
    assert "<th>dropout</th>" in page and "data:image/png;base64," in page
    unknown = run([sys.executable, "-m", "refinelab", "compare", "no-such-exp"], project, env=project_env, check=False)
    assert unknown.returncode == 2 and "no-such-exp" in unknown.stderr and "dropout-25" in unknown.stderr

    # The workspace now holds the last experiment: `make report` diffs it against main.
    made = run(["make", "report", f"VENV={sys.prefix}"], project, env=project_env)
    markdown = (project / "report.md").read_text()
    assert markdown in made.stdout  # What `make report` prints is the file the workflow posts.
    params_section = markdown.split("### Params")[1].split("### Metrics")[0]
    assert re.search(r"\|\s*params.yaml\s*\|\s*l2\s*\|\s*0.0\s*\|\s*0.001\s*\|", params_section), params_section
    assert re.search(r"\|\s*params.yaml\s*\|\s*model\s*\|\s*baseline\s*\|\s*smaller\s*\|", params_section)
    assert "dropout" not in params_section  # Back to main's value: not a difference.
    metrics_section = markdown.split("### Metrics")[1].split("### Learning curves")[0]
    assert "metrics/evaluate.json" in metrics_section and "test.accuracy" in metrics_section
    for image in ("report_learning_curves.png", "metrics/figures/confusion_matrix.png", "metrics/figures/misclassified.png"):
        assert f"]({image})" in markdown and (project / image).is_file(), image

    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    assert 0.0 <= evaluation["test"]["expected_calibration_error"] <= 1.0
    assert 0.0 <= evaluation["test"]["top_5_accuracy"] <= 1.0
