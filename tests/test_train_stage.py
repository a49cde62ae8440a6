"""The train stage's work on tiny synthetic prepared data: knobs, reproducibility, pretrain-then-transfer."""

import json

import numpy as np
import pytest

from refinelab.data.pipeline import PIPELINES
from refinelab.params.files import read_config
from refinelab.params.schema import parse_params

from helpers import ROOT, collect, write_prepared


def tiny_params(changes=None, train=None, architectures=None):
    raw = read_config(ROOT / "params.yaml")
    raw.update({"epochs": 1, "batch_size": 16, **(changes or {})})
    raw["train"].update(train or {})
    raw["architectures"].update(architectures or {})
    return parse_params(raw)


def run_training(params, prepared, out):
    from refinelab.train.stage import train

    model = train(params, prepared, prepared, out / "model.keras", out / "live", out / "timing.json")
    return model, json.loads((out / "live" / "metrics.json").read_text())


def test_same_seed_gives_identical_metrics_and_another_seed_differs(tmp_path):
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3)
    runs = {}
    for run, seed in (("first", 7), ("again", 7), ("other", 8)):
        _, metrics = run_training(tiny_params({"seed": seed, "model": "cnn_bn"}), prepared, tmp_path / run)
        runs[run] = metrics
    assert runs["first"] == runs["again"]  # To the last digit.
    # Timing lives apart from every output DVC records, so the same params give the same dvc.lock.
    assert set(json.loads((tmp_path / "first" / "timing.json").read_text())) == {"train_time"}
    assert runs["first"]["train"] != runs["other"]["train"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A small CNN trained (with batch norm) on a 16x16 grayscale, 4-class dataset: the model to transfer."""
    root = tmp_path_factory.mktemp("pretrain")
    prepared = write_prepared(root / "prepared", (16, 16, 1), 4, seed=1)
    params = tiny_params(
        {"model": "small_cnn"},
        architectures={"small_cnn": {"type": "cnn", "filters": [8, 16], "batch_norm": True, "dense": [16]}},
    )
    run_training(params, prepared, root)
    return root / "model.keras"


def transfer_params(pretrained_path, **spec):
    return tiny_params(
        {"model": "mine", "learning_rate": 0.01, "epochs": spec.pop("epochs", 1)},
        architectures={"mine": {"type": "transfer", "weights": str(pretrained_path), "dense": [8], **spec}},
    )


def base_weight_change(pretrained_path, transferred) -> float:
    """The largest change of any base weight, layer by layer, against the pretrained model."""
    import keras

    original = keras.models.load_model(pretrained_path)
    base = transferred.get_layer("base")
    changes = [
        np.abs(after - before).max()
        for layer in base.layers
        for after, before in zip(layer.get_weights(), original.get_layer(layer.name).get_weights())
    ]
    assert changes, "the base has no weights to compare"
    return float(max(changes))


def test_pretrain_then_transfer_keeps_the_frozen_base_and_trains_the_head(tmp_path, pretrained):
    import keras

    # Another dataset: 20x20 RGB with 3 classes; the model resizes it and makes it grayscale for the base.
    prepared = write_prepared(tmp_path / "prepared", (20, 20, 3), 3, seed=2)
    params = transfer_params(pretrained, freeze="all")
    model, metrics = run_training(params, prepared, tmp_path / "run")

    assert base_weight_change(pretrained, model) == 0.0
    assert np.isfinite(metrics["train"]["loss"])
    reloaded = keras.models.load_model(tmp_path / "run" / "model.keras")  # As evaluate loads it.
    images = np.random.default_rng(0).integers(0, 256, size=(4, 20, 20, 3)).astype("float32")
    probabilities = reloaded.predict(images, verbose=0)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    # The base's features go into the new head: only the head (and nothing of the base) is trainable.
    assert reloaded.get_layer("base").trainable_weights == []
    assert reloaded.get_layer("classes").output.shape[-1] == 3


@pytest.mark.parametrize("base_learning_rate, moves", [(None, True), (1e-9, False)])
def test_two_phase_fine_tuning_uses_the_base_learning_rate(tmp_path, pretrained, base_learning_rate, moves):
    prepared = write_prepared(tmp_path / "prepared", (16, 16, 1), 3, seed=3)
    spec = {"freeze": "none", "head_epochs": 1, "epochs": 2}
    if base_learning_rate is not None:
        spec["base_learning_rate"] = base_learning_rate
    model, metrics = run_training(transfer_params(pretrained, **spec), prepared, tmp_path / "run")

    change = base_weight_change(pretrained, model)
    # Adam moves each weight by about the learning rate per step: 0.01 for the base, or 1e-9.
    assert (change > 1e-3) if moves else (change < 1e-6), change
    # Two epochs, one dvclive run: the fine-tune phase continues the steps, which are the epochs' numbers
    # (as the learning-curve PNG and Keras' "Epoch 1/2" count them).
    assert metrics["step"] == 2
    from refinelab.plot.stage import read_dvclive_series
    for split in ("train", "eval"):
        assert read_dvclive_series(tmp_path / f"run/live/plots/metrics/{split}/loss.tsv")[0] == [1, 2]
    # The two rates are the saved optimizer's own config: the model reloads with them.
    from refinelab.models.artifact import load_trained_model

    optimizer = load_trained_model(tmp_path / "run" / "model.keras").optimizer
    if base_learning_rate is None:
        assert type(optimizer).__name__ == "Adam"
    else:
        assert type(optimizer).__name__ == "PerLayerRateAdam"
        base_paths = {variable.path for variable in reloaded_base_variables(tmp_path / "run" / "model.keras")}
        assert set(optimizer.rate_multipliers) == base_paths
        assert all(factor == pytest.approx(base_learning_rate / 0.01) for factor in optimizer.rate_multipliers.values())


def reloaded_base_variables(model_path):
    from refinelab.models.artifact import load_trained_model
    from refinelab.models.builders import transfer_base

    return transfer_base(load_trained_model(model_path)).trainable_variables


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_per_layer_rates_scale_only_the_named_layers_variables(kind):
    """One step of each optimizer with the base's rate at 0: the base stays, the head moves."""
    import keras

    from refinelab.models.optimizers import build_optimizer

    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner")], name="base")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(base(inputs)))
    train = tiny_params(train={"optimizer": kind, "weight_decay": 0.01 if kind == "adamw" else 0.0}).train
    optimizer = build_optimizer(train, 0.1, {variable.path: 0.0 for variable in base.trainable_variables})
    model.compile(optimizer=optimizer, loss="mse")
    before = [variable.numpy().copy() for variable in model.trainable_variables]
    model.train_on_batch(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"))
    moved = {variable.path: not np.allclose(variable.numpy(), old) for variable, old in zip(model.trainable_variables, before)}
    assert moved == {"base/inner/kernel": False, "base/inner/bias": False, "head/kernel": True, "head/bias": True}


def test_training_knobs_reach_the_saved_model(tmp_path):
    import keras

    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3)
    train = {
        "optimizer": "sgd", "momentum": 0.8, "clipnorm": 1.0, "lr_schedule": "plateau",
        "early_stopping": 1, "label_smoothing": 0.1, "class_weight": "balanced",
    }
    params = tiny_params({"model": "smaller", "epochs": 2, "l1": 1e-5}, train=train)
    _, metrics = run_training(params, prepared, tmp_path / "run")

    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.momentum == pytest.approx(0.8)
    assert model.optimizer.clipnorm == pytest.approx(1.0)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and model.loss.label_smoothing == 0.1
    assert isinstance(model.get_layer("dense1").kernel_regularizer, keras.regularizers.L1)
    assert {"loss", "accuracy", "learning_rate"} <= set(metrics["train"])  # ReduceLROnPlateau logs the rate.


def test_callbacks_follow_the_params(tmp_path):
    import keras
    from dvclive import Live

    from refinelab.train.stage import TrainingTimer, training_callbacks

    train = tiny_params(train={"lr_schedule": "plateau", "early_stopping": 4}).train
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        callbacks = training_callbacks(train, live, TrainingTimer())
    stopping = next(cb for cb in callbacks if isinstance(cb, keras.callbacks.EarlyStopping))
    assert (stopping.patience, stopping.monitor, stopping.restore_best_weights) == (4, "val_loss", True)
    plateau = next(cb for cb in callbacks if isinstance(cb, keras.callbacks.ReduceLROnPlateau))
    assert (plateau.factor, plateau.patience) == (0.5, 2)
    default = tiny_params().train
    assert not any(
        isinstance(cb, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))
        for cb in training_callbacks(default, live, TrainingTimer())
    )


