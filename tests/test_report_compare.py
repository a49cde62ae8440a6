"""The comparison logic on `dvc exp show --json`-shaped data written here (the real commands run in
tests/test_report_pull_request.py)."""

import json
import logging
import subprocess

import pytest

from refinelab.core.errors import RefinelabError
from refinelab.plot.stage import overlaid_learning_curves
from refinelab.report import compare as compare_module
from refinelab.report.compare import (
    ABSENT,
    compare,
    comparison_table,
    differing_params,
    file_slugs,
    group_by_dataset,
    per_class_change_table,
    per_class_table,
    pull_request_report,
    read_per_class,
)
from refinelab.report.documents import markdown_table
from refinelab.report.experiments import WORKSPACE, Run, select_runs

NO_DATASET = object()


def state(rev, name, accuracy, dataset="fashion_mnist", top5=0.99, **params):
    values = {"model": "baseline", "dropout": 0.0, "epochs": 8, "data": {"limit": 0}, **params}
    if dataset is not NO_DATASET:
        values["dataset"] = dataset
    evaluation = {"accuracy": accuracy, "gap": 0.02, "loss": 0.5, "f1": 0.7, "ece": 0.05, "val_acc": 0.8,
                  "params": 1000, "warnings": 0}
    if top5 is not None:
        evaluation["top5"] = top5
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "params": {"params.yaml": {"data": values}},
            "metrics": {
                "metrics/evaluate.json": {"data": evaluation},
                "metrics/timing.json": {"data": {"train_time": 12.5}},
            },
        },
        "error": None,
        "experiments": None,
    }


def experiment(exp_state, executor_state="success"):
    return {"revs": [exp_state], "executor": {"state": executor_state}, "name": exp_state["name"]}


@pytest.fixture
def shown():
    baseline = state("a" * 40, "main", 0.80)
    baseline["experiments"] = [
        experiment(state("b" * 40, "drop-25", 0.85, dropout=0.25)),
        experiment(state("c" * 40, "bigger", 0.90, model="bigger", data={"limit": 0})),
        experiment(state("d" * 40, None, None, dropout=0.5), executor_state="queued"),
    ]
    return [state("workspace", None, 0.85, dropout=0.25), baseline]


@pytest.fixture
def study():
    """A study over two datasets (Fashion-MNIST varying model and dropout, MNIST varying epochs) and an
    older run from before the `dataset` param."""
    baseline = state("a" * 40, "main", 0.80)
    exps = [
        state("b" * 40, "fm-drop", 0.85, dropout=0.25),
        state("c" * 40, "mn-1", 0.97, dataset="mnist", top5=None, model="smaller"),
        state("d" * 40, "fm-bigger", 0.90, model="bigger"),
        state("e" * 40, "mn-2", 0.98, dataset="mnist", top5=None, model="smaller", epochs=15),
        state("f" * 40, "old", 0.70, dataset=NO_DATASET),
    ]
    baseline["experiments"] = [experiment(exp) for exp in exps]
    return [baseline]


def test_default_is_the_commit_and_its_finished_experiments(shown):
    assert [run.name for run in select_runs(shown, [])] == ["main", "drop-25", "bigger"]


def test_experiments_are_chosen_by_name_or_revision(shown):
    assert [run.name for run in select_runs(shown, ["bigger", "bbbbbbb", "workspace"])] == ["bigger", "drop-25", "workspace"]
    with pytest.raises(RefinelabError, match=r"'nope'.*main, drop-25, bigger, workspace"):
        select_runs(shown, ["nope"])


def test_commits_without_results_are_left_out_unless_named(shown):
    unrun = state("e" * 40, "old", None)
    unrun["data"]["metrics"] = {}
    shown.append(unrun)
    assert "old" not in [run.name for run in select_runs(shown, [])]
    assert [run.name for run in select_runs(shown, ["old"])] == ["old"]


def test_runs_are_grouped_by_dataset_and_runs_without_one_go_together(study):
    groups = group_by_dataset(select_runs(study, []))
    assert {dataset: [run.name for run in runs] for dataset, runs in groups.items()} == {
        "fashion_mnist": ["main", "fm-drop", "fm-bigger"],
        "mnist": ["mn-1", "mn-2"],
        None: ["old"],
    }


