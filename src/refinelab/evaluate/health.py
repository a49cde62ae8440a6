"""The training health check: what a careful practitioner spots in a run's numbers, in plain words.

Train runs it on the validation split after fitting, evaluate again on the test split. Each finding
is a :class:`Finding` with a suggested fix; :func:`report` logs them as one block at the end of the
stage and :func:`summary` is what goes into the stage's metrics (``dvc exp show``, ``refinelab
compare``). Pure NumPy: no model, no TensorFlow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Fewer optimisation steps than this in a whole run is too little training to trust.
MIN_TOTAL_STEPS = 100
# An explicit batch size leaving fewer steps per epoch than this wastes the run (batch_size: auto avoids it).
MIN_STEPS_PER_EPOCH = 8
# A training loss within this fraction of ln K: the model outputs uniform probabilities.
UNIFORM_LOSS_TOLERANCE = 0.05
# A collapse to one class: it is predicted for at least this share of the images, and for at least this
# many images of other classes.
ONE_CLASS_SHARE = 0.9
ONE_CLASS_MISTAKES = 5
# Batch norm's statistics are off when training-mode accuracy exceeds inference-mode accuracy of the same
# images by this much.
MODE_GAP = 0.15


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    fix: str


@dataclass(frozen=True)
class Schedule:
    """How the training set was cut into steps: the resolved batch size and what params asked for."""

    train_images: int
    batch_size: int
    batch_size_param: int | str  # "auto" or the number params.yaml set
    epochs: int

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_images / self.batch_size)


@dataclass(frozen=True)
class RunEvidence:
    """The numbers a check reads. ``labels``/``probabilities`` are those of the split judged
    (validation in train, test in evaluate); ``train_*`` describe the training set."""

    split: str
    labels: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    train_accuracy: float
    train_loss: float
    schedule: Schedule
    # (training-mode, inference-mode) accuracy of the same training images; None without batch norm.
    mode_accuracies: tuple[float, float] | None = None


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-probability of the true class (0 for no images)."""
    if not len(labels):
        return 0.0
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))))


def chance_accuracy(labels: np.ndarray, num_classes: int) -> float:
    """The accuracy of guessing: 1/K, or always answering the largest class if that does better."""
    if len(labels) == 0:
        return 1 / num_classes
    return max(1 / num_classes, float(np.bincount(labels, minlength=num_classes).max() / len(labels)))


def chance_margin(chance: float, count: int) -> float:
    """How far above chance an accuracy must be to count as learned: two standard errors of a
    guesser's accuracy on ``count`` images, and at least a tenth of the way from chance to 1."""
    standard_error = math.sqrt(chance * (1 - chance) / max(count, 1))
    return max(0.1 * (1 - chance), 2 * standard_error)


def check_steps(evidence: RunEvidence) -> list[Finding]:
    schedule = evidence.schedule
    steps, total = schedule.steps_per_epoch, schedule.steps_per_epoch * schedule.epochs
    explicit = schedule.batch_size_param != "auto"
    if total >= MIN_TOTAL_STEPS and not (explicit and steps < MIN_STEPS_PER_EPOCH):
        return []
    what = (
        f"{steps} training steps per epoch ({schedule.train_images} images / batch_size {schedule.batch_size}) "
        f"x {schedule.epochs} epochs = {total} steps in all"
    )
    if explicit and steps < MIN_STEPS_PER_EPOCH:
        fix = "set batch_size: auto (-S batch_size=auto), which picks a batch that gives every epoch enough steps"
    else:
        fix = f"train for more epochs: at least {math.ceil(MIN_TOTAL_STEPS / steps)} (-S epochs=...)"
    return [Finding("few_steps", f"only {what}: too few updates to train a model", fix)]


