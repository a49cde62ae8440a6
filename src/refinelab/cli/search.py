"""``refinelab search``: a hyperparameter search whose every trial is a DVC experiment.

A search space is a YAML file mapping params keys (as ``dvc exp run -S`` takes them: ``dropout``,
``arch.filters``, ``+arch.kernel_size``) to one of ``{choice: [...]}``, ``{uniform: [low, high]}``,
``{loguniform: [low, high]}`` or ``{int: [low, high]}`` (both ends included). Trials are proposed by
grid (every combination; continuous ranges are not allowed there) or at random (``--trials``, seeded:
the same seed proposes the same trials). With ``--halving``, successive halving runs every trial for
a small epoch budget, keeps the best 1/eta by validation accuracy, and continues those for eta times
the epochs, until the full ``epochs`` budget. A rung's run stops at ``train.until_epoch`` of the full
``epochs`` (its learning-rate schedule spans them all) and the next rung's run, the same params without
``until_epoch``'s limit or with a later one, continues from its backup (refinelab.train.resume) instead of
training from the start. Trials are queued with ``dvc exp run --queue`` and run by DVC's queue workers;
selection only ever looks at validation accuracy, the test accuracy is reported.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from refinelab.core.environment import RESUME_DIR_ENV
from refinelab.core.errors import ParamsError
from refinelab.params.files import read_params_file

log = logging.getLogger(__name__)

KINDS = ("choice", "uniform", "loguniform", "int")
STRATEGIES = ("grid", "random")
SELECTION_METRIC = "val_acc"  # Validation accuracy: the test set is reported, never used to choose.
REPORTED_METRIC = "accuracy"
EPOCHS_KEY = "epochs"
# Where a rung's runs stop; not in params.yaml, so added (`++` adds or replaces).
UNTIL_KEY = "++train.until_epoch"
# Workers running side by side share the cores instead of each taking all of them.
THREADS_KEY = "++train.threads"  # Not in params.yaml (its default is auto).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str
    values: tuple[Any, ...]  # the choices, or (low, high)

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.values[rng.randrange(len(self.values))]
        low, high = self.values
        if self.kind == "int":
            return rng.randint(low, high)
        if self.kind == "loguniform":
            return float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.3g}")
        return float(f"{rng.uniform(low, high):.3g}")

    def grid_values(self) -> tuple[Any, ...]:
        if self.kind == "choice":
            return self.values
        if self.kind == "int":
            return tuple(range(self.values[0], self.values[1] + 1))
        raise ParamsError(f"{self.key}: a grid needs choice or int values, not {self.kind}; use --strategy random")


def parse_space(raw: Any, source: str = "search space") -> list[Dimension]:
    """Validate a search space (the parsed YAML) into dimensions; errors name the key."""
    if not isinstance(raw, dict) or not raw:
        raise ParamsError(f"{source}: expected a mapping of params keys to {{choice|uniform|loguniform|int: ...}}")
    dimensions = []
    for key, spec in raw.items():
        where = f"{source}: {key}"
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ParamsError(f"{where}: expected one of {', '.join(f'{{{kind}: ...}}' for kind in KINDS)}, got {spec!r}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ParamsError(f"{where}: {kind} takes a non-empty list, got {values!r}")
        if kind != "choice":
            numeric = int if kind == "int" else (int, float)
            if len(values) != 2 or not all(isinstance(v, numeric) and not isinstance(v, bool) for v in values):
                raise ParamsError(f"{where}: {kind} takes [low, high] ({'integers' if kind == 'int' else 'numbers'}), "
                                  f"got {values!r}")
            if values[0] > values[1] or (kind == "loguniform" and values[0] <= 0):
                raise ParamsError(f"{where}: {kind} needs low <= high{' and low > 0' if kind == 'loguniform' else ''}, "
                                  f"got {values!r}")
        if key.lstrip("+") in (EPOCHS_KEY, UNTIL_KEY.lstrip("+")):
            raise ParamsError(f"{where}: the search sets it (its epoch budget, per rung with --halving), not a dimension")
        dimensions.append(Dimension(str(key), kind, tuple(values)))
    return dimensions


def load_space(path: str | Path) -> list[Dimension]:
    try:
        raw = read_params_file(path)  # YAML 1.2, as DVC and params.yaml read it.
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read the search space ({exc.strerror})") from None
    return parse_space(raw, str(path))


def propose(dimensions: Sequence[Dimension], strategy: str, trials: int | None, seed: int) -> list[dict[str, Any]]:
    """The trials' params: every grid combination (the first ``trials`` of them if given), or ``trials``
    random draws, distinct where the space allows; the same seed gives the same list."""
    if strategy not in STRATEGIES:
        raise ParamsError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy == "grid":
        combinations = itertools.product(*(dimension.grid_values() for dimension in dimensions))
        proposed = [dict(zip((d.key for d in dimensions), values)) for values in combinations]
        return proposed[:trials] if trials else proposed
    if not trials or trials < 1:
        raise ParamsError("trials: a random search needs --trials N (at least 1)")
    rng = random.Random(seed)
    proposed, seen = [], set()
    for _ in range(trials * 20):  # Redraw duplicates, but a small discrete space may have fewer than N.
        trial = {dimension.key: dimension.sample(rng) for dimension in dimensions}
        fingerprint = json.dumps(trial, sort_keys=True)
        if fingerprint not in seen:
            seen.add(fingerprint)
            proposed.append(trial)
        if len(proposed) == trials:
            break
    return proposed


def halving_rungs(trials: int, max_epochs: int, eta: int) -> list[tuple[int, int]]:
    """(trials kept, epochs) per rung: every trial at the smallest budget, then the best 1/eta with eta
    times the epochs, ending with the full ``max_epochs``; one rung (no halving) if eta is 1."""
    if eta < 2:
        return [(trials, max_epochs)]
    rungs = 1
    while trials // eta**rungs >= 1 and max_epochs // eta**rungs >= 1:
        rungs += 1
    return [(max(trials // eta**rung, 1), max(max_epochs // eta ** (rungs - 1 - rung), 1)) for rung in range(rungs)]


def best_by_validation(scores: dict[str, dict[str, float]], keep: int) -> list[str]:
    """The ``keep`` trials with the highest validation accuracy (ties: the earlier name); a trial
    without a score (it failed) is never kept."""
    scored = [name for name in scores if scores[name].get(SELECTION_METRIC) is not None]
    return sorted(scored, key=lambda name: (-scores[name][SELECTION_METRIC], name))[:keep]


def format_value(value: Any) -> str:
    """A value as `dvc exp run -S key=value` parses it (YAML flow style)."""
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


class ExperimentRunner(Protocol):
    def queue(self, name: str, params: dict[str, Any]) -> None: ...
    def run_queued(self, jobs: int) -> None: ...
    def scores(self, names: Sequence[str]) -> dict[str, dict[str, float]]: ...


@dataclass
class DvcRunner:
    """Trials as DVC experiments: queued with -S, run by `dvc queue` workers, read from `dvc exp show`."""

    repo: Path
    dvc: Callable[[list[str], Path], str]

    def queue(self, name: str, params: dict[str, Any]) -> None:
        options = [option for key, value in params.items() for option in ("-S", f"{key}={format_value(value)}")]
        self.dvc(["exp", "run", "--queue", "--name", name, *options], self.repo)

    def run_queued(self, jobs: int) -> None:
        """Run every queued experiment with ``jobs`` workers and wait for them; a failed trial is
        logged and scores nothing (its reason is in `dvc queue logs <name>`)."""
        from refinelab.report.experiments import DvcCommandError

        try:
            self.dvc(["exp", "run", "--run-all", "--jobs", str(jobs)], self.repo)
        except DvcCommandError as exc:
            log.warning("some trials failed (see `dvc queue logs <name>`): %s", str(exc).splitlines()[-1])

    def scores(self, names: Sequence[str]) -> dict[str, dict[str, float]]:
        from refinelab.report.experiments import EVALUATION_METRICS, runs_from_exp_show

        _, experiments, _ = runs_from_exp_show(json.loads(self.dvc(["exp", "show", "--json"], self.repo)))
        found = {run.name: run.metrics.get(EVALUATION_METRICS, {}) for run in experiments}
        return {name: {key: found.get(name, {}).get(key) for key in (SELECTION_METRIC, REPORTED_METRIC)}
                for name in names}


@contextlib.contextmanager
def shared_backups(repo: Path, study: str) -> Iterator[Path]:
    """Point the training backups (refinelab.train.resume) of every run started meanwhile at one folder of the
    study, where every queue worker finds them, so that a halving rung continues the previous rung's
    runs; remove it at the end (what is left then are the backups of trials that were not kept)."""
    if os.environ.get(RESUME_DIR_ENV):  # The user's own folder: theirs to clean.
        yield Path(os.environ[RESUME_DIR_ENV])
        return
    folder = Path(repo).resolve() / ".dvc" / "tmp" / "refinelab-resume" / study
    shutil.rmtree(folder, ignore_errors=True)  # A killed study's leftovers: never continued by this one.
    os.environ[RESUME_DIR_ENV] = str(folder)
    try:
        yield folder
    finally:
        del os.environ[RESUME_DIR_ENV]
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Trial:
    name: str
    params: dict[str, Any]
    epochs: int
    rung: int
    validation_accuracy: float | None
    test_accuracy: float | None


def run_study(
    study: str,
    proposals: list[dict[str, Any]],
    runner: ExperimentRunner,
    max_epochs: int,
    eta: int = 1,
    jobs: int = 1,
) -> list[Trial]:
    """Run the proposals as experiments named ``<study>-<trial>-e<epochs>``, rung by rung; every trial run.
    Every run has the full ``max_epochs`` schedule; a rung before the last stops at its epochs."""
    if not NAME_PATTERN.match(study):
        raise ParamsError(f"name: {study!r}: letters, digits, '-' and '_' only (it starts every experiment's name)")
    rungs = halving_rungs(len(proposals), max_epochs, eta)
    threads = worker_threads(jobs)
    alive = list(range(len(proposals)))
    finished: list[Trial] = []
    for rung, (keep, epochs) in enumerate(rungs):
        if rung:
            previous = {trial.name: {SELECTION_METRIC: trial.validation_accuracy}
                        for trial in finished if trial.rung == rung - 1}
            kept = set(best_by_validation(previous, keep))
            alive = [index for index in alive if trial_name(study, index, rungs[rung - 1][1]) in kept]
        log.info("rung %d: %d trials x %d epochs", rung + 1, len(alive), epochs)
        names = [trial_name(study, index, epochs) for index in alive]
        stop = {UNTIL_KEY: epochs} if epochs < max_epochs else {}
        for index, name in zip(alive, names):
            runner.queue(name, {**threads, **proposals[index], EPOCHS_KEY: max_epochs, **stop})
        runner.run_queued(jobs)
        scores = runner.scores(names)
        for index, name in zip(alive, names):
            finished.append(Trial(name, proposals[index], epochs, rung, scores[name].get(SELECTION_METRIC),
                                  scores[name].get(REPORTED_METRIC)))
    return finished


def worker_threads(jobs: int) -> dict[str, int]:
    """The -S value that makes ``jobs`` workers side by side share the cores (none for one worker)."""
    return {THREADS_KEY: max(1, (os.cpu_count() or 1) // jobs)} if jobs > 1 else {}


def trial_name(study: str, index: int, epochs: int) -> str:
    return f"{study}-{index + 1:02d}-e{epochs}"


def best_trial(trials: list[Trial]) -> Trial | None:
    last_rung = max((trial.rung for trial in trials), default=0)
    finalists = {trial.name: {SELECTION_METRIC: trial.validation_accuracy} for trial in trials if trial.rung == last_rung}
    chosen = best_by_validation(finalists, 1)
    return next(trial for trial in trials if trial.name == chosen[0]) if chosen else None


def summary(trials: list[Trial]) -> str:
    """The study's table (rung by rung, best validation accuracy first) and how to keep the best trial."""
    def score(value: float | None) -> str:
        return "failed" if value is None else f"{value:.4f}"

    lines = [f"{'trial':<28} {'epochs':>6} {'val acc':>8} {'test acc':>8}  params"]
    for trial in sorted(trials, key=lambda t: (t.rung, -(t.validation_accuracy or -1.0), t.name)):
        params = " ".join(f"{key}={format_value(value)}" for key, value in trial.params.items())
        lines.append(f"{trial.name:<28} {trial.epochs:>6} {score(trial.validation_accuracy):>8} "
                     f"{score(trial.test_accuracy):>8}  {params}")
    best = best_trial(trials)
    if len({trial.rung for trial in trials}) > 1:
        lines.append("\n(each rung after the first continued its trials from the previous rung's backup; two-phase "
                     "transfer models train from the start)")
    if best is None:
        lines.append("\nno trial finished: see `dvc queue logs <name>`")
    else:
        lines += [
            f"\nbest by validation accuracy: {best.name} (validation {score(best.validation_accuracy)}, "
            f"test {score(best.test_accuracy)})",
            f"keep it:    dvc exp apply {best.name}    or    dvc exp branch {best.name} <branch>",
            "compare:    refinelab compare " + " ".join(trial.name for trial in trials),
        ]
    return "\n".join(lines)
