"""The train stage's work: build the selected architecture and fit it, logging with dvclive."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from dvclive import Live
from dvclive.utils import standardize_metric_name
from sklearn.utils.class_weight import compute_class_weight

from refinelab.augment.ops import online_augmenter
from refinelab.core.environment import RESUME_DIR_ENV
from refinelab.core.errors import ParamsError
from refinelab.core.fileio import write_json
from refinelab.core.runner import on_terminal
from refinelab.data.pipeline import (
    INFERENCE_BATCH,
    SplitBatches,
    build_dataset,
    pipeline_callbacks,
    predict,
    short_last_batch,
)
from refinelab.data.store import Split, load_meta, load_split, load_training_set
from refinelab.evaluate import health
from refinelab.features.stage import load_features
from refinelab.models.artifact import save_model
from refinelab.models.builders import (
    Regularization,
    build_model,
    feature_head,
    freeze_base,
    model_summary,
    transfer_base,
    transfer_weights,
)
from refinelab.models.optimizers import build_optimizer
from refinelab.params.schema import Params, TrainParams
from refinelab.train import batch_norm
from refinelab.train.distribution import Distribution, adapt_to_multi_worker, build_distribution, code_identity
from refinelab.train.resume import TrainingBackup, data_identity

log = logging.getLogger(__name__)

# The plateau schedule's fixed shape: halve the learning rate after 2 epochs without a better validation loss.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
# batch_size: auto is the largest power of two in this range that leaves AUTO_MIN_STEPS steps per epoch.
AUTO_BATCH_RANGE = (8, 128)
AUTO_MIN_STEPS = 50


def on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def limit_threads(threads: int | str) -> None:
    """Apply ``train.threads``; it must come before TensorFlow runs its first op. JAX has no such setting:
    there it is reported and not applied."""
    if threads == "auto":
        return
    if not on_tensorflow():
        log.warning("train.threads=%s is not applied: it sets TensorFlow's thread pools, and the backend is %s",
                    threads, keras.backend.backend())
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    log.info("TensorFlow limited to %d threads (train.threads)", threads)


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and the backend, with deterministic TF ops (same params, same metrics;
    JAX's CPU ops are deterministic)."""
    keras.utils.set_random_seed(seed)
    if on_tensorflow():
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def resolve_batch_size(batch_size: int | str, train_images: int) -> int:
    """An explicit batch size as it is; ``auto``: 128 for a large training set, halved (down to 8)
    until an epoch has at least ``AUTO_MIN_STEPS`` steps. 128 images in 2 steps per epoch train
    nothing; 2,000 images get 32 (63 steps), 500 get 8."""
    if batch_size != "auto":
        return int(batch_size)
    smallest, batch = AUTO_BATCH_RANGE
    while batch > smallest and train_images < batch * AUTO_MIN_STEPS:
        batch //= 2
    return batch


def learning_rate(
    params: Params, steps_per_epoch: int, epochs: int | None = None
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``learning_rate``, cosine-decayed to 0 over ``epochs`` (default: all of them) when asked.

    ``plateau`` keeps it a plain number: ReduceLROnPlateau cannot change a schedule object.
    """
    if params.train.lr_schedule == "cosine":
        decay_steps = (epochs or params.epochs) * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=decay_steps)
    return params.learning_rate


def one_hot_classes(train: TrainParams, num_classes: int) -> int | None:
    """The class count when :func:`build_loss`'s loss needs one-hot targets (label smoothing), else None."""
    return num_classes if train.label_smoothing > 0 else None


def build_loss(train: TrainParams) -> keras.losses.Loss:
    """Cross-entropy; label smoothing needs one-hot targets (:func:`one_hot_classes`)."""
    if train.label_smoothing > 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def class_weights(train: TrainParams, labels: np.ndarray) -> dict[int, float] | None:
    """scikit-learn's "balanced" weight for each class present in ``labels``, or None."""
    if train.class_weight == "none":
        return None
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(label): float(weight) for label, weight in zip(classes, weights)}


