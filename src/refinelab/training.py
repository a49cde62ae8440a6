"""The train stage's work: build the selected architecture and fit it, logging with dvclive."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from refinelab.augmentation import online_augmenter
from refinelab.config import Params
from refinelab.fileio import atomic_path, write_json
from refinelab.models import Regularization, build_model
from refinelab.pipeline_data import make_dataset
from refinelab.prepared import load_meta, load_split

log = logging.getLogger(__name__)
RESOLVED_PARAMS_FILE = "params.json"


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and TensorFlow, with deterministic TF ops (same params, same metrics)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate(params: Params, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if params.train.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=params.epochs * steps_per_epoch)
    return params.learning_rate


class TrainingTimer(keras.callbacks.Callback):
    """Logs wall time and throughput to dvclive before its callback closes the run."""

    def __init__(self, live: Live, train_images: int):
        super().__init__()
        self.live, self.train_images, self.started = live, train_images, 0.0

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_train_end(self, logs=None):
        seconds = time.perf_counter() - self.started
        epochs = len(self.model.history.epoch) if self.model.history else 0
        self.live.summary["train_seconds"] = round(seconds, 2)
        self.live.summary["images_per_second"] = round(self.train_images * epochs / max(seconds, 1e-9), 1)


def train(
    params: Params, train_dir: str | Path, prepared_dir: str | Path, model_path: str | Path, live_dir: str | Path
) -> keras.Model:
    """Fit the model on ``train_dir``'s train split, validating on the prepared validation split."""
    seed_everything(params.seed)
    meta = load_meta(prepared_dir)
    train_split = load_split(train_dir, "train")
    validation_split = load_split(prepared_dir, "validation")
    train_data = make_dataset(
        train_split, params.batch_size, shuffle=True, seed=params.seed, augment=online_augmenter(params)
    )
    validation_data = make_dataset(validation_split, params.batch_size)

    model = build_model(
        params.architecture,
        input_shape=meta["image_shape"],
        num_classes=len(meta["class_names"]),
        reg=Regularization(dropout=params.dropout, l2=params.l2),
        name=params.model,
    )
    steps_per_epoch = -(-len(train_split) // params.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(params, steps_per_epoch)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    log.info("training %s (%d parameters) on %d images", params.model, model.count_params(), len(train_split))

    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False)
    model.fit(
        train_data,
        validation_data=validation_data,
        epochs=params.epochs,
        callbacks=[TrainingTimer(live, len(train_split)), DVCLiveCallback(live=live)],
        shuffle=False,  # The tf.data pipeline shuffles, seeded.
        verbose=2,
    )
    save_model(model, model_path, resolved_params(params, meta))
    return model


def resolved_params(params: Params, meta: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild and to use the model: its params and the data it expects."""
    return {
        **params.resolved(),
        "class_names": meta["class_names"],
        "image_shape": meta["image_shape"],
        "preprocessing": meta["preprocessing"],
    }


def save_model(model: keras.Model, model_path: str | Path, resolved: dict[str, Any]) -> None:
    model_path = Path(model_path)
    with atomic_path(model_path) as temporary:
        model.save(temporary)
    write_json(model_path.parent / RESOLVED_PARAMS_FILE, resolved)
    log.info("saved %s", model_path)
