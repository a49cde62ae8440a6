import csv

import numpy as np
import pytest

from refinelab.core.figures import HEADING_FONT_SIZE
from refinelab.evaluate.stage import classification_metrics, expected_calibration_error, write_confusion_csv


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


def test_expected_calibration_error_matches_hand_computation():
    # Confidences 0.9 and 0.88 share the 15-bin bin (13/15, 14/15]; the others are alone in theirs.
    probabilities = np.array([
        [0.90, 0.05, 0.05],  # label 0: right, confidence 0.90
        [0.50, 0.30, 0.20],  # label 1: wrong, confidence 0.50
        [0.10, 0.35, 0.55],  # label 2: right, confidence 0.55
        [0.20, 0.62, 0.18],  # label 0: wrong, confidence 0.62
        [0.88, 0.06, 0.06],  # label 1: wrong, confidence 0.88
    ])
    labels = np.array([0, 1, 2, 0, 1])
    # Bin of 0.9 and 0.88: accuracy 1/2, confidence 0.89, weight 2/5; the three single bins weigh 1/5 each.
    expected = 2 / 5 * abs(0.5 - 0.89) + 1 / 5 * (0.5 + abs(1 - 0.55) + 0.62)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected)
    assert classification_metrics(labels, probabilities, ["a", "b", "c"])["expected_calibration_error"] == pytest.approx(expected)


def test_expected_calibration_error_is_zero_when_confidence_equals_accuracy():
    certain = np.eye(4)
    assert expected_calibration_error(np.arange(4), certain) == pytest.approx(0.0)
    # Every prediction 0.7 confident and 7 of 10 right: calibrated.
    probabilities = np.tile([0.7, 0.3], (10, 1))
    labels = np.array([0] * 7 + [1] * 3)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.0)


def test_top_5_accuracy_only_with_more_than_5_classes():
    # 7 classes, probabilities decreasing with the class index: class k is ranked k+1.
    probabilities = np.tile(np.linspace(0.25, 0.07, 7), (3, 1))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = np.array([0, 4, 5])  # ranked 1st, 5th, 6th
    metrics = classification_metrics(labels, probabilities, list("abcdefg"))
    assert metrics["top_5_accuracy"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    few = classification_metrics(np.array([0, 1]), one_hot_probabilities(np.array([0, 0]), 3), ["a", "b", "c"])
    assert not any(key.startswith("top_") for key in few)


def test_most_confident_mistakes_come_first_and_right_answers_never():
    from refinelab.plot.stage import misclassification_gallery, most_confident_mistakes

    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.95, 0.05]])
    labels = np.array([0, 0, 0, 1, 1])  # wrong: 1 (0.6), 2 (0.8), 3 (0.7), 4 (0.95)
    assert most_confident_mistakes(labels, probabilities, 3).tolist() == [4, 2, 3]
    assert most_confident_mistakes(labels, probabilities, 10).tolist() == [4, 2, 3, 1]
    images = np.zeros((5, 4, 4, 1), dtype=np.uint8)
    figure = misclassification_gallery(images, labels, probabilities, ["shirt", "coat"], 3)
    assert cell_titles(figure) == ["shirt 95%\ntrue: coat", "coat 80%\ntrue: shirt", "shirt 70%\ntrue: coat"]
    # No mistakes at all: an empty grid that says "none".
    figure = misclassification_gallery(images, probabilities.argmax(1), probabilities, ["shirt", "coat"], 3)
    assert cell_titles(figure) == ["none"]


def cell_titles(figure):
    """The texts of an image grid (one picture, titles drawn over it), without its heading."""
    (axis,) = figure.axes
    return [text.get_text() for text in axis.texts if text.get_fontsize() != HEADING_FONT_SIZE]


def test_sample_grid_has_one_row_per_class_titled_with_its_count():
    from refinelab.core.figures import display_pixels, sample_grid

    images = np.zeros((5, 4, 4, 1), dtype=np.uint8)
    figure = sample_grid(images, np.array([0, 1, 0, 0, 0]), ["shirt", "coat", "bag"], "train split", per_class=3)
    assert cell_titles(figure) == ["shirt (4)", "coat (1)", "bag (0)"]  # Each row's first cell.
    assert figure.axes[0].texts[-1].get_text() == "train split: 5 images"
    (picture,) = figure.axes[0].images
    cell = display_pixels(images[0])
    assert cell.shape == (56, 56, 3)  # 4x4 enlarged 14 times, nearest neighbour, made RGB.
    # Four black images shown on white: shirt's first three, coat's one.
    assert (picture.get_array() == 0).all(axis=-1).sum() == 4 * 56 * 56


def test_prediction_grid_takes_the_classes_in_turn():
    from refinelab.plot.stage import across_classes

    labels = np.array([0, 0, 0, 0, 1, 1, 2])  # Sorted by class, as a pre-split folder's test set is.
    assert across_classes(labels, 5).tolist() == [0, 4, 6, 1, 5]
    assert across_classes(labels, 100).tolist() == [0, 4, 6, 1, 5, 2, 3]


def smooth_photos(count, size=64, seed=0):
    """Photo-like RGB images (smooth colour fields plus sensor noise): as hard to compress as photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 6, 6, 3), dtype=np.uint8)
    fields = np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)) for image in coarse])
    return np.clip(fields + rng.normal(0, 6, fields.shape), 0, 255).astype(np.uint8)


def test_figures_of_64x64_rgb_photos_stay_small(tmp_path):
    """Every committed figure is small: they are part of every experiment's git commit."""
    from refinelab.core.figures import sample_grid, save_figure
    from refinelab.plot.stage import misclassification_gallery, prediction_grid

    images, labels = smooth_photos(400), np.arange(400) % 10
    probabilities = np.random.default_rng(1).dirichlet(np.ones(10), size=400)
    names = [f"class {index}" for index in range(10)]
    save_figure(sample_grid(images, labels, names, "train split"), tmp_path / "samples.png")
    save_figure(prediction_grid(images, labels, probabilities, names, 100), tmp_path / "predictions.png")
    save_figure(misclassification_gallery(images, labels, probabilities, names, 100), tmp_path / "mistakes.png")
    sizes = {path.name: path.stat().st_size for path in tmp_path.iterdir()}
    assert all(size <= 300_000 for size in sizes.values()), sizes
    from PIL import Image

    with Image.open(tmp_path / "samples.png") as picture:
        assert picture.mode == "P"  # A palette: no alpha channel, one byte a pixel before compression.


def test_confusion_counts_agree_with_scikit_learn():
    from sklearn.metrics import confusion_matrix

    from refinelab.plot.stage import confusion_counts

    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    labels[labels == 3] = 2  # A class never present, still a row and a column.
    np.testing.assert_array_equal(confusion_counts(labels, predicted, 4), confusion_matrix(labels, predicted, labels=range(4)))


def test_predictions_come_in_order_without_the_filled_last_batch():
    import keras

    from refinelab.data.pipeline import INFERENCE_BATCH, predict
    from refinelab.data.store import Split

    count = INFERENCE_BATCH + 23  # A last batch of 23, filled up to a whole one.
    images = (np.arange(count) % 256).astype(np.uint8).reshape(count, 1, 1, 1)
    model = keras.Sequential([keras.Input((1, 1, 1)), keras.layers.Flatten()])  # Outputs its input.
    outputs = predict(model, Split(images, np.zeros(count, np.int64)))
    np.testing.assert_array_equal(outputs[:, 0], images.reshape(-1))