class TrainingTimer(keras.callbacks.Callback):
    """Wall time and epochs of every fit (training phase) of this process, summed, and when each epoch
    began: an epoch lasts until the next begins (the last one until training ends), so the time of the
    callbacks that run after this one at an epoch's end (backups, metric logging) is counted in it."""

    def __init__(self):
        super().__init__()
        self.started, self.seconds, self.epochs = 0.0, 0.0, 0
        self.epoch_starts, self.epoch_seconds = [], []

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.epoch_starts = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_starts.append(time.perf_counter())

    def on_train_end(self, logs=None):
        ended = time.perf_counter()
        self.seconds += ended - self.started
        self.epochs += len(self.model.history.epoch) if self.model.history else 0
        self.epoch_seconds += list(np.diff([*self.epoch_starts, ended]))

    def record(self, train_images: int) -> dict[str, float]:
        """The timing file's content (one key: it is a column of `dvc exp show`, whose table must fit a
        screen), and a log line that adds the median epoch (validation included) after the first, which
        also compiles the model (`benchmarks/bench.py` reads it)."""
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        log.info("trained %d epochs in %.1f s (%.0f images/s; %.2f s per epoch after the first)", self.epochs,
                 self.seconds, train_images * self.epochs / max(self.seconds, 1e-9),
                 float(np.median(steady)) if steady else 0.0)
        return {"train_time": round(self.seconds, 1)}


class RestoredEpochSummary(keras.callbacks.Callback):
    """EarlyStopping(restore_best_weights) saves the best epoch's weights, not the last epoch's: make
    dvclive's summary (metrics/train/metrics.json) describe the saved model, and say which epoch it is."""

    def __init__(self, live: Live, early_stopping: keras.callbacks.EarlyStopping):
        super().__init__()
        self.live, self.early_stopping = live, early_stopping

    def on_train_end(self, logs=None):
        if not (self.early_stopping.restore_best_weights and self.early_stopping.best_weights is not None):
            return
        history = self.model.history
        if self.early_stopping.best_epoch not in history.epoch:
            return
        index = history.epoch.index(self.early_stopping.best_epoch)
        for metric, values in history.history.items():
            split, name = standardize_metric_name(metric, "dvclive.keras").split("/", 1)
            self.live.summary.setdefault(split, {})[name] = float(values[index])
        self.live.summary["restored_epoch"] = self.early_stopping.best_epoch + 1


class LiveMetrics(keras.callbacks.Callback):
    """dvclive.keras.DVCLiveCallback on every Keras backend: that one subclasses ``tf.keras``'s Callback,
    so importing it needs TensorFlow. Same metric names, same end of the run; the step is the epoch's number
    (1 for the first), as Keras prints it and the learning-curve PNG draws it, on resume and across phases."""

    def __init__(self, live: Live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch, logs=None):
        self.live.step = epoch + 1
        for metric, value in (logs or {}).items():
            self.live.log_metric(standardize_metric_name(metric, "dvclive.keras"), value)
        self.live.next_step()

    def on_train_end(self, logs=None):
        self.live.end()


def training_callbacks(train: TrainParams, live: Live, timer: TrainingTimer) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [timer]
    if train.early_stopping:
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train.early_stopping, restore_best_weights=True
        )
        callbacks += [early_stopping, RestoredEpochSummary(live, early_stopping)]
    if train.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
            )
        )
    return callbacks + [LiveMetrics(live)]  # Last: it logs what the others add (learning_rate).


@dataclass(frozen=True)
class Phase:
    """Epochs ``[first, last)`` of one fit, and whether a transfer model's base is frozen in it."""

    name: str
    first: int
    last: int
    base_frozen: bool


