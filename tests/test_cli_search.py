"""`refinelab search`: proposals are deterministic for a seed, errors name the key, and successive
halving keeps the trials with the best validation accuracy (a stubbed metric source: no training)."""

from __future__ import annotations

import json
import os
import re

import pytest

from refinelab.cli.search import best_trial, halving_rungs, parse_space, propose, run_study, summary
from refinelab.core.errors import ParamsError

SPACE = {
    "dropout": {"uniform": [0.0, 0.5]},
    "l2": {"loguniform": [1e-6, 1e-3]},
    "learning_rate": {"choice": [0.001, 0.002]},
    "arch.filters": {"choice": [[16, 32, 64], [32, 64, 128]]},
    "+arch.kernel_size": {"int": [3, 5]},
}


def test_the_same_seed_proposes_the_same_trials_and_another_seed_others():
    dimensions = parse_space(SPACE)
    first, again, other = (propose(dimensions, "random", 16, seed) for seed in (7, 7, 8))
    assert first == again and first != other
    assert len(first) == 16 and len({str(sorted(trial.items())) for trial in first}) == 16
    for trial in first:
        assert 0.0 <= trial["dropout"] <= 0.5 and 1e-6 <= trial["l2"] <= 1e-3
        assert trial["arch.filters"] in ([16, 32, 64], [32, 64, 128]) and trial["+arch.kernel_size"] in (3, 4, 5)


def test_a_grid_is_every_combination_of_choices_and_ints():
    dimensions = parse_space({"model": {"choice": ["smaller", "baseline", "bigger"]}, "dropout": {"choice": [0, 0.25]}})
    trials = propose(dimensions, "grid", None, seed=0)
    assert len(trials) == 6 and trials[0] == {"model": "smaller", "dropout": 0}
    assert len(propose(parse_space({"+arch.kernel_size": {"int": [3, 5]}}), "grid", None, 0)) == 3
    with pytest.raises(ParamsError, match="dropout: a grid needs choice or int"):
        propose(parse_space({"dropout": {"uniform": [0, 0.5]}}), "grid", None, 0)


@pytest.mark.parametrize("space, message", [
    ({"dropout": {"uniforme": [0, 1]}}, "dropout: expected one of"),
    ({"l2": {"loguniform": [0, 1e-3]}}, "l2: loguniform needs low <= high and low > 0"),
    ({"dropout": {"uniform": [0.5, 0.1]}}, "dropout: uniform needs low <= high"),
    ({"+arch.kernel_size": {"int": [3, 5.5]}}, r"kernel_size: int takes \[low, high\] \(integers\)"),
    ({"model": {"choice": []}}, "model: choice takes a non-empty list"),
    ({"epochs": {"choice": [1, 2]}}, "epochs: the search sets it"),
    ({"+train.until_epoch": {"int": [1, 2]}}, "until_epoch: the search sets it"),
    ([], "expected a mapping"),
])
def test_a_bad_space_names_the_key(space, message):
    with pytest.raises(ParamsError, match=message):
        parse_space(space)


def test_halving_rungs_end_at_the_full_budget():
    assert halving_rungs(16, 8, 2) == [(16, 1), (8, 2), (4, 4), (2, 8)]
    assert halving_rungs(9, 9, 3) == [(9, 1), (3, 3), (1, 9)]
    assert halving_rungs(4, 4, 1) == [(4, 4)]
    assert halving_rungs(8, 1, 2) == [(8, 1)]  # No smaller budget than one epoch.


class StubRunner:
    """Validation accuracy grows with dropout and epochs; one trial fails; test accuracy is the reverse,
    so a study that chose by the test set would pick other trials."""

    def __init__(self, failing: str | None = None):
        self.queued: dict[str, dict] = {}
        self.runs: list[list[str]] = []
        self.failing = failing

    def queue(self, name, params):
        self.queued[name] = params

    def run_queued(self, jobs):
        self.runs.append([name for name in self.queued if not any(name in run for run in self.runs)])

    def epochs_run(self, name):
        return self.queued[name].get("++train.until_epoch", self.queued[name]["epochs"])

    def scores(self, names):
        return {
            name: {"val_acc": None, "accuracy": None} if name == self.failing else
            {"val_acc": self.queued[name]["dropout"] + self.epochs_run(name) / 100,
             "accuracy": 1 - self.queued[name]["dropout"]}
            for name in names
        }


