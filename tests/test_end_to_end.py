"""The real pipeline through the real `dvc` commands, on a shrunk copy of the real params."""

import json
import re

import pytest

from helpers import commit_params, needs_fashion_mnist, run

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def dropout_rates(model_path):
    import keras

    model = keras.models.load_model(model_path)
    return {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}


def test_repro_then_experiment_with_dropout(project_copy, project_env, tiny_raw_params):
    project = project_copy
    commit_params(project, tiny_raw_params)

    run(["dvc", "repro"], project, env=project_env)

    for output in (
        "data/prepared/meta.json", "data/augmented/training_set.json", "models/model.keras", "models/params.json",
        "metrics/figures/learning_curves.png", "metrics/figures/confusion_matrix.png",
        "metrics/figures/test_predictions.png", "metrics/confusion.csv",
    ):
        assert (project / output).is_file(), output
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    details = json.loads((project / "metrics/test_details.json").read_text())
    accuracy = details["test"]["accuracy"]
    assert 0.0 <= accuracy <= 1.0 and 0.0 <= details["train_accuracy"] <= 1.0
    assert details["train_test_gap"] == pytest.approx(details["train_accuracy"] - accuracy)
    assert (evaluation["accuracy"], evaluation["gap"]) == (round(accuracy, 4), round(details["train_test_gap"], 4))
    # One epoch of 7 steps (200 images, batch_size 32 as set): the health check says it is too little.
    assert evaluation["warnings"] >= 1 and "few_steps" in details["health"]
    assert len(details["test"]["per_class"]) == 10
    model_size = json.loads((project / "metrics/model.json").read_text())
    assert model_size["layers"][-1]["name"] == "classes"
    assert model_size["total_params"] == sum(layer["params"] for layer in model_size["layers"]) > 0
    training = json.loads((project / "metrics/train/metrics.json").read_text())
    assert set(training) >= {"train", "eval"} and "train_time" not in training
    assert set(json.loads((project / "metrics/timing.json").read_text())) == {"train_time"}
    assert (project / "metrics/confusion.csv").read_text().count("\n") == 201  # header + limit rows
    resolved = json.loads((project / "models/params.json").read_text())
    assert resolved["dropout"] == tiny_raw_params["dropout"] and len(resolved["class_names"]) == 10
    assert resolved["batch_size"] == 32 and resolved["training"]["steps_per_epoch"] == 7
    assert dropout_rates(project / "models/model.keras") == {tiny_raw_params["dropout"]}

    # One plots page: each learning curve once, one confusion matrix, no PNG repeating them.
    page = json.loads(run(["dvc", "plots", "show", "--json"], project, env=project_env).stdout)["data"]
    assert {"Loss", "Accuracy", "Confusion normalized"} <= set(page)
    assert not [name for name in page if "train/plots" in name or "confusion" in name.lower() and name != "Confusion normalized"
                or name.endswith(("learning_curves.png", "confusion_matrix.png"))]
    assert (project / "models/model_card.md").read_text().startswith("# Model card: cnn_bn")

    # Nothing changed: nothing re-runs.
    assert "didn't change" in run(["dvc", "repro"], project, env=project_env).stdout.replace("did not", "didn't")

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline results"], project)
    run(["dvc", "exp", "run", "-S", "dropout=0.25", "--name", "dropout-25"], project, env=project_env)

    assert dropout_rates(project / "models/model.keras") == {0.25}
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env=project_env).stdout)
    experiments = [exp for commit in shown for exp in commit.get("experiments") or []]
    names = {exp.get("name") for exp in experiments}
    assert "dropout-25" in names
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], project, env=project_env).stdout)
    dropout_change = params_diff["params.yaml"]["dropout"]
    assert (dropout_change["old"], dropout_change["new"]) == (tiny_raw_params["dropout"], 0.25)
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project, env=project_env).stdout)
    assert "accuracy" in metrics_diff["metrics/evaluate.json"]

    # A second experiment: the table of a small study (model x dropout) stays readable.
    run(["dvc", "exp", "run", "-S", "model=smaller", "-S", "dropout=0.25"], project, env=project_env)
    assert_the_experiment_table_fits_a_screen(project, project_env)
    assert_results_travel_through_a_remote(project, project_env)


