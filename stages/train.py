"""Stage train: build the selected architecture, fit it, save the model and its resolved params."""

import argparse

from refinelab.config import load_params
from refinelab.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("train_dir", help="training split to fit on (data/augmented)")
    parser.add_argument("prepared_dir", help="prepared data, for the validation split (data/prepared)")
    parser.add_argument("model_path", help="where to save the model (models/model.keras)")
    parser.add_argument("live_dir", help="dvclive folder for per-epoch metrics (metrics/train)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)

    from refinelab.training import train

    train(params, args.train_dir, args.prepared_dir, args.model_path, args.live_dir)


if __name__ == "__main__":
    run_stage(main)