def training_phases(params: Params) -> list[Phase]:
    """One phase, or the two-phase transfer schedule: the head alone, then fine-tuning."""
    head_epochs = getattr(params.architecture, "head_epochs", 0)
    if head_epochs:
        return [Phase("head", 0, head_epochs, True), Phase("fine-tune", head_epochs, params.epochs, False)]
    return [Phase("train", 0, params.epochs, False)]


# Training steps per call of Keras' step function, for the JAX pipeline. Keras runs each call's steps in a
# Python loop over the same compiled step (same results), and between calls its per-step work: the epoch
# iterator, the batch callbacks, the logs. On a GPU a step of a small model is shorter than that work: on
# the H100, 8 steps a call cut the default model's epoch from 1.04 to 0.72 s (BENCHMARKS.md, "On a GPU").
# Each call reads that many batches, stopping early only where the data ends: over an endless stream of
# epochs (tf.data with steps_per_epoch, a resumable run's) an epoch would take the next one's batches
# (measured on TensorFlow: 3 epochs of 21 steps took 72). A SplitBatches ends every epoch, and on
# JAX, where Keras catches that end inside the loop, the last call of an epoch stops there.
JAX_STEPS_PER_EXECUTION = 8


def steps_per_execution(train_data: Any) -> int:
    if on_tensorflow() or not isinstance(train_data, SplitBatches):
        return 1
    return JAX_STEPS_PER_EXECUTION


def compile_for_phase(
    model: keras.Model, params: Params, phase: Phase, steps_per_epoch: int, train_data: Any
) -> None:
    """Set what trains in ``phase``; compile with a fresh optimizer and learning-rate schedule (and
    several steps per call where ``train_data`` allows: :func:`steps_per_execution`)."""
    base = transfer_base(model)
    if base is not None:
        base.trainable = True
        freeze_base(base, params.architecture, everything=phase.base_frozen)
    base_rate = getattr(params.architecture, "base_learning_rate", None)
    multipliers = None
    if base is not None and base_rate is not None and not phase.base_frozen:
        multipliers = {variable.path: base_rate / params.learning_rate for variable in base.trainable_variables}
    optimizer = build_optimizer(params.train, learning_rate(params, steps_per_epoch, phase.last - phase.first),
                               multipliers)
    model.compile(optimizer=optimizer, loss=build_loss(params.train), metrics=["accuracy"],
                  steps_per_execution=steps_per_execution(train_data))