def test_runs_of_one_dataset_param_on_different_files_are_apart(study):
    runs = select_runs(study, [])
    ants = {"name": "image_folder", "location": "photos/ants", "sha256_of_files": "1" * 64}
    sources = {"a" * 40: ants, "b" * 40: None, "d" * 40: {**ants, "location": "photos/two-bees", "sha256_of_files": "3" * 64}}
    groups = group_by_dataset(runs, sources)
    assert {dataset: [run.name for run in runs] for dataset, runs in groups.items()} == {
        "fashion_mnist: photos/ants": ["main"],
        "fashion_mnist: files unknown (no data report)": ["fm-drop"],
        "fashion_mnist: photos/two-bees": ["fm-bigger"],
        "mnist": ["mn-1", "mn-2"],  # No report for either: nothing tells them apart.
        None: ["old"],
    }
    # The same folder with other files in it: told apart by the data's digest.
    sources["d" * 40] = {**ants, "sha256_of_files": "2" * 64}
    labels = [label for label in group_by_dataset(runs, sources) if label and label.startswith("fashion_mnist: photos")]
    assert len(labels) == 2 and all(label.startswith("fashion_mnist: photos/ants (data ") for label in labels)
    # The same files from other places (a built-in dataset's copy in another folder), and a run without a
    # report beside them: one dataset, its name alone.
    copy = {"name": "fashion-mnist", "files": {"t10k": {"path": "/usr/share/t10k.gz", "sha256": "4" * 64}}}
    moved = {"name": "fashion-mnist", "files": {"t10k": {"path": "/home/me/.keras/t10k.gz", "sha256": "4" * 64}}}
    assert list(group_by_dataset(runs, {"a" * 40: copy, "b" * 40: moved}))[0] == "fashion_mnist"
    assert [run.name for run in group_by_dataset(runs, {"a" * 40: copy, "b" * 40: moved})["fashion_mnist"]] == [
        "main", "fm-drop", "fm-bigger"]


def test_differing_params_are_those_that_differ_within_the_group(study):
    runs = select_runs(study, [])
    assert differing_params(runs) == ["model", "dropout", "epochs", "dataset"]  # Across all: too many.
    groups = group_by_dataset(runs)
    assert differing_params(groups["fashion_mnist"]) == ["model", "dropout"]
    assert differing_params(groups["mnist"]) == ["epochs"]
    assert differing_params(groups[None]) == []


def test_table_has_the_group_s_differing_params_then_key_metrics_sorted_by_test_accuracy(study):
    groups = group_by_dataset(select_runs(study, []))
    lines = markdown_table(*comparison_table(groups["fashion_mnist"])).splitlines()
    assert lines[0] == (
        "| experiment | rev | model | dropout | test accuracy | train-test gap | test loss | macro F1 | top-5 accuracy "
        "| ECE | validation accuracy | params | train seconds | health warnings |"
    )
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| fm-bigger", "| fm-drop", "| main"]
    assert lines[2] == (
        f"| fm-bigger | {'d' * 7} | bigger | 0.0 | 0.9000 | +0.0200 | 0.5000 | 0.7000 | 0.9900 | 0.0500 | 0.8000 "
        "| 1,000 | 12.5 | 0 |"
    )
    # A metric no run of the group has (top-5 accuracy, with 5 classes or fewer) gets no column.
    header, rows = comparison_table(groups["mnist"])
    assert "top-5 accuracy" not in header and header[2] == "epochs"
    assert [row[0] for row in rows] == ["mn-2", "mn-1"]


def test_figure_names_are_distinct_and_file_safe():
    assert file_slugs(["fashion_mnist", None, "my data/v2", "my_data_v2", "..."]) == {
        "fashion_mnist": "fashion_mnist", None: "no_dataset", "my data/v2": "my_data_v2",
        "my_data_v2": "my_data_v2_2", "...": "dataset",
    }


def test_per_class_table_shows_absent_for_a_run_without_scores():
    runs = [Run("a", "a" * 40), Run("b", "b" * 40), Run("c", "c" * 40)]
    scores = [
        {"Bag": {"f1-score": 0.9, "recall": 0.8}, "Coat": {"f1-score": 0.5}},
        None,
        {"Coat": {"f1-score": 0.25}, "Shirt": {"f1-score": 0.125}},
    ]
    assert per_class_table(runs, scores) == (
        ["class", "a", "b", "c"],
        [["Bag", "0.9000", ABSENT, ABSENT], ["Coat", "0.5000", ABSENT, "0.2500"], ["Shirt", ABSENT, ABSENT, "0.1250"]],
    )
    assert per_class_table(runs, scores, "recall")[1][0] == ["Bag", "0.8000", ABSENT, ABSENT]


