"""`refinelab compare` and `make report` on real tiny experiments in a temporary git + DVC repo."""

import json
import re
import sys
from itertools import dropwhile, takewhile

import pytest

from helpers import commit_params, needs_fashion_mnist, run

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the first Markdown table in ``markdown``, header first."""
    lines = list(dropwhile(lambda line: not line.startswith("|"), markdown.splitlines()))
    rows = [line.strip("|").split("|") for line in takewhile(lambda line: line.startswith("|"), lines)]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("-")]


def section(markdown: str, heading: str) -> str:
    """The text under a ``## heading``, up to the next one."""
    return markdown.split(f"\n## {heading}\n")[1].split("\n## ")[0]


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
    # Another dataset (scikit-learn's 8x8 digits, offline): compared in a section of its own.
    # `-S` edits the workspace's params.yaml, which still holds the previous experiment's: reset dropout.
    run(["dvc", "exp", "run", "-S", "dropout=0.0", "-S", "dataset=digits", "--name", "digits"], project, env=project_env)
    run(["dvc", "exp", "run", "-S", "dataset=fashion_mnist", "-S", "l2=0.001", "-S", "model=smaller",
         "--name", "smaller-l2"], project, env=project_env)

    # Default: the current commit and all its experiments, one section per dataset.
    run([sys.executable, "-m", "refinelab", "compare"], project, env=project_env)
    report = (project / "compare.md").read_text()
    assert re.findall(r"^## (.*)$", report, flags=re.MULTILINE) == ["fashion_mnist (3 runs)", "digits (1 run)"]
    fashion = section(report, "fashion_mnist (3 runs)")
    header, *rows = table_rows(fashion)
    assert header[:2] == ["experiment", "rev"]
    # Only the params that differ between the section's runs (not `dataset`), then the metrics.
    assert set(header[2 : header.index("test accuracy")]) == {"model", "dropout", "l2"}
    by_name = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(by_name) == {"main", "dropout-25", "smaller-l2"}
    assert by_name["dropout-25"]["dropout"] == "0.25" and by_name["main"]["dropout"] == "0.0"
    assert by_name["smaller-l2"]["model"] == "smaller" and by_name["smaller-l2"]["l2"] == "0.001"
    assert by_name["smaller-l2"]["dropout"] == "0.0"
    accuracies = [float(row[header.index("test accuracy")]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert {"train-test gap", "test loss", "macro F1", "top-5 accuracy", "ECE", "validation accuracy", "params",
            "train seconds", "health warnings"} <= set(header)
    assert all(0.0 <= float(row["ECE"]) <= 1.0 and int(row["params"].replace(",", "")) > 0 for row in by_name.values())
    # Per-class scores from each run's metrics/test_details.json, folded: classes as rows, runs as columns.
    assert "<details><summary>Per-class scores, test set (10 classes)" in fashion
    per_class = fashion.split("<details>")[1]
    assert re.search(r"^\| Ankle boot( \| \d\.\d{4}){3} \|$", per_class, flags=re.MULTILINE), per_class
    digits_header, digits_row = table_rows(section(report, "digits (1 run)"))
    assert digits_header[2] == "test accuracy" and digits_row[0] == "digits"  # One run: no params differ.
    for dataset in ("fashion_mnist", "digits"):
        figure = f"compare_learning_curves_{dataset}.png"
        assert f"]({figure})" in report and (project / figure).stat().st_size > 5_000

    # Naming experiments compares just those; an .html output is a page with the curves embedded.
    run([sys.executable, "-m", "refinelab", "compare", "dropout-25", "smaller-l2", "-o", "two.html"], project, env=project_env)
    page = (project / "two.html").read_text()
    first_table = page.split("<table>")[1]
    assert sorted(re.findall(r"<tr><td>([^<]+)</td>", first_table)) == ["dropout-25", "smaller-l2"]
    assert "<th>dropout</th>" in page and page.count("data:image/png;base64,") == 1
    unknown = run([sys.executable, "-m", "refinelab", "compare", "no-such-exp"], project, env=project_env, check=False)
    assert unknown.returncode == 2 and "no-such-exp" in unknown.stderr and "dropout-25" in unknown.stderr

    # The workspace now holds the last experiment: `make report` diffs it against main.
    made = run(["make", "report", f"VENV={sys.prefix}"], project, env=project_env)
    markdown = (project / "report.md").read_text()
    assert markdown in made.stdout  # What `make report` prints is the file the workflow posts.
    params_section = markdown.split("### Params")[1].split("### Metrics")[0]
    assert re.search(r"\|\s*params.yaml\s*\|\s*l2\s*\|\s*0.0\s*\|\s*0.001\s*\|", params_section), params_section
    assert re.search(r"\|\s*params.yaml\s*\|\s*model\s*\|\s*baseline\s*\|\s*smaller\s*\|", params_section)
    assert "dropout" not in params_section and "dataset" not in params_section  # Back to main's values.
    metrics_section = markdown.split("### Metrics")[1].split("### Learning curves")[0]
    metrics_diff, per_class_diff = metrics_section.split("<details>")
    assert re.search(r"\|\s*metrics/evaluate.json\s*\|\s*accuracy\s*\|", metrics_diff), metrics_diff
    assert re.search(r"\|\s*metrics/evaluate.json\s*\|\s*params\s*\|", metrics_diff)  # smaller: fewer weights
    assert "Per-class scores, test set (10 classes), main → this change" in per_class_diff
    assert re.search(r"^\| Ankle boot( \| \d\.\d{4} → \d\.\d{4} \([+-]\d\.\d{4}\)){3} \|$", per_class_diff,
                     flags=re.MULTILINE), per_class_diff
    for image in ("report_learning_curves.png", "metrics/figures/confusion_matrix.png", "metrics/figures/misclassified.png"):
        assert f"]({image})" in markdown and (project / image).is_file(), image

    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    assert 0.0 <= evaluation["ece"] <= 1.0 and 0.0 <= evaluation["top5"] <= 1.0
    details = json.loads((project / "metrics/test_details.json").read_text())
    assert 0.0 <= details["test"]["expected_calibration_error"] <= 1.0
    assert 0.0 <= details["test"]["top_5_accuracy"] <= 1.0
    assert len(details["test"]["per_class"]) == 10