def shared_backup_folder() -> Path | None:
    """$REFINELAB_RESUME_DIR, made and checked before training rather than at the first epoch's end."""
    folder = os.environ.get(RESUME_DIR_ENV)
    if not folder:
        return None
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParamsError(f"{RESUME_DIR_ENV}={folder!r}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise ParamsError(f"{RESUME_DIR_ENV}={folder!r}: the folder is not writable")
    return Path(folder)


def training_backup(
    params: Params, phases: list[Phase], data_dirs: tuple[str | Path, ...], model_path: str | Path
) -> TrainingBackup | None:
    """Where this run's epochs are backed up (refinelab.train.resume), or None: one-phase runs continue after a
    kill or a stop at ``train.until_epoch``, two-phase ones (a transfer model's head epochs) and multi-worker
    ones (every worker would have to restore the same backup) restart."""
    if params.train.distribute == "multi_worker":
        log.info("train.distribute: multi_worker keeps no backup: a run that is killed starts over")
        return None
    if len(phases) > 1:
        if params.train.until_epoch:
            log.warning("train.until_epoch: a two-phase run (%s.head_epochs) keeps no backup; the run without "
                        "until_epoch trains from the start", params.preset)
        return None
    until = params.train.until_epoch
    if until and (params.train.early_stopping or params.train.lr_schedule == "plateau"):
        log.warning("train.until_epoch: early stopping and the plateau schedule restart their counters in the "
                    "run that continues this one, which then differs from an uninterrupted run")
    key_params = params.resolved()
    key_params["train"].pop("until_epoch")  # Where to stop is not what is trained: the continuation shares it.
    identity = {"params": key_params, "data": data_identity(*data_dirs)}
    backup = TrainingBackup(model_path, identity, shared_backup_folder())
    if until and backup.epochs_done > until:
        log.warning("a backup of these params is at epoch %d, past train.until_epoch=%d: training starts over",
                    backup.epochs_done, until)
        shutil.rmtree(backup.dir, ignore_errors=True)
        backup = TrainingBackup(model_path, identity, shared_backup_folder())  # Finds nothing now.
    return backup


def train(
    params: Params, train_dir: str | Path, prepared_dir: str | Path, model_path: str | Path, live_dir: str | Path,
    timing_path: str | Path | None = None, model_metrics_path: str | Path | None = None,
    features_dir: str | Path | None = None,
) -> keras.Model:
    """Fit the model on the training set augment chose (``train_dir``), validating on the prepared
    validation split; re-estimate its batch-norm statistics, check its health, save it, and its parameter
    counts and layers to ``model_metrics_path``.

    Wall time and throughput go to ``timing_path``, apart from every output DVC records, so that
    the same params give the same dvc.lock. Under ``train.distribute``, only the chief of a multi-worker
    cluster writes these paths (refinelab.train.distribution)."""
    limit_threads(params.train.threads)
    distribution = build_distribution(params.train.distribute)
    seed_everything(params.seed)
    with distribution.outputs(model_path, live_dir, timing_path, model_metrics_path) as outputs, \
            distribution.failures_reported():
        return fit_and_save(params, distribution, train_dir, prepared_dir, *outputs, features_dir=features_dir)


@dataclass
class TrainingData:
    """What a training reads, prepared once for all its phases."""

    meta: dict[str, Any]
    train_split: Split
    validation_split: Split
    validation_data: Any
    schedule: health.Schedule
    augmenter: Any
    one_hot: int | None
    weights: dict[int, float] | None
    steps_per_epoch: int
    # A stream of epochs, each epoch's order keyed by (seed, epoch): a killed run continues from where it
    # stopped, and every worker of a cluster draws the same order.
    keyed_epochs: bool

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])


def training_data(
    params: Params, distribution: Distribution, meta: dict[str, Any], train_split: Split, validation_split: Split,
    keyed_epochs: bool,
) -> TrainingData:
    schedule = health.Schedule(
        len(train_split), resolve_batch_size(params.batch_size, len(train_split)), params.batch_size, params.epochs
    )
    augmenter = online_augmenter(params)
    one_hot = one_hot_classes(params.train, len(meta["class_names"]))
    validation_data = distribution.distribute(
        lambda share: build_dataset(validation_split, INFERENCE_BATCH, one_hot=one_hot, share=share))
    weights = class_weights(params.train, train_split.labels)
    steps_per_epoch = schedule.steps_per_epoch
    # Under a strategy (one machine's MirroredStrategy too) a last batch smaller than the replica count
    # leaves a replica no image, and batch norm's statistics of none are NaN: measured, NaN weights.
    left_out = short_last_batch(len(train_split), schedule.batch_size, distribution.replicas)
    if left_out:
        steps_per_epoch = math.ceil((len(train_split) - left_out) / schedule.batch_size)
        log.info("each epoch leaves out %d image(s), drawn afresh: a last batch of %d for %d replicas would "
                 "leave one with none", left_out, left_out, distribution.replicas)
    return TrainingData(meta, train_split, validation_split, validation_data, schedule, augmenter, one_hot, weights,
                        steps_per_epoch, keyed_epochs)


