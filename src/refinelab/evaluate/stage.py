"""The evaluate stage's work: the only place a model meets the test set (prepare and plot only draw its images)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, log_loss, top_k_accuracy_score

from refinelab.core.fileio import atomic_path
from refinelab.core.runner import on_terminal
from refinelab.data.pipeline import predict
from refinelab.data.store import load_meta, load_split
from refinelab.evaluate import health
from refinelab.features.stage import features_of_model
from refinelab.models.artifact import load_trained_model, read_record
from refinelab.models.builders import feature_head

log = logging.getLogger(__name__)
CALIBRATION_BINS = 15
# Top-k accuracy is reported when there are more than TOP_K classes (with fewer it is trivially 1).
TOP_K = 5


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """ECE (Guo et al., 2017): the gap between confidence and accuracy, averaged over confidence bins.

    Each prediction falls in one of ``bins`` equal-width bins of its confidence (top probability),
    bin b holding confidences in (b/bins, (b+1)/bins]; ECE = sum over bins of
    |bin| / n * |accuracy(bin) - mean confidence(bin)|.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    bin_index = np.searchsorted(inner_edges, confidence, side="left")
    error = 0.0
    for index in np.unique(bin_index):
        members = bin_index == index
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, log loss, calibration, top-k accuracy (more than TOP_K classes) and per-class
    precision/recall/F1 (keyed by class name), via scikit-learn."""
    class_ids = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1)
    report = classification_report(
        labels, predicted, labels=class_ids, target_names=class_names, output_dict=True, zero_division=0
    )
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1.0), labels=class_ids)),
        "expected_calibration_error": expected_calibration_error(labels, probabilities),
    }
    if len(class_names) > TOP_K:
        metrics[f"top_{TOP_K}_accuracy"] = float(top_k_accuracy_score(labels, probabilities, k=TOP_K, labels=class_ids))
    return {
        **metrics,
        "macro_avg": {key: float(value) for key, value in report["macro avg"].items() if key != "support"},
        "per_class": {
            name: {key: float(value) for key, value in report[name].items() if key != "support"}
            for name in class_names
        },
    }


def evaluate(model_path: str | Path, prepared_dir: str | Path, features_dir: str | Path | None = None):
    """Return (scoreboard metrics, detailed metrics, test probabilities, test labels, health findings).

    Train accuracy is measured on the prepared (un-augmented) training split: next to the test
    accuracy it measures overfitting, which augmented copies would blur.
    """
    model = load_trained_model(model_path, compile=False)  # Only predicts: no optimizer to restore.
    record = read_record(model_path)
    meta = load_meta(prepared_dir)
    class_names = meta["class_names"]
    progress = on_terminal()
    train = load_split(prepared_dir, "train")
    validation = load_split(prepared_dir, "validation")
    features = features_of_model(features_dir, record, prepared_dir, len(train)) if features_dir else None
    if features:  # A frozen base's vectors, made once: its head alone scores the training and validation images.
        log.info("training and validation accuracy from the features in %s", features_dir)
        scorer, train, validation = feature_head(model), features.clean_train, features.validation
    else:
        scorer = model
    train_probabilities = predict(scorer, train, progress)
    validation_accuracy = float(accuracy_score(validation.labels, predict(scorer, validation, progress).argmax(1)))
    test = load_split(prepared_dir, "test")
    probabilities = predict(model, test, progress)
    test_metrics = classification_metrics(test.labels, probabilities, class_names)
    train_accuracy = float(accuracy_score(train.labels, train_probabilities.argmax(1)))
    training = record.get("training", {})
    schedule = health.Schedule(
        train_images=int(training.get("train_images", len(train))),
        batch_size=int(record["batch_size"]),
        batch_size_param=training.get("batch_size_param", record["batch_size"]),
        epochs=int(record["epochs"]),
    )
    findings = health.check(health.RunEvidence(
        split="test",
        labels=test.labels,
        probabilities=probabilities,
        class_names=class_names,
        train_accuracy=train_accuracy,
        train_loss=health.cross_entropy(train.labels, train_probabilities),
        schedule=schedule,
        # Measured by train on the saved model and these training images: the same numbers again.
        mode_accuracies=training.get("mode_accuracies"),
    ))
    details = {
        "test": test_metrics,
        "train_accuracy": train_accuracy,
        "validation_accuracy": validation_accuracy,
        # The overfitting signal: how much better the model does on what it was trained on.
        "train_test_gap": train_accuracy - test_metrics["accuracy"],
    }
    # One health verdict for the run: the train stage's warnings (validation) and these (test).
    codes = list(dict.fromkeys([*training.get("health", []), *(finding.code for finding in findings)]))
    log.info("test accuracy %.4f (train %.4f)", test_metrics["accuracy"], train_accuracy)
    details["health"] = codes
    return scoreboard(details, model.count_params()), details, probabilities, test.labels, findings


def scoreboard(details: dict[str, Any], parameters: int) -> dict[str, Any]:
    """The numbers a reviewer compares, one flat file for ``dvc exp show`` and ``dvc metrics diff``:
    short unique names, 4 decimals, the most compared first (``details`` keeps full precision and
    the per-class scores)."""
    test = details["test"]
    # Names short enough that a 160-column terminal shows these and the params a study varies
    # (f1 is the macro average; top5 only with more than 5 classes).
    metrics = {
        "accuracy": test["accuracy"],
        "val_acc": details["validation_accuracy"],
        "gap": details["train_test_gap"],
        "loss": test["loss"],
        "f1": test["macro_avg"]["f1-score"],
    }
    if f"top_{TOP_K}_accuracy" in test:
        metrics[f"top{TOP_K}"] = test[f"top_{TOP_K}_accuracy"]
    metrics["ece"] = test["expected_calibration_error"]
    return {
        **{name: round(float(value), 4) for name, value in metrics.items()},
        "params": int(parameters),
        # The health check's warnings (0: healthy); their codes are in the details and the stage logs.
        "warnings": len(details["health"]),
    }


def write_confusion_csv(path: str | Path, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> None:
    """One row per test image (actual, predicted class names): the data of DVC's confusion template."""
    predicted = probabilities.argmax(axis=1)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows((class_names[a], class_names[p]) for a, p in zip(labels, predicted))


