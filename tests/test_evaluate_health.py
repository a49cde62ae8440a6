"""The health check's findings, one case at a time, on hand-made evidence (no model needed)."""

import math

import numpy as np
import pytest

from refinelab.evaluate import health

CLASSES = [f"class{index}" for index in range(10)]


def probabilities_for(predicted, num_classes=10, confidence=0.9):
    probabilities = np.full((len(predicted), num_classes), (1 - confidence) / (num_classes - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def evidence(**changes):
    """A healthy run: 90% right on 1,000 balanced validation images, 2,000 training images, batch 32, 5 epochs."""
    labels = np.arange(1000) % 10
    predicted = np.where(np.arange(1000) % 10 == 0, (labels + 1) % 10, labels)
    values = dict(
        split="validation", labels=labels, probabilities=probabilities_for(predicted), class_names=CLASSES,
        train_accuracy=0.93, train_loss=0.25, mode_accuracies=(0.92, 0.93),
    )
    schedule = dict(train_images=2000, batch_size=32, batch_size_param="auto", epochs=5)
    schedule.update({key: changes.pop(key) for key in list(changes) if key in schedule})
    values.update(changes)
    return health.RunEvidence(schedule=health.Schedule(**schedule), **values)


def codes(findings):
    return [finding.code for finding in findings]


def test_a_healthy_run_has_no_findings():
    assert health.check(evidence()) == []
    assert health.summary([]) == {"health_warnings": 0, "health": "ok"}


def test_chance_accuracy_while_training_accuracy_is_high_is_the_batch_norm_symptom():
    findings = health.check(evidence(probabilities=probabilities_for(np.zeros(1000, int)), train_accuracy=0.85,
                                     mode_accuracies=(0.85, 0.10)))
    assert codes(findings) == ["chance_accuracy", "one_class", "batch_norm_mode_gap"]
    chance, one_class, gap = findings
    assert "validation accuracy 0.100 is chance level for 10 classes" in chance.message
    assert "training accuracy is 0.850" in chance.message
    assert "'class0' is predicted for 100% of the validation images (it is 10% of them)" == one_class.message
    assert "0.850 in training mode" in gap.message and "0.100 at inference" in gap.message
    assert all(finding.fix for finding in findings)
    assert health.summary(findings) == {"health_warnings": 3, "health": "chance_accuracy,one_class,batch_norm_mode_gap"}


def test_a_training_loss_at_ln_k_means_nothing_was_learned():
    findings = health.check(evidence(train_loss=math.log(10) * 1.01, train_accuracy=0.1,
                                     probabilities=probabilities_for(np.arange(1000) % 7)))
    assert codes(findings)[0] == "loss_at_uniform"
    assert "ln 10 = 2.303" in findings[0].message and "learning_rate" in findings[0].fix


def test_chance_level_takes_the_largest_class_and_the_sample_size_into_account():
    # 80% of the images are class 0: always answering 0 scores 0.8, which is chance here.
    labels = np.array([0] * 80 + [1] * 20)
    majority = health.check(evidence(labels=labels, probabilities=probabilities_for(np.zeros(100, int), 2),
                                     class_names=["a", "b"]))
    assert "chance_accuracy" in codes(majority)
    # 10 of 14 right on 2 classes is within two standard errors of guessing (0.5 + 0.27).
    labels = np.arange(14) % 2
    predicted = np.where(np.arange(14) < 10, labels, 1 - labels)
    small = health.check(evidence(labels=labels, probabilities=probabilities_for(predicted, 2), class_names=["a", "b"]))
    assert "chance_accuracy" in codes(small) and "within 0.267 of it on 14 images" in small[0].message
    # 13 of 14 is not.
    predicted = np.where(np.arange(14) < 13, labels, 1 - labels)
    assert health.check(evidence(labels=labels, probabilities=probabilities_for(predicted, 2), class_names=["a", "b"])) == []


def test_one_class_is_not_flagged_when_the_data_is_one_class():
    labels = np.zeros(100, int)
    assert "one_class" not in codes(health.check(evidence(labels=labels, probabilities=probabilities_for(labels))))


@pytest.mark.parametrize(
    "train_images, batch_size, batch_size_param, epochs, fix",
    [
        (200, 128, 128, 5, "batch_size: auto"),  # 2 steps per epoch with an explicit batch.
        (26, 8, "auto", 5, "at least 25"),  # auto is at its smallest: only more epochs help.
    ],
)
def test_too_few_steps(train_images, batch_size, batch_size_param, epochs, fix):
    (finding,) = health.check_steps(evidence(train_images=train_images, batch_size=batch_size,
                                             batch_size_param=batch_size_param, epochs=epochs))
    assert finding.code == "few_steps" and fix in finding.fix
    steps = math.ceil(train_images / batch_size)
    assert f"only {steps} training steps per epoch ({train_images} images / batch_size {batch_size})" in finding.message


def test_the_report_is_one_block_at_the_end(caplog):
    findings = health.check(evidence(probabilities=probabilities_for(np.zeros(1000, int)), train_accuracy=0.85))
    with caplog.at_level("INFO", logger="refinelab.evaluate.health"):
        health.report("evaluate", findings)
        health.report("train", [])
    warning, clean = caplog.records
    assert warning.levelname == "WARNING" and warning.getMessage().startswith("health check (evaluate): 2 warnings")
    assert "  ! chance_accuracy:" in warning.getMessage() and "    fix: " in warning.getMessage()
    assert clean.getMessage() == "health check (train): no warnings"
    caplog.clear()
    with caplog.at_level("INFO", logger="refinelab.evaluate.health"):
        health.report("evaluate", [], earlier=["few_steps", "one_class"])
        health.report("evaluate", findings[:1], earlier=["chance_accuracy", "few_steps"])
    clean_test, warned = caplog.records
    assert clean_test.getMessage() == ("health check (evaluate): no warnings; the train stage warned of few_steps, "
                                       "one_class (its log says more)")
    assert warned.getMessage().startswith("health check (evaluate): 1 warning; the train stage warned of few_steps (")


def test_a_split_too_small_to_tell_learning_from_guessing_gets_no_verdict(caplog):
    """3 validation images of 2 classes: even 3 of 3 right is within chance's margin, so no warning can be
    cleared, and 3 answered alike is no collapse (chihuahua-muffin's split)."""
    labels = np.array([0, 0, 1])
    caplog.set_level("INFO", logger="refinelab.evaluate.health")
    for predicted in (labels, np.zeros(3, int)):
        findings = health.check(evidence(labels=labels, probabilities=probabilities_for(predicted, 2),
                                         class_names=["a", "b"], train_accuracy=0.91, train_images=23))
        assert codes(findings) == ["few_steps"]
    assert "3 images are too few to tell learning from guessing" in caplog.text


def test_training_accuracy_is_judged_on_the_training_set_size():
    # 10 of 14 validation images right, training accuracy 0.93 on 2,000 images: learned, but it does not carry over.
    labels = np.arange(14) % 2
    predicted = np.where(np.arange(14) < 10, labels, 1 - labels)
    (finding,) = health.check(evidence(labels=labels, probabilities=probabilities_for(predicted, 2),
                                       class_names=["a", "b"]))
    assert "does not carry over" in finding.message
    (finding,) = health.check(evidence(labels=labels, probabilities=probabilities_for(predicted, 2),
                                       class_names=["a", "b"], train_accuracy=0.52))
    assert "has not learned the task" in finding.message and "with an MLP, a convolutional model" in finding.fix
