"""Stage train: build the selected architecture, fit it, save the model, its resolved params and its size."""

import argparse
from pathlib import Path

from refinelab.core.fileio import ensure_writable
from refinelab.core.runner import run_stage
from refinelab.params.guard import stage_params
from refinelab.train.distribution import writes_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("train_dir", help="training split to fit on (data/augmented)")
    parser.add_argument("prepared_dir", help="prepared data, for the validation split (data/prepared)")
    parser.add_argument("model_path", help="where to save the model (models/model.keras)")
    parser.add_argument("live_dir", help="dvclive folder for per-epoch metrics (metrics/train)")
    parser.add_argument("model_metrics", help="parameter counts and layer list (metrics/model.json)")
    parser.add_argument("timing_file", help="wall time and throughput, kept out of dvc.lock (metrics/timing.json)")
    parser.add_argument("--features", help="the features stage's output (data/features): for a frozen base, the head "
                        "trains on its vectors")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    with stage_params(args.params, "train") as params:
        if writes_outputs():  # Before the hour; a cluster's other workers write nothing here.
            ensure_writable(args.model_path, Path(args.live_dir) / "metrics.json", args.model_metrics, args.timing_file)

        from refinelab.train.stage import train

        train(params, args.train_dir, args.prepared_dir, args.model_path, args.live_dir, args.timing_file,
              args.model_metrics, args.features)


if __name__ == "__main__":
    run_stage(main, writes_workspace=writes_outputs)
