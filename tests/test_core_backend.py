"""The `backend:` param: Keras' backend is chosen before Keras is imported, and with JAX the train and
evaluate stages and `refinelab predict` run where TensorFlow cannot even be imported."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from refinelab.core.backend import select_backend
from refinelab.core.errors import ParamsError
from refinelab.params.files import read_config, write_config

from helpers import ROOT, write_prepared

# Runs a script (argv[1], its arguments after it) in a Python where `import tensorflow` fails as if it
# were not installed (no sys.modules entry: Keras takes one as "TensorFlow is loaded").
WITHOUT_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_an_unknown_backend_or_a_switch_after_keras_is_imported_is_refused(monkeypatch):
    import importlib.util

    import keras

    with pytest.raises(ParamsError, match="backend: unknown backend 'torch'; valid: tensorflow, jax"):
        select_backend("torch")
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    # The switch is refused whether or not the other backend is installed (CI has no JAX): say it is.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: object() if name == other else real_find_spec(name, *args))
    with pytest.raises(RuntimeError, match=f"before {other} was chosen"):
        select_backend(other)
    select_backend(keras.backend.backend())  # The backend Keras has: nothing to do.


def test_a_backend_that_is_not_installed_is_named_with_how_to_install_it(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "jax" else real_find_spec(name, *args))
    with pytest.raises(ParamsError, match=r"backend: jax is not installed; pip install .*'\.\[jax\]'"):
        select_backend("jax")


@pytest.mark.slow
def test_train_evaluate_and_predict_run_on_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[jax]'); CI runs TensorFlow only")
    from PIL import Image

    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3, counts=(192, 48, 48))
    raw = read_config(ROOT / "params.yaml")
    raw.update({"backend": "jax", "epochs": 2, "batch_size": 32, "model": "cnn_bn"})
    raw["train"]["label_smoothing"] = 0.1  # One-hot targets from the PyDataset.
    raw["augment"].update(mode="online", online=["shift", "flip_horizontal"])
    write_config(tmp_path, raw)
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    env["REFINELAB_JAX_CACHE"] = str(tmp_path / "jax-cache")  # Not the user's cache folder.

    def run_without_tensorflow(*command):
        result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *map(str, command)], cwd=tmp_path,
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    trained = run_without_tensorflow(ROOT / "stages/train.py", prepared, prepared, "models/model.keras",
                                     "metrics/train", "metrics/model.json", "metrics/timing.json")
    assert "Epoch 2/2" in trained.stdout + trained.stderr
    assert json.loads((tmp_path / "models/params.json").read_text())["backend"] == "jax"
    run_without_tensorflow(ROOT / "stages/evaluate.py", "models/model.keras", prepared, "metrics/evaluate.json",
                           "metrics/test_details.json", "metrics/confusion.csv", "probabilities.npy")
    assert json.loads((tmp_path / "metrics/evaluate.json").read_text())["accuracy"] > 0.6  # Chance: 1/3.

    images = np.load(prepared / "test_images.npy")[:3, :, :, 0]
    (tmp_path / "photos").mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "photos" / f"{index}.png")
    predicted = run_without_tensorflow(ROOT / "src/refinelab/cli/main.py", "predict", "photos", "--json")
    assert len(json.loads(predicted.stdout)["predictions"]) == 3


COMPILED_AGAINST_EAGER = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
from refinelab.augment.ops import CompiledAugmenter, build_augmenter
from refinelab.params.schema import AugmentParams

settings = AugmentParams()
images = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 1)).astype(np.float32)
ops = ["flip_horizontal", "shift", "cutout", "rotation", "noise"]
eager, compiled = (build_augmenter(ops, settings, seed=5, online=True) for _ in range(2))
wrapped = CompiledAugmenter(compiled)
for call in range(3):
    expected, got = np.asarray(eager(images)), np.asarray(wrapped(images))
    assert not np.array_equal(got, images), call
    np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=f"call {call}")
print("same draws")
"""


def test_the_compiled_augmenter_draws_what_the_eager_layers_draw_call_after_call():
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[jax]'); CI runs TensorFlow only")
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", COMPILED_AGAINST_EAGER], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "same draws" in result.stdout, result.stderr[-3000:]