def assert_results_travel_through_a_remote(project, project_env):
    """A team shares through a git remote and a DVC remote (a folder here; S3, GCS or SSH alike): a
    fresh clone pulls data, model and run-cache, has nothing to re-run, and pulls an experiment."""
    git_remote, dvc_remote, fresh = (project.parent / name for name in ("origin.git", "dvc-remote", "fresh"))
    run(["git", "init", "-q", "--bare", str(git_remote)], project)
    run(["git", "remote", "add", "origin", str(git_remote)], project)
    run(["dvc", "remote", "add", "-d", "shared", str(dvc_remote)], project, env=project_env)
    run(["git", "commit", "-qm", "shared DVC remote", ".dvc/config"], project)
    run(["git", "push", "-q", "origin", "HEAD:main"], project)
    run(["dvc", "push", "--all-commits", "--run-cache"], project, env=project_env)
    run(["dvc", "exp", "push", "origin", "dropout-25"], project, env=project_env)

    run(["git", "clone", "-q", "--branch", "main", str(git_remote), str(fresh)], project)
    run(["dvc", "pull"], fresh, env=project_env)
    assert (fresh / "models/model.keras").is_file() and (fresh / "data/prepared/meta.json").is_file()
    repro = run(["dvc", "repro"], fresh, env=project_env).stdout
    assert "Running stage" not in repro, repro
    run(["dvc", "exp", "pull", "origin", "dropout-25"], fresh, env=project_env)
    # Its baseline is the commit before the remote's: listed among all commits' experiments.
    listed = run(["dvc", "exp", "list", "--all-commits", "--name-only"], fresh, env=project_env).stdout
    assert "dropout-25" in listed.split(), listed


def assert_the_experiment_table_fits_a_screen(project, project_env):
    """`dvc exp show` and `dvc metrics diff` of a small study stay readable: at most 40 params and
    15 metrics per run, at most 15 rows of metrics diff, and in a 160-column terminal (where DVC pages
    the full-width table with `less -S`) each experiment's name, the params the study varies, test
    accuracy, gap and training time all show, without an ellipsis."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env=project_env).stdout)
    experiments = [exp for commit in shown[1:] for exp in commit.get("experiments") or []]
    runs = [shown[0]] + [rev for exp in experiments for rev in exp["revs"]]
    assert len(runs) == 3  # The workspace and the two experiments.
    for entry in runs:
        data = entry["data"]
        assert leaves({path: item["data"] for path, item in data["params"].items()}) <= 40
        assert leaves({path: item["data"] for path, item in data["metrics"].items()}) <= 15
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project, env=project_env).stdout)
    assert 0 < leaves(metrics_diff) // 3 <= 15  # Each row is old, new and diff.

    # What a 160-column terminal shows of the full-width table the pager gets.
    table = run(["dvc", "exp", "show", "--no-pager"], project, env={**project_env, "COLUMNS": "1024"}).stdout
    screen = [line.rstrip()[:160] for line in table.splitlines()]
    header = next(line for line in screen if "Experiment" in line)
    for column in ("accuracy", "gap", "warnings", "train_time", "model", "dropout"):
        assert re.search(rf"\b{column}\b", header), (column, header)
    rows = [line for line in screen if any(exp["name"] in line for exp in experiments)]
    assert len(rows) == 2 and all(re.search(r"(auto|smaller) +0\.25\b", row) for row in rows), screen
    assert not any("…" in line for line in screen), screen


def leaves(data) -> int:
    return sum(leaves(value) for value in data.values()) if isinstance(data, dict) else 1


def test_a_rejected_or_unknown_param_stops_before_any_output_is_touched(project_copy, project_env, tiny_raw_params):
    project = project_copy
    tiny_raw_params["epochs"] = 1
    commit_params(project, tiny_raw_params)
    run(["dvc", "repro"], project, env=project_env)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results"], project)
    kept = {path: (project / path).read_bytes() for path in ("metrics/evaluate.json", "models/model.keras")}

    rejected = run(["dvc", "exp", "run", "-S", "epochs=0"], project, env=project_env, check=False)

    assert rejected.returncode != 0
    assert "epochs: Input should be greater than or equal to 1" in rejected.stdout + rejected.stderr
    assert all((project / path).read_bytes() == content for path, content in kept.items())
    assert run(["git", "status", "--porcelain", "--", "metrics"], project).stdout == ""

    run(["git", "checkout", "params.yaml"], project)
    with open(project / "params.yaml", "a") as params:
        params.write("dropuot: 0.1\n")  # A typo of a top-level key no stage lists.
    unknown = run(["dvc", "repro"], project, env=project_env, check=False)

    assert unknown.returncode != 0
    assert "dropuot: unknown key; did you mean 'dropout'?" in unknown.stdout + unknown.stderr
    assert all((project / path).read_bytes() == content for path, content in kept.items())

    run(["git", "checkout", "params.yaml"], project)
    missing = run(["dvc", "exp", "run", "-S", "dataset=image_folder", "-S",
                   "datasets.yaml:image_folder.path=/nonexistent/photos"], project, env=project_env, check=False)

    assert missing.returncode != 0
    assert ("datasets.yaml: image_folder.path: /nonexistent/photos: no such file or folder"
            in missing.stdout + missing.stderr)
    assert all((project / path).read_bytes() == content for path, content in kept.items())
    assert (project / "data" / "prepared" / "meta.json").is_file()  # Prepare's output too: it never ran.