def build_for_training(params: Params, distribution: Distribution, data: TrainingData) -> tuple[keras.Model, float | None]:
    """The model, built under the distribution's scope, and the batch-norm momentum set for its schedule."""
    with distribution.scope():
        model = build_model(
            params.architecture,
            input_shape=data.meta["image_shape"],
            num_classes=data.num_classes,
            reg=Regularization(dropout=params.dropout, l2=params.l2, l1=params.l1),
            name=params.preset,
        )
    adapt_to_multi_worker(model, distribution)
    schedule = data.schedule
    momentum = batch_norm.set_momentum(model, schedule.steps_per_epoch)
    log.info(
        "training %s (%d parameters) on %d images: batch_size %d (%s), %d steps per epoch%s%s",
        params.preset, model.count_params(), schedule.train_images, schedule.batch_size,
        "auto" if params.batch_size == "auto" else "set", schedule.steps_per_epoch,
        f", batch-norm momentum {momentum:.3f}" if momentum is not None else "",
        distribution.describe(),
    )
    return model, momentum


def fit_phases(
    model: keras.Model, params: Params, distribution: Distribution, data: TrainingData, phases: list[Phase],
    until: int, epochs_done: int, backup: TrainingBackup | None, live: Live, live_dir: Path, timer: TrainingTimer,
) -> None:
    """Fit each phase (head only, then fine-tuning, or one phase) up to epoch ``until``, after the
    ``epochs_done`` a backup restored."""
    for phase in (phase for phase in phases if phase.first < until):
        log.info("phase %s: epochs %d-%d", phase.name, phase.first + 1, min(phase.last, until))
        first_epoch = max(phase.first, epochs_done) if data.keyed_epochs else None
        train_data = distribution.distribute(lambda share: build_dataset(
            data.train_split, data.schedule.batch_size, shuffle=True, seed=params.seed, augment=data.augmenter,
            first_epoch=first_epoch, one_hot=data.one_hot, share=share, replicas=distribution.replicas,
        ), data.weights)
        compile_for_phase(model, params, phase, data.steps_per_epoch, train_data)
        model.fit(
            train_data,
            steps_per_epoch=data.steps_per_epoch if data.keyed_epochs else None,
            validation_data=data.validation_data,
            initial_epoch=phase.first,
            epochs=min(phase.last, until),
            callbacks=training_callbacks(params.train, live, timer) + pipeline_callbacks(train_data)
            + (backup.callbacks(live_dir) if backup else []),
            class_weight=data.weights if distribution.task is None else None,  # Else in train_data.
            shuffle=False,  # The pipeline shuffles, seeded.
            verbose=1 if on_terminal() else 2,
        )