def test_halving_keeps_the_best_by_validation_accuracy_and_never_the_test_set():
    proposals = [{"dropout": d} for d in (0.1, 0.4, 0.2, 0.3)]
    runner = StubRunner(failing="study-02-e1")  # The best one at rung 1 fails: it is not kept.
    trials = run_study("study", proposals, runner, max_epochs=4, eta=2, jobs=2)
    assert runner.runs == [["study-01-e1", "study-02-e1", "study-03-e1", "study-04-e1"],
                           ["study-03-e2", "study-04-e2"], ["study-04-e4"]]
    # Every run has the full schedule; the rungs before the last stop early, and the next one continues.
    # Two workers side by side share the cores: each trial's TensorFlow gets half (a param: it changes results).
    threads = {"++train.threads": max(1, (os.cpu_count() or 1) // 2)}
    assert runner.queued["study-01-e1"] == {**threads, "dropout": 0.1, "epochs": 4, "++train.until_epoch": 1}
    assert runner.queued["study-03-e2"] == {**threads, "dropout": 0.2, "epochs": 4, "++train.until_epoch": 2}
    assert runner.queued["study-04-e4"] == {**threads, "dropout": 0.3, "epochs": 4}
    best = best_trial(trials)
    assert best.name == "study-04-e4" and best.test_accuracy == pytest.approx(0.7)
    text = summary(trials)
    assert "dvc exp apply study-04-e4" in text and "failed" in text
    assert "refinelab compare study-01-e1" in text


def test_a_study_name_must_make_valid_experiment_names():
    with pytest.raises(ParamsError, match="name: 'my study'"):
        run_study("my study", [{"dropout": 0.1}], StubRunner(), max_epochs=1)


@pytest.mark.slow
def test_a_real_study_halves_on_the_dvc_queue_and_continues_the_kept_trials(project_copy, project_env,
                                                                            tiny_raw_params):
    """Four tiny trials (digits, 1 epoch of a 2-epoch schedule) queued as experiments and run by two queue
    workers; the two best by validation accuracy continue to epoch 2 from their backups; all are listed
    with their metrics and the best is named with the command that keeps it."""
    import subprocess
    import sys

    from refinelab.cli.search import DvcRunner
    from refinelab.report.experiments import dvc

    from helpers import commit_params, run

    project = project_copy
    params = dict(tiny_raw_params, dataset="digits", model="smaller")
    commit_params(project, params)
    (project / "space.yaml").write_text("dropout: {choice: [0.0, 0.3, 0.6, 0.9]}\n")
    result = subprocess.run(
        [sys.executable, "-m", "refinelab", "search", "space.yaml", "--name", "tiny", "--strategy", "grid",
         "--epochs", "2", "--halving", "2", "--jobs", "2"], cwd=project, env=project_env, capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "failed" not in result.stdout, result.stdout

    first_rung = [f"tiny-0{trial}-e1" for trial in range(1, 5)]
    scores = DvcRunner(project, dvc).scores(first_rung)
    kept = sorted(first_rung, key=lambda name: (-scores[name]["val_acc"], name))[:2]
    continued = sorted(name.replace("-e1", "-e2") for name in kept)
    listed = run(["dvc", "exp", "list", "--name-only"], project, env=project_env).stdout.split()
    assert sorted(listed) == sorted(first_rung + continued)
    refs = run(["git", "for-each-ref", "refs/exps", "--format=%(refname)"], project).stdout.split()
    for name in continued:
        ref = next(ref for ref in refs if ref.endswith(f"/{name}"))
        summary = json.loads(run(["git", "show", f"{ref}:metrics/train/metrics.json"], project).stdout)
        assert summary["resumed_after_epoch"] == 1 and summary["step"] == 2, name  # Only epoch 2 trained (steps are epoch numbers).
    best = re.search(r"best by validation accuracy: (\S+)", result.stdout).group(1)
    assert best in continued and f"dvc exp apply {best}" in result.stdout
    assert not (project / ".dvc/tmp/refinelab-resume/tiny").exists()  # The stopped trials' backups too.
    queue = run(["dvc", "queue", "status"], project, env=project_env).stdout
    assert "Queued" not in queue and "Running" not in queue and "Failed" not in queue, queue
