"""Stage evaluate: test-set metrics (touched here only), the train-test gap and the confusion data."""

import argparse

from refinelab.config import load_params
from refinelab.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_path", help="trained model (models/model.keras)")
    parser.add_argument("prepared_dir", help="prepared data (data/prepared)")
    parser.add_argument("metrics_file", help="evaluation metrics (metrics/evaluate.json)")
    parser.add_argument("confusion_file", help="per-image actual/predicted rows (metrics/confusion.csv)")
    parser.add_argument("probabilities_file", help="test-set class probabilities (data/evaluation/test_probabilities.npy)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)

    import numpy as np

    from refinelab.evaluation import evaluate, write_confusion_csv
    from refinelab.fileio import atomic_path, write_json
    from refinelab.prepared import load_meta

    metrics, probabilities, labels = evaluate(args.model_path, args.prepared_dir, params.batch_size)
    write_json(args.metrics_file, metrics)
    write_confusion_csv(args.confusion_file, labels, probabilities, load_meta(args.prepared_dir)["class_names"])
    with atomic_path(args.probabilities_file) as temporary, open(temporary, "wb") as handle:
        np.save(handle, probabilities)


if __name__ == "__main__":
    run_stage(main)