def fit_and_save(
    params: Params, distribution: Distribution, train_dir: str | Path, prepared_dir: str | Path,
    model_path: Path, live_dir: Path, timing_path: Path | None, model_metrics_path: Path | None,
    features_dir: str | Path | None = None,
) -> keras.Model:
    """Load the data, build the model, fit its phases (resuming from a backup), re-estimate its batch-norm
    statistics, validate it as saved, and save it with its record, summary and timing.

    With the features stage's vectors for this model's frozen base (``features_dir``), everything up to the
    save runs on the model's head alone, fed those vectors: the same head, without the base's pass over
    every image in every epoch. The whole model (base and head) is saved either way."""
    meta = load_meta(prepared_dir)
    train_split = load_training_set(train_dir, prepared_dir)
    validation_split = load_split(prepared_dir, "validation")
    features = load_features(features_dir, params, train_dir, prepared_dir, len(train_split)) if features_dir else None
    data_dirs = (train_dir, prepared_dir) + ((features_dir,) if features else ())
    phases = training_phases(params)
    until = params.train.until_epoch or params.epochs
    backup = training_backup(params, phases, data_dirs, model_path)
    epochs_done = backup.epochs_done if backup else 0
    data = training_data(params, distribution, meta, features.train if features else train_split,
                         features.validation if features else validation_split,
                         keyed_epochs=backup is not None or distribution.task is not None)
    if distribution.task is not None:
        distribution.check_same_training({"params": params.resolved(), "data": data_identity(*data_dirs),
                                          "code": code_identity()})
    model, momentum = build_for_training(params, distribution, data)
    fitted = feature_head(model) if features else model

    resumed = bool(epochs_done) and backup.restore_live_logs(live_dir)
    # As a context manager Live ends once, after every phase (its Keras callback would end it per fit).
    with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=resumed) as live, distribution.scope():
        timer = TrainingTimer()
        if resumed:
            live.summary["resumed_after_epoch"] = epochs_done
        if epochs_done and backup.seconds_done is not None:
            # train_time is the whole training's, the killed runs' epochs included, as other runs' is.
            timer.seconds, timer.epochs = backup.seconds_done, epochs_done
        fit_phases(fitted, params, distribution, data, phases, until, epochs_done, backup, live, live_dir, timer)
        # The clean (un-augmented) training images: the distribution inference sees.
        clean_train = features.clean_train if features else load_split(prepared_dir, "train")
        recalibrated = batch_norm.recalibrate(fitted, clean_train, params.seed)
        mode_accuracies = batch_norm.mode_accuracies(fitted, clean_train, data.schedule.batch_size, params.seed)
        findings = final_validation(fitted, live, data.meta, data.validation_split, data.schedule, mode_accuracies)
    resolved = resolved_params(params, data.meta)
    if weights := transfer_weights(params.architecture):
        resolved["transfer_weights"] = weights
    resolved["batch_size"] = data.schedule.batch_size
    resolved["training"] = {
        "batch_size_param": data.schedule.batch_size_param,
        "train_images": data.schedule.train_images,
        "steps_per_epoch": data.schedule.steps_per_epoch,
        "batch_norm_momentum": momentum,
        "batch_norm_recalibration_images": recalibrated,
        # Training-mode and inference-mode accuracy of the same training images (evaluate reports it too).
        "mode_accuracies": mode_accuracies,
        "health": [finding.code for finding in findings],
    }
    save_model(model, model_path, resolved)
    if backup and until < params.epochs:
        backup.keep_stopped()
        log.info("stopped after epoch %d of %d (train.until_epoch); the same params without it continue from "
                 "here (backup %s)", until, params.epochs, backup.dir)
    elif backup:
        backup.discard()
    if model_metrics_path is not None:
        write_json(model_metrics_path, model_summary(model))
    if timing_path is not None:
        write_json(timing_path, timer.record(len(data.train_split)))
    health.report("train", findings)
    return model


def final_validation(
    model: keras.Model, live: Live, meta: dict[str, Any], validation: Split, schedule: health.Schedule,
    mode_accuracies: tuple[float, float] | None,
) -> list[health.Finding]:
    """Validate the model as it is saved (statistics re-estimated, best epoch restored), put its
    validation loss and accuracy in the summary, and run the health check on them."""
    probabilities = predict(model, validation)
    labels = validation.labels
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels)) if len(labels) else 0.0
    loss = health.cross_entropy(labels, probabilities)
    summary_eval = live.summary.setdefault("eval", {})
    if "accuracy" in summary_eval and abs(summary_eval["accuracy"] - accuracy) > 0.01:
        log.info("validation accuracy of the saved model: %.4f (%.4f in the last epoch's pass)", accuracy,
                 summary_eval["accuracy"])
    summary_eval.update(accuracy=accuracy, loss=loss)
    train_metrics = live.summary.get("train", {})
    evidence = health.RunEvidence(
        split="validation",
        labels=labels,
        probabilities=probabilities,
        class_names=meta["class_names"],
        train_accuracy=float(train_metrics.get("accuracy", 0.0)),
        train_loss=float(train_metrics.get("loss", math.log(len(meta["class_names"])))),
        schedule=schedule,
        mode_accuracies=mode_accuracies,
    )
    findings = health.check(evidence)
    live.summary.update(health.summary(findings))
    return findings


def resolved_params(params: Params, meta: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild and to use the model: its params and the data it expects."""
    return {
        **params.resolved(),
        "class_names": meta["class_names"],
        "image_shape": meta["image_shape"],
        "preprocessing": meta["preprocessing"],
    }


