"""The comparison logic on `dvc exp show --json`-shaped data written here (the real commands run in
tests/test_compare_report.py)."""

import pytest

from refinelab.compare import comparison_table, differing_params, markdown_table, select_runs, split_table
from refinelab.errors import RefinelabError


def state(rev, name, accuracy, **params):
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "params": {"params.yaml": {"data": {"model": "baseline", "dropout": 0.0, "data": {"limit": 0}, **params}}},
            "metrics": {
                "metrics/evaluate.json": {"data": {"test": {"accuracy": accuracy, "loss": 0.5}}},
                "metrics/model.json": {"data": {"total_params": 1000}},
                "metrics/train/metrics.json": {"data": {"train_seconds": 12.5}},
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


def test_default_is_the_commit_and_its_finished_experiments(shown):
    assert [run.name for run in select_runs(shown, [])] == ["main", "drop-25", "bigger"]


def test_experiments_are_chosen_by_name_or_revision(shown):
    assert [run.name for run in select_runs(shown, ["bigger", "bbbbbbb", "workspace"])] == ["bigger", "drop-25", "workspace"]
    with pytest.raises(RefinelabError, match=r"'nope'.*main, drop-25, bigger, workspace"):
        select_runs(shown, ["nope"])


def test_table_has_only_differing_params_and_is_sorted_by_test_accuracy(shown):
    runs = select_runs(shown, [])
    assert differing_params(runs) == ["model", "dropout"]
    lines = markdown_table(*comparison_table(runs)).splitlines()
    assert lines[0] == "| experiment | rev | model | dropout | test accuracy | test loss | params | train seconds |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| bigger", "| drop-25", "| main"]
    assert lines[2] == f"| bigger | {'c' * 7} | bigger | 0.0 | 0.9000 | 0.5000 | 1,000 | 12.5 |"


def test_split_table_keeps_the_header_on_both_parts():
    table = "| Metric | Change |\n|---|---|\n| test.accuracy | 0.1 |\n| test.per_class.Bag.recall | 0.2 |"
    above, below = split_table(table, "per_class.")
    assert above == "| Metric | Change |\n|---|---|\n| test.accuracy | 0.1 |"
    assert below == "| Metric | Change |\n|---|---|\n| test.per_class.Bag.recall | 0.2 |"
    assert split_table(table, "nowhere") == (table, "")


def test_commits_without_results_are_left_out_unless_named(shown):
    unrun = state("e" * 40, "old", None)
    unrun["data"]["metrics"] = {}
    shown.append(unrun)
    assert "old" not in [run.name for run in select_runs(shown, [])]
    assert [run.name for run in select_runs(shown, ["old"])] == ["old"]
