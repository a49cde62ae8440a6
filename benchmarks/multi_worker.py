"""`train.distribute: multi_worker` against one process, on the same data in one run on one machine.

The train stage (``stages/train.py``, the command dvc.yaml runs) with the project's params for
``--epochs`` epochs: alone (``distribute: none``, every core), then as a cluster of ``--workers``
processes on localhost (``TF_CONFIG`` with loopback ports, the cores shared out through
``train.threads``). On one machine a cluster cannot be faster: the ratio measures what the
collectives cost, and the validation accuracies should agree (batch-norm statistics and dropout are
per replica, so not to the digit). Needs the prepared data (`dvc repro augment` first) in this project,
or in another one (``--project``: its data/augmented and data/prepared, its params.yaml by default).

    python benchmarks/multi_worker.py --epochs 2
    python benchmarks/multi_worker.py --project /tmp/hymenoptera --epochs 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, machine  # noqa: E402

from refinelab.params.files import read_config, write_config  # noqa: E402
from refinelab.train.distribution import localhost_cluster  # noqa: E402


def run_train(project: Path, train_dir: Path, prepared_dir: Path, workers: int) -> dict:
    """The train stage in ``project`` as ``workers`` processes (1: alone); its timing and summary."""
    command = [sys.executable, str(ROOT / "stages" / "train.py"), str(train_dir), str(prepared_dir),
               "models/model.keras", "metrics/train", "metrics/model.json", "metrics/timing.json"]
    environments = [dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")]
    if workers > 1:
        environments = [dict(environments[0], TF_CONFIG=tf_config) for tf_config in localhost_cluster(workers)]
    processes = [subprocess.Popen(command, cwd=project, env=environment, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for environment in environments]
    logs = [process.communicate()[1] for process in processes]
    for process, log in zip(processes, logs):
        if process.returncode != 0:
            raise RuntimeError(f"train with {workers} worker(s) failed:\n{log[-3000:]}")
    summary = json.loads((project / "metrics/train/metrics.json").read_text())
    return {"workers": workers, "train_s": json.loads((project / "metrics/timing.json").read_text())["train_time"],
            "val_accuracy": round(summary["eval"]["accuracy"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--project", type=Path, default=ROOT, help="where data/ (and params.yaml) are")
    parser.add_argument("--params", type=Path, help="params file (default: the project's params.yaml)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    params_file = args.params or args.project / "params.yaml"
    train_dir, prepared_dir = (args.project / "data" / name for name in ("augmented", "prepared"))

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for workers, distribute in ((1, "none"), (args.workers, "multi_worker")):
            project = Path(scratch, distribute)
            project.mkdir()
            raw = read_config(params_file)
            raw["epochs"] = args.epochs
            raw.setdefault("train", {})["distribute"] = distribute
            if workers > 1:  # The workers share the cores.
                raw["train"]["threads"] = max(1, (os.cpu_count() or 1) // workers)
            write_config(project, raw)
            results.append(run_train(project, train_dir.resolve(), prepared_dir.resolve(), workers))
            print(json.dumps(results[-1]), flush=True)
    results[1]["train_s_vs_alone"] = round(results[1]["train_s"] / results[0]["train_s"], 3)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
              "epochs": args.epochs, "params": str(params_file.resolve()), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{report['date'].replace(':', '')}-multi_worker.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.workers} workers on localhost: {results[1]['train_s_vs_alone']:.2f}x the wall time of one process; "
          f"validation accuracy {results[1]['val_accuracy']} vs {results[0]['val_accuracy']}")


if __name__ == "__main__":
    main()
