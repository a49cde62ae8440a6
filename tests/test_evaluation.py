import csv

import numpy as np
import pytest

from refinelab.evaluation import classification_metrics, write_confusion_csv


def one_hot_probabilities(predicted, classes, confidence=0.8):
    probabilities = np.full((len(predicted), classes), (1 - confidence) / (classes - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def test_metrics_match_values_computed_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(labels, one_hot_probabilities(predicted, 3), ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # Class a: 2 of 2 predictions right, 2 of 3 found; b: 1 of 2 right, 1 of 2 found; c: 1 of 2, 1 of 1.
    assert metrics["per_class"]["a"]["precision"] == pytest.approx(1.0)
    assert metrics["per_class"]["a"]["recall"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["b"]["f1-score"] == pytest.approx(0.5)
    assert metrics["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert metrics["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert metrics["macro_avg"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # Log loss: -mean(log p(true class)); right answers have p=0.8, wrong ones p=0.1.
    assert metrics["loss"] == pytest.approx(-(4 * np.log(0.8) + 2 * np.log(0.1)) / 6)


def test_confusion_csv_rows_are_actual_predicted_names(tmp_path):
    labels = np.array([0, 1, 2])
    path = tmp_path / "confusion.csv"
    write_confusion_csv(path, labels, one_hot_probabilities(np.array([0, 2, 2]), 3), ["a", "b", "c"])
    with open(path) as handle:
        rows = list(csv.reader(handle))
    assert rows == [["actual", "predicted"], ["a", "a"], ["b", "c"], ["c", "c"]]