def model_card(record: dict[str, Any], meta: dict[str, Any], metrics: dict[str, Any], details: dict[str, Any]) -> str:
    """A short Markdown card for the model: what it was trained on and how, what it scored, its health,
    and the weights it transferred from."""
    architecture = record.get("architecture", {})
    weights = record.get("transfer_weights")
    source = meta.get("source") or {}
    lines = [
        f"# Model card: {record.get('preset', record.get('model'))}",
        "",
        "Written by refinelab's evaluate stage beside `model.keras`; the file itself carries its class names "
        "and preprocessing (`refinelab predict --model <file> <images>`).",
        "",
        "## Data",
        f"- dataset: `{meta.get('dataset')}`" + (f" from `{source['location']}`" if source.get("location") else ""),
        f"- classes ({len(meta['class_names'])}): {', '.join(meta['class_names'])}",
        f"- images per split: {', '.join(f'{name} {count}' for name, count in (meta.get('counts') or {}).items())}",
        f"- input: {'x'.join(map(str, meta['image_shape']))}, preprocessing {json.dumps(meta.get('preprocessing'))}",
        "",
        "## Training",
        f"- architecture: `{architecture.get('type')}` {json.dumps({k: v for k, v in architecture.items() if k != 'type'})}",
        f"- params: " + ", ".join(f"{key} {record[key]}" for key in ("model", "epochs", "batch_size", "learning_rate",
                                                                      "dropout", "l2", "seed", "backend") if key in record),
        f"- transferred from: `{weights['file']}` (sha256 `{weights['sha256']}`)" if weights else "- trained from scratch",
        "",
        "## Results (metrics/evaluate.json: accuracy, loss, f1 and ece on the test set)",
        *(f"- {key}: {value}" for key, value in metrics.items()),
        f"- health: {', '.join(details['health']) or 'ok'}",
        "",
    ]
    return "\n".join(lines)