SEVERAL_STEPS_PER_EXECUTION = """
import os
os.environ["KERAS_BACKEND"] = "jax"
import keras
import numpy as np
from refinelab.data.pipeline import build_dataset, pipeline_callbacks, predict
from refinelab.data.store import Split
from refinelab.train.stage import steps_per_execution

rng = np.random.default_rng(0)
# 21 batches of 8 (the last short), read as a resumable run reads them (steps_per_epoch given): not a
# multiple of the steps per execution, so each epoch's last execution has fewer steps.
split = Split(rng.integers(0, 256, (165, 6, 6, 1)).astype(np.uint8), rng.integers(0, 3, 165))
validation = Split(rng.integers(0, 256, (40, 6, 6, 1)).astype(np.uint8), rng.integers(0, 3, 40))
steps = -(-len(split) // 8)
# Data that may not end with the epoch (a stream of epochs, anything but SplitBatches) keeps one step.
assert steps_per_execution(iter([])) == 1

def trained(grouped):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.2),
                              keras.layers.Dense(3)])
    data = build_dataset(split, 8, shuffle=True, seed=3, first_epoch=0)
    per_execution = steps_per_execution(data) if grouped else 1
    model.compile(optimizer=keras.optimizers.Adam(0.01), steps_per_execution=per_execution,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(data, steps_per_epoch=steps, epochs=3, verbose=0, callbacks=pipeline_callbacks(data),
                        validation_data=build_dataset(validation, 16))
    return model, per_execution, history.history

(one, _, one_history), (grouped, several, grouped_history) = trained(False), trained(True)
assert several > 1, several
assert int(grouped.optimizer.iterations) == int(one.optimizer.iterations) == 3 * steps
for a, b in zip(one.get_weights(), grouped.get_weights()):
    np.testing.assert_array_equal(a, b)
assert one_history == grouped_history, (one_history, grouped_history)
# 10 batches of 256 (the last filled up): two calls of 8 and 2 steps, outputs complete and in order.
many = Split(rng.integers(0, 256, (9 * 256 + 17, 6, 6, 1)).astype(np.uint8), np.zeros(9 * 256 + 17, int))
predictions = predict(grouped, many)
assert predictions.shape == (len(many), 3)
np.testing.assert_array_equal(predictions, predict(one, many))
print("same training")
"""


def test_several_steps_per_execution_train_exactly_what_one_does_on_jax():
    """On JAX train compiles with several steps per call of Keras' step function (the per-step
    overhead that a GPU waited on): every epoch must still take each of its batches once, in order."""
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[jax]'); CI runs TensorFlow only")
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", SEVERAL_STEPS_PER_EXECUTION], capture_output=True, text=True,
                            env=env, cwd=ROOT)
    assert result.returncode == 0 and "same training" in result.stdout, result.stderr[-3000:]


def unset_restored_after(monkeypatch, *names: str) -> None:
    """Unset the variables; the test's end restores them, also where the code under test set them (a
    plain delenv of an unset variable records nothing to restore: a value set later would leak into
    the next tests' stage processes)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_the_jax_compilation_cache_goes_to_the_user_cache_folder_unless_set_or_off(monkeypatch, tmp_path):
    from refinelab.core.backend import JAX_CACHE_BYTES, keep_jax_compilations

    variables = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                 "JAX_COMPILATION_CACHE_MAX_SIZE", "REFINELAB_JAX_CACHE")
    unset_restored_after(monkeypatch, *variables)
    monkeypatch.setenv("REFINELAB_CACHE", str(tmp_path))  # refinelab's cache folder (downloads too).
    keep_jax_compilations()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jax")
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(JAX_CACHE_BYTES)

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/the/users/own")  # The user's setting wins.
    keep_jax_compilations()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/the/users/own"

    unset_restored_after(monkeypatch, *variables)
    monkeypatch.setenv("REFINELAB_JAX_CACHE", "off")
    keep_jax_compilations()
    assert not any(name in os.environ for name in variables[:3])


def test_cpu_only_keeps_jax_off_the_gpu_unless_the_user_chose(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object() if name == "jax" else real_find_spec(name, *args))
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # As in a stage before it imports Keras (restored after the test).
    unset_restored_after(monkeypatch, "KERAS_BACKEND", "JAX_PLATFORMS")
    monkeypatch.setenv("REFINELAB_JAX_CACHE", "off")
    select_backend("jax")
    assert os.environ["KERAS_BACKEND"] == "jax" and "JAX_PLATFORMS" not in os.environ
    select_backend("jax", cpu_only=True)
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    select_backend("jax", cpu_only=True)
    assert os.environ["JAX_PLATFORMS"] == "cuda"


@pytest.mark.slow
def test_batch_norm_augmentation_and_pipeline_unit_tests_pass_on_jax_too():
    """The re-estimate, the mode check and the augmenters run compiled on JAX (refinelab.core.backend.compiled,
    refinelab.augment.ops.for_backend), eagerly or in tf.data on TensorFlow: the same tests, on JAX."""
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[jax]'); CI runs TensorFlow only")
    import importlib.util

    # The tf.data pipeline's cases need TensorFlow, which a JAX machine may not have.
    selection = [] if importlib.util.find_spec("tensorflow") else ["-k", "not tf.data"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", *selection,
         "tests/test_train_batch_norm.py", "tests/test_augment_ops.py", "tests/test_data_pipeline.py", "tests/test_evaluate_stage.py::"
         "test_predictions_come_in_order_without_the_filled_last_batch"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stdout[-3000:]
