"""Stage evaluate: test-set metrics (touched here only), the train-test gap, the health check and the confusion data.

It reads no params: the model's own params.json (written by train) holds what it needs."""

import argparse

from refinelab.core.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_path", help="trained model (models/model.keras)")
    parser.add_argument("prepared_dir", help="prepared data (data/prepared)")
    parser.add_argument("metrics_file", help="the numbers experiments are compared by (metrics/evaluate.json)")
    parser.add_argument("details_file", help="full-precision and per-class scores (metrics/test_details.json)")
    parser.add_argument("confusion_file", help="per-image actual/predicted rows (metrics/confusion.csv)")
    parser.add_argument("probabilities_file", help="test-set class probabilities (data/evaluation/test_probabilities.npy)")
    parser.add_argument("--card", help="the model card to write (models/model_card.md)")
    parser.add_argument("--features", help="the features stage's output (data/features): a frozen base's vectors "
                        "score the training and validation images")
    args = parser.parse_args()

    from refinelab.core.backend import select_backend
    from refinelab.models.artifact import trained_backend

    select_backend(trained_backend(args.model_path))  # Before Keras is imported.
    import numpy as np

    from refinelab.core.fileio import atomic_path, write_json
    from refinelab.data.store import load_meta
    from refinelab.evaluate import health
    from refinelab.evaluate.stage import evaluate, model_card, write_confusion_csv
    from refinelab.models.artifact import read_record

    metrics, details, probabilities, labels, findings = evaluate(args.model_path, args.prepared_dir, args.features)
    write_json(args.metrics_file, metrics)
    write_json(args.details_file, details)
    write_confusion_csv(args.confusion_file, labels, probabilities, load_meta(args.prepared_dir)["class_names"])
    with atomic_path(args.probabilities_file) as temporary, open(temporary, "wb") as handle:
        np.save(handle, probabilities)
    if args.card:
        with atomic_path(args.card) as temporary:
            temporary.write_text(model_card(read_record(args.model_path), load_meta(args.prepared_dir), metrics, details))
    health.report("evaluate", findings, earlier=details["health"])


if __name__ == "__main__":
    run_stage(main)