def test_no_callback_of_training_makes_keras_wait_for_every_step(tmp_path, monkeypatch):
    """On a backend that runs steps asynchronously (JAX), Keras reads each step's logs in the training
    thread, waiting for the device, as soon as one callback has a batch hook not declared async-safe."""
    import keras
    from dvclive import Live
    from keras.src.callbacks import callback_list

    from refinelab.train.resume import TrainingBackup
    from refinelab.train.stage import TrainingTimer, training_callbacks

    monkeypatch.setattr(callback_list.backend, "IS_THREAD_SAFE", True)  # As on JAX, whatever this run's backend.
    train = tiny_params(train={"lr_schedule": "plateau", "early_stopping": 4}).train
    backup = TrainingBackup(tmp_path / "model.keras", {"params": 1})
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        callbacks = training_callbacks(train, live, TrainingTimer()) + backup.callbacks(tmp_path / "live")
    assert keras.callbacks.CallbackList(callbacks)._async_train
    keras_own = keras.callbacks.BackupAndRestore(str(tmp_path / "plain"), save_freq="epoch")
    assert not keras.callbacks.CallbackList(callbacks + [keras_own])._async_train  # What EpochBackup avoids.


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_balanced_class_weights_and_label_smoothing_targets(pipeline):
    from refinelab.data.pipeline import build_dataset
    from refinelab.data.store import Split
    from refinelab.train.stage import class_weights, one_hot_classes

    balanced = tiny_params(train={"class_weight": "balanced", "label_smoothing": 0.1}).train
    weights = class_weights(balanced, np.array([0, 0, 0, 1, 2, 2]))
    assert weights == pytest.approx({0: 6 / 9, 1: 2.0, 2: 1.0})
    assert class_weights(tiny_params().train, np.array([0, 1])) is None
    split = Split(np.zeros((2, 4, 4, 1), np.uint8), np.array([2, 0]))
    targets = {train: collect(build_dataset(split, 2, one_hot=one_hot_classes(train, 3), pipeline=pipeline))[1]
               for train in (balanced, tiny_params().train)}
    np.testing.assert_array_equal(targets[balanced], [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(targets[tiny_params().train], [2, 0])


def test_default_training_is_adam_with_cosine_decay():
    import keras

    from refinelab.models.optimizers import build_optimizer
    from refinelab.train.stage import build_loss, learning_rate

    params = tiny_params({"epochs": 8})
    rate = learning_rate(params, steps_per_epoch=10)
    assert isinstance(rate, keras.optimizers.schedules.CosineDecay) and rate.decay_steps == 80
    optimizer = build_optimizer(params.train, rate)
    assert type(optimizer) is keras.optimizers.Adam and optimizer.weight_decay is None and optimizer.clipnorm is None
    assert isinstance(build_loss(params.train), keras.losses.SparseCategoricalCrossentropy)
    adamw = build_optimizer(tiny_params(train={"optimizer": "adamw", "weight_decay": 0.01}).train, 0.001)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(0.01)


def test_restored_best_epoch_is_what_the_summary_reports(tmp_path):
    """With restore_best_weights the saved model is the best epoch's: metrics.json must describe it."""
    import keras
    from dvclive import Live

    from refinelab.train.stage import RestoredEpochSummary

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images, labels = np.zeros((8, 2), "float32"), np.arange(8) % 2
    # A zero learning rate never improves val_loss, so patience 1 stops at epoch 2 and restores epoch 1.
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        history = model.fit(
            images, labels, validation_data=(images, labels), epochs=5, verbose=0,
            callbacks=[early, RestoredEpochSummary(live, early)],
        )
        live.summary["eval"] = {"loss": -1.0}  # What the last epoch would have left there.
        summary_fixer = RestoredEpochSummary(live, early)
        summary_fixer.set_model(model)
        summary_fixer.on_train_end()
    assert len(history.epoch) == 2 and early.best_epoch == 0
    assert live.summary["restored_epoch"] == 1
    assert live.summary["eval"]["loss"] == pytest.approx(history.history["val_loss"][0])
    assert live.summary["train"]["accuracy"] == pytest.approx(history.history["accuracy"][0])


def test_a_saved_model_carries_no_save_time_or_memory_address(tmp_path):
    """The same training must give the same bytes, or dvc.lock changes when a run is repeated."""
    import subprocess
    import sys
    import zipfile

    from refinelab.models.artifact import ZIP_EPOCH

    # Two processes, as two runs are: Keras writes id()s of shared objects (the dtype policy) into the config.
    script = """
import sys, keras
from refinelab.models.artifact import save_model
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="first"), keras.layers.Dense(2)])
save_model(model, sys.argv[1], {"seed": 0})
"""
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run / "model.keras")], check=True)
    with zipfile.ZipFile(tmp_path / "a" / "model.keras") as archive:
        assert {info.date_time for info in archive.infolist()} == {ZIP_EPOCH}
        assert "date_saved" not in json.loads(archive.read("metadata.json"))
        assert '"shared_object_id": 1' in archive.read("config.json").decode()
    assert (tmp_path / "a" / "model.keras").read_bytes() == (tmp_path / "b" / "model.keras").read_bytes()

    import keras
    reloaded = keras.models.load_model(tmp_path / "a" / "model.keras")
    assert reloaded.predict(np.ones((1, 4)), verbose=0).shape == (1, 2)


