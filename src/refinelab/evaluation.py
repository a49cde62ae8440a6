"""The evaluate stage's work: the test set is touched here, once, and nowhere before."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.metrics import accuracy_score, classification_report, log_loss

from refinelab.fileio import atomic_path
from refinelab.pipeline_data import make_dataset
from refinelab.prepared import Split, load_meta, load_split

log = logging.getLogger(__name__)


def predict_probabilities(model: keras.Model, split: Split, batch_size: int) -> np.ndarray:
    return model.predict(make_dataset(split, batch_size), verbose=0)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, log loss and per-class precision/recall/F1 (keyed by class name), via scikit-learn."""
    class_ids = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1)
    report = classification_report(
        labels, predicted, labels=class_ids, target_names=class_names, output_dict=True, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1.0), labels=class_ids)),
        "macro_avg": {key: float(value) for key, value in report["macro avg"].items() if key != "support"},
        "per_class": {
            name: {key: float(value) for key, value in report[name].items() if key != "support"}
            for name in class_names
        },
    }


def evaluate(model_path: str | Path, prepared_dir: str | Path, batch_size: int):
    """Return (metrics, test probabilities, test labels).

    Train accuracy is measured on the prepared (un-augmented) training split: next to the test
    accuracy it measures overfitting, which augmented copies would blur.
    """
    model = keras.models.load_model(model_path)
    meta = load_meta(prepared_dir)
    class_names = meta["class_names"]
    accuracy = {}
    for name in ("train", "validation"):
        split = load_split(prepared_dir, name)
        accuracy[name] = float(accuracy_score(split.labels, predict_probabilities(model, split, batch_size).argmax(1)))
    test = load_split(prepared_dir, "test")
    probabilities = predict_probabilities(model, test, batch_size)
    test_metrics = classification_metrics(test.labels, probabilities, class_names)
    metrics = {
        "test": test_metrics,
        "train_accuracy": accuracy["train"],
        "validation_accuracy": accuracy["validation"],
        # The overfitting signal: how much better the model does on what it was trained on.
        "train_test_gap": accuracy["train"] - test_metrics["accuracy"],
        "params": model.count_params(),
    }
    log.info("test accuracy %.4f (train %.4f)", test_metrics["accuracy"], accuracy["train"])
    return metrics, probabilities, test.labels


def write_confusion_csv(path: str | Path, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> None:
    """One row per test image (actual, predicted class names): the data of DVC's confusion template."""
    predicted = probabilities.argmax(axis=1)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows((class_names[a], class_names[p]) for a, p in zip(labels, predicted))