def test_per_class_change_table():
    base = {"Bag": {"f1-score": 0.5, "precision": 0.5, "recall": 0.5}}
    this = {"Bag": {"f1-score": 0.75, "precision": 0.25, "recall": 0.5}, "Coat": {"f1-score": 0.5}}
    header, rows = per_class_change_table(base, this)
    assert header == ["class", "F1", "precision", "recall"]
    assert rows == [
        ["Bag", "0.5000 → 0.7500 (+0.2500)", "0.5000 → 0.2500 (-0.2500)", "0.5000 → 0.5000 (+0.0000)"],
        ["Coat", f"{ABSENT} → 0.5000", f"{ABSENT} → {ABSENT}", f"{ABSENT} → {ABSENT}"],
    ]
    assert per_class_change_table(None, this)[1][0][1] == f"{ABSENT} → 0.7500"


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_per_class_scores_are_read_at_any_revision_and_a_missing_file_is_a_warning(tmp_path, caplog):
    """Read through DVC's file system from a git repo: committed, removed, corrupt, unknown revision."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "test@example.com")
    git(tmp_path, "config", "user.name", "refinelab tests")
    details = tmp_path / "metrics" / "test_details.json"
    details.parent.mkdir()
    details.write_text(json.dumps({"test": {"per_class": {"Bag": {"f1-score": 0.5}}}}))
    (tmp_path / "README").write_text("x")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "with details")
    with_details = git(tmp_path, "rev-parse", "HEAD")
    details.unlink()
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "without")
    without = git(tmp_path, "rev-parse", "HEAD")

    assert read_per_class(tmp_path, with_details) == {"Bag": {"f1-score": 0.5}}
    with caplog.at_level(logging.WARNING, logger="refinelab.report.compare"):
        assert read_per_class(tmp_path, without, "old-exp") is None
        assert read_per_class(tmp_path, "f" * 40) is None
        details.write_text("{not json")
        assert read_per_class(tmp_path, WORKSPACE) is None
        details.write_text(json.dumps({"test": {"accuracy": 0.5}}))
        assert read_per_class(tmp_path, WORKSPACE) is None
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 4 and all("metrics/test_details.json" in warning for warning in warnings)
    assert warnings[0].startswith(f"old-exp ({without[:7]}): no metrics/test_details.json")


def twenty_runs_curves(count=20):
    epochs = [1, 2, 3]
    return {
        f"run-{index}": {
            (split, metric): (epochs, [index + offset + epoch / 10 for epoch in epochs])
            for offset, split in enumerate(("train", "eval"))
            for metric in ("loss", "accuracy")
        }
        for index in range(count)
    }


def test_twenty_runs_get_twenty_distinct_colour_and_marker_pairs():
    figure = overlaid_learning_curves(twenty_runs_curves(20))
    for axis in figure.axes:
        lines = {line.get_label(): line for line in axis.get_lines()}
        styles = {}
        for index in range(20):
            validation, train = lines[f"run-{index} (validation)"], lines[f"run-{index} (train)"]
            styles[index] = (validation.get_color(), validation.get_marker())
            # Train and validation of one run: same colour and marker, told apart by line and marker fill.
            assert (train.get_color(), train.get_marker()) == styles[index]
            assert validation.get_linestyle() == "-" and train.get_linestyle() == "--"
            assert train.get_markerfacecolor() == "white" and validation.get_markerfacecolor() != "white"
        assert len(set(styles.values())) == 20
        assert len({colour for colour, _ in styles.values()}) == 20
        assert len({marker for _, marker in styles.values()}) == 20
    # The legend: each run once, then what solid and dashed mean.
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[:20] == [f"run-{index}" for index in range(20)]
    assert legend[20:] == ["validation: solid, filled markers", "train: dashed, hollow markers"]


def test_more_than_twenty_runs_still_get_distinct_pairs():
    figure = overlaid_learning_curves(twenty_runs_curves(45))
    pairs = {(line.get_color(), line.get_marker()) for line in figure.axes[0].get_lines()}
    assert len(pairs) == 45


@pytest.fixture
def fake_dvc(monkeypatch, study):
    """`dvc` answering from the study above; curves and per-class scores made up (no curves for `old`,
    no per-class scores for `old`, `fm-drop` and `main`)."""
    calls = []

    def dvc(args, repo):
        calls.append(args)
        if args[:2] == ["exp", "show"]:
            return json.dumps(study)
        if args[:2] == ["params", "diff"]:
            return "| Path | Param | main | workspace |\n|---|---|---|---|\n| params.yaml | dropout | 0.0 | 0.25 |\n"
        if args[:2] == ["metrics", "diff"]:
            return "| Path | Metric | main | workspace | Change |\n|---|---|---|---|---|\n" + "".join(
                f"| metrics/evaluate.json | {name} | 0.5 | 0.6 | 0.1 |\n" for name in ("accuracy", "ece", "f1")
            )
        raise AssertionError(args)

    runs = [run for entry in study for run in [entry, *(exp["revs"][0] for exp in entry["experiments"])]]
    revs = {run["rev"]: run["name"] for run in runs}

    def read_curves(repo, rev):
        return {} if revs.get(rev) == "old" else twenty_runs_curves(1)["run-0"]

    def read_per_class(repo, rev, name=None):
        if revs.get(rev, rev) in ("old", "fm-drop", "main"):
            logging.getLogger("refinelab.report.compare").warning("%s: no metrics/test_details.json", name or rev)
            return None
        return {"Bag": {"f1-score": 0.5, "precision": 0.5, "recall": 0.5}, "Coat": {"f1-score": 0.75}}

    monkeypatch.setattr(compare_module, "dvc", dvc)
    monkeypatch.setattr(compare_module, "read_curves", read_curves)
    monkeypatch.setattr(compare_module, "read_per_class", read_per_class)
    monkeypatch.setattr(compare_module, "read_data_source", lambda repo, rev: None)
    return calls


def sections(markdown):
    parts = markdown.split("\n## ")
    return {part.split("\n", 1)[0]: part for part in parts[1:]}


def test_compare_writes_one_section_and_one_figure_per_dataset(tmp_path, fake_dvc):
    output = tmp_path / "compare.md"
    markdown = compare(tmp_path, [], output)
    assert output.read_text() == markdown
    assert markdown.startswith("# Experiments compared: 6 runs, 3 datasets\n")
    found = sections(markdown)
    assert list(found) == ["fashion_mnist (3 runs)", "mnist (2 runs)", "No `dataset` param (1 run)"]
    for section, slug in zip(found.values(), ("fashion_mnist", "mnist", "no_dataset")):
        figure = f"compare_learning_curves_{slug}.png"
        assert f"]({figure})" in section and (tmp_path / figure).stat().st_size > 1000
    fashion = found["fashion_mnist (3 runs)"]
    assert "| experiment | rev | model | dropout | test accuracy |" in fashion
    # Per-class scores folded, F1 first; a run without them shows ABSENT, never fails the report.
    assert "<details><summary>Per-class scores, test set (2 classes): F1, precision, recall</summary>" in fashion
    assert "| class | fm-bigger | fm-drop | main |" in fashion
    assert f"| Bag | 0.5000 | {ABSENT} | {ABSENT} |" in fashion
    assert "no `metrics/test_details.json` for fm-drop, main" in fashion
    assert "No per-class scores: no run here has `metrics/test_details.json`." in found["No `dataset` param (1 run)"]
    assert "| epochs |" in found["mnist (2 runs)"].splitlines()[2]


def test_compare_as_html_embeds_every_figure(tmp_path, fake_dvc):
    page = compare(tmp_path, ["fm-drop", "mn-1", "mn-2"], tmp_path / "study.html")
    assert page.count("data:image/png;base64,") == 2
    assert "<h2>fashion_mnist (1 run)</h2>" in page and "<h2>mnist (2 runs)</h2>" in page
    assert "<details><summary>Per-class scores" in page and "<th>epochs</th>" in page


def test_pull_request_report_keeps_the_metrics_diff_whole_and_folds_per_class_scores(tmp_path, fake_dvc):
    output = tmp_path / "report.md"
    markdown = pull_request_report(tmp_path, "main", output)
    assert ["metrics", "diff", "main", "--md"] in fake_dvc
    metrics = markdown.split("### Metrics")[1].split("### Learning curves")[0]
    table, folded = metrics.split("<details>")
    assert all(f"| {name} |" in table for name in ("accuracy", "ece", "f1"))
    # main has no metrics/test_details.json here: its side is ABSENT, the report still written.
    assert "<summary>Per-class scores, test set (2 classes), main → this change</summary>" in folded
    assert f"| Bag | {ABSENT} → 0.5000 | {ABSENT} → 0.5000 | {ABSENT} → 0.5000 |" in folded
    assert f"{ABSENT}: no `metrics/test_details.json` for `main`." in folded
    assert "](report_learning_curves.png)" in markdown and (tmp_path / "report_learning_curves.png").is_file()


def test_a_diff_table_with_no_row_is_nothing():
    """`dvc params diff --md` prints a header when nothing differs: the report then says so in words."""
    from refinelab.report.compare import rows_or_nothing

    assert rows_or_nothing("| Path   | Param   | HEAD   | workspace   | Change   |\n|--------|---------|--------|---|---|\n\n") == ""
    table = "| Path | Param |\n|---|---|\n| params.yaml | dropout |"
    assert rows_or_nothing(table + "\n") == table