def check_learning(evidence: RunEvidence) -> list[Finding]:
    """The model learned nothing (training loss at ln K), or nothing that carries over (the split
    judged at chance level while training accuracy is well above it)."""
    num_classes = len(evidence.class_names)
    uniform_loss = math.log(num_classes)
    chance = chance_accuracy(evidence.labels, num_classes)
    margin = chance_margin(chance, len(evidence.labels))
    accuracy = float(np.mean(evidence.probabilities.argmax(axis=1) == evidence.labels)) if len(evidence.labels) else 0.0
    if not math.isfinite(evidence.train_loss):
        return [Finding(
            "diverged",
            f"the training loss is {evidence.train_loss}: training diverged and the weights are not numbers",
            "lower the learning rate (e.g. -S learning_rate=0.0005) or clip gradients (-S train.clipnorm=1.0)",
        )]
    if abs(evidence.train_loss - uniform_loss) <= UNIFORM_LOSS_TOLERANCE * uniform_loss:
        return [Finding(
            "loss_at_uniform",
            f"the training loss {evidence.train_loss:.3f} is ln {num_classes} = {uniform_loss:.3f}, the loss of "
            f"equal probabilities for every class: the model learned nothing",
            "lower the learning rate (e.g. -S learning_rate=0.0005), use a model with batch norm (cnn_bn, or "
            "batch_norm: true in the preset), and check that images and labels match (metrics/data/samples_train.png)",
        )]
    if chance + margin >= 1:
        log.info("%s: %d images are too few to tell learning from guessing (%.3f, plus %.3f to count as learned, "
                 "is out of reach): no verdict on chance level", evidence.split, len(evidence.labels), chance, margin)
        return []
    if accuracy > chance + margin:
        return []
    chance_text = (
        f"chance level for {num_classes} classes (guessing: {chance:.3f}; within {margin:.3f} of it on "
        f"{len(evidence.labels)} images)"
    )
    # Training accuracy is judged on the training set's own size, not on the (often far smaller) split's.
    if evidence.train_accuracy > chance + chance_margin(chance, evidence.schedule.train_images):
        return [Finding(
            "chance_accuracy",
            f"{evidence.split} accuracy {accuracy:.3f} is {chance_text}, although training accuracy is "
            f"{evidence.train_accuracy:.3f}: what the model learned does not carry over to new images",
            "if a batch-norm warning is also shown, fix that first; otherwise the model memorises: use more images "
            "or augmentation (-S augment.mode=online), a smaller model or more dropout, or transfer from a "
            "pretrained model (README: Transfer learning)",
        )]
    return [Finding(
        "chance_accuracy",
        f"{evidence.split} accuracy {accuracy:.3f} is {chance_text}, and training accuracy "
        f"{evidence.train_accuracy:.3f} is not much better: the model has not learned the task",
        "train longer (-S epochs=...) or try another learning rate; with an MLP, a convolutional model "
        "(cnn_bn); with few images, transfer from a pretrained model (README: Transfer learning); check that "
        "images and labels match (metrics/data/samples_train.png)",
    )]


def check_one_class(evidence: RunEvidence) -> list[Finding]:
    if len(evidence.labels) == 0:
        return []
    num_classes = len(evidence.class_names)
    predicted = np.bincount(evidence.probabilities.argmax(axis=1), minlength=num_classes) / len(evidence.labels)
    actual = np.bincount(evidence.labels, minlength=num_classes) / len(evidence.labels)
    top = int(predicted.argmax())
    # On a handful of images a few mistakes look like a collapse: 3 of 3 answered 'a' where 2 are 'a'.
    mistakes = int(np.sum((evidence.probabilities.argmax(axis=1) == top) & (evidence.labels != top)))
    if predicted[top] < ONE_CLASS_SHARE or actual[top] >= ONE_CLASS_SHARE or mistakes < ONE_CLASS_MISTAKES:
        return []
    return [Finding(
        "one_class",
        f"'{evidence.class_names[top]}' is predicted for {predicted[top]:.0%} of the {evidence.split} images "
        f"(it is {actual[top]:.0%} of them)",
        "see the other warnings for the cause; with unbalanced classes, try -S train.class_weight=balanced",
    )]


def check_mode_gap(evidence: RunEvidence) -> list[Finding]:
    if evidence.mode_accuracies is None:
        return []
    training, inference = evidence.mode_accuracies
    if training - inference <= MODE_GAP:
        return []
    return [Finding(
        "batch_norm_mode_gap",
        f"on the same training images the model scores {training:.3f} in training mode (each batch's own "
        f"statistics) but {inference:.3f} at inference (the stored batch-norm statistics): the stored "
        f"statistics do not describe the data",
        "refinelab re-estimates them after training, so this points at batches unlike the whole set: a very "
        "small batch_size (use batch_size: auto) or a model trained outside this pipeline",
    )]


CHECKS = (check_steps, check_learning, check_one_class, check_mode_gap)


def check(evidence: RunEvidence) -> list[Finding]:
    return [finding for run_check in CHECKS for finding in run_check(evidence)]


def summary(findings: list[Finding]) -> dict[str, int | str]:
    """The metrics entry: a count ``dvc metrics diff`` can compare, and the codes (``ok`` when none)."""
    return {"health_warnings": len(findings), "health": ",".join(f.code for f in findings) or "ok"}


def report(stage: str, findings: list[Finding], earlier: Sequence[str] = ()) -> None:
    """Log the findings as one block, the last thing the stage says; ``earlier``: the codes an earlier
    stage found (evaluate's block names train's, which its `warnings` metric counts too)."""
    earlier = [code for code in earlier if code not in {finding.code for finding in findings}]
    also = f"; the train stage warned of {', '.join(earlier)} (its log says more)" if earlier else ""
    if not findings:
        (log.warning if earlier else log.info)("health check (%s): no warnings%s", stage, also)
        return
    lines = [f"health check ({stage}): {len(findings)} warning{'s' if len(findings) > 1 else ''}{also}"]
    for finding in findings:
        lines += [f"  ! {finding.code}: {finding.message}", f"    fix: {finding.fix}"]
    log.warning("%s", "\n".join(lines))
