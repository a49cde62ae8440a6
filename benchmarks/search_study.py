"""Studies on DVC's queue: queue workers -j 1 against -j 2, and a random search with successive halving
against a grid given the same epoch budget. Everything runs in a fresh copy of the project on a
Fashion-MNIST subset (``--limit`` images per split), through the same code `refinelab search` runs.

- jobs: the same 4 experiments (dropout 0.1-0.4, 2 epochs) run by 1 worker with all cores, then by
  2 workers with ``train.threads`` = cores / 2 (what ``refinelab search --jobs 2`` sets).
- study: ``--trials`` random trials over dropout, l2, learning rate and conv widths, halving with eta 4
  up to ``--epochs``; grid: dropout x learning rate x widths (8 trials) at ``--epochs``: the same number of
  trial-epochs with the defaults (16 x 2 + 4 x 8 = 8 x 8 = 64). Both with ``--jobs`` workers.

Selection is by validation accuracy only; the test accuracy of the chosen trial is reported.

    python benchmarks/search_study.py          # about 30 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, machine, project_copy, run  # noqa: E402

from refinelab.cli.search import (  # noqa: E402
    DvcRunner, best_trial, halving_rungs, parse_space, propose, run_study, shared_backups, worker_threads,
)
from refinelab.params.files import read_config, write_config  # noqa: E402
from refinelab.report.experiments import dvc  # noqa: E402

WIDTHS = [[16, 32, 64], [32, 64, 128]]
RANDOM_SPACE = {
    "dropout": {"uniform": [0.0, 0.5]},
    "l2": {"loguniform": [1e-6, 1e-3]},
    "learning_rate": {"loguniform": [3e-4, 3e-3]},
    "arch.filters": {"choice": WIDTHS},
}
PARTS = ("jobs", "random_halving", "grid")
GRID_SPACE = {
    "dropout": {"choice": [0.1, 0.4]},
    "learning_rate": {"choice": [0.001, 0.003]},
    "arch.filters": {"choice": WIDTHS},
}


def timed(action) -> tuple[float, object]:
    start = time.monotonic()
    result = action()
    return round(time.monotonic() - start, 1), result


def compare_jobs(runner: DvcRunner, epochs: int) -> dict:
    results = {}
    for jobs in (1, 2):
        for index, dropout in enumerate((0.1, 0.2, 0.3, 0.4)):
            runner.queue(f"jobs{jobs}-{index + 1}", {**worker_threads(jobs), "dropout": dropout, "epochs": epochs})
        results[f"j{jobs}"], _ = timed(lambda: runner.run_queued(jobs))
    return {"wall_s": results, "j2_speedup": round(results["j1"] / results["j2"], 3)}


def study(name: str, runner: DvcRunner, proposals: list[dict], epochs: int, eta: int, jobs: int) -> dict:
    with shared_backups(runner.repo, name):
        wall, trials = timed(lambda: run_study(name, proposals, runner, epochs, eta=eta, jobs=jobs))
    best = best_trial(trials)
    rung_epochs = sorted({trial.epochs for trial in trials})
    return {
        "wall_s": wall,
        "trials": len(proposals),
        "runs": len(trials),
        "trial_epochs": sum(trial.epochs for trial in trials),
        # A kept trial continues from the previous rung's epochs: only the difference is trained.
        "epochs_trained": sum(trial.epochs - ([0] + rung_epochs)[rung_epochs.index(trial.epochs)] for trial in trials),
        "failed": sum(trial.validation_accuracy is None for trial in trials),
        "best": best and {"name": best.name, "params": best.params, "validation_accuracy": best.validation_accuracy,
                          "test_accuracy": best.test_accuracy},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=5000, help="images per split (data.limit; default 5000)")
    parser.add_argument("--epochs", type=int, default=8, help="the full epoch budget of a trial (default 8)")
    parser.add_argument("--trials", type=int, default=16, help="random trials (default 16)")
    parser.add_argument("--eta", type=int, default=4, help="successive halving's eta (default 4)")
    parser.add_argument("--jobs", type=int, default=2, help="queue workers for the studies (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="refinelab-study-") as scratch:
        project = project_copy(Path(scratch) / "project")
        os.environ["PYTHONPATH"] = str(project / "src")  # The copy's code, whatever the checkout does meanwhile.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # Stages run `python`.
        params = read_config(project / "params.yaml")
        params["data"]["limit"] = args.limit
        write_config(project, params)
        run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam", "subset"], project)
        run([sys.executable, "-m", "dvc", "repro", "augment"], project)  # Every experiment restores these.
        runner = DvcRunner(project, dvc)
        report = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "setup": vars(args) | {"out": None, "rungs": halving_rungs(args.trials, args.epochs, args.eta)},
        }
        if "jobs" in args.parts:
            report["jobs"] = compare_jobs(runner, epochs=2)
        if "random_halving" in args.parts:
            report["random_halving"] = study(
                "rand", runner, propose(parse_space(RANDOM_SPACE), "random", args.trials, args.seed), args.epochs,
                args.eta, args.jobs)
        if "grid" in args.parts:
            report["grid"] = study("grid", runner, propose(parse_space(GRID_SPACE), "grid", None, args.seed),
                                   args.epochs, 1, args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{report['date'].replace(':', '')}-search.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