def test_the_pydataset_pipeline_under_fit_draws_epoch_e_from_seed_and_e(tmp_path, monkeypatch):
    """The pipeline JAX uses, trained here with TensorFlow: Keras calls a PyDataset's on_epoch_end once
    more than there are epochs, so the epoch number must come from fit itself."""
    import refinelab.data.pipeline
    import refinelab.train.stage

    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3)
    monkeypatch.setattr(refinelab.data.pipeline, "default_pipeline", lambda: "pydataset")
    training_sets = []

    def recording_build_dataset(split, *args, **kwargs):
        dataset = refinelab.data.pipeline.build_dataset(split, *args, **kwargs)
        if kwargs.get("shuffle"):
            training_sets.append(dataset)
        return dataset

    monkeypatch.setattr(refinelab.train.stage, "build_dataset", recording_build_dataset)
    _, metrics = run_training(tiny_params({"epochs": 3, "model": "cnn_bn"}), prepared, tmp_path / "run")

    (dataset,) = training_sets
    assert isinstance(dataset, refinelab.data.pipeline.SplitBatches)
    assert dataset.epoch == 2  # The last epoch fit trained, numbered from 0.
    np.testing.assert_array_equal(dataset.order, np.random.default_rng([42, 2]).permutation(96))
    assert metrics["step"] == 3 and metrics["eval"]["accuracy"] > 0.6  # Three epochs logged; it learnt.
