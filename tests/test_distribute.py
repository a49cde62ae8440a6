"""train.distribute: the train stage under a MirroredStrategy (two replicas on two logical CPU devices,
as on a machine with two GPUs), and the strategies that are refused up front."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, write_prepared
from refinelab.config import parse_params, read_config, write_config
from refinelab.errors import ParamsError

# Two logical CPU devices must exist before TensorFlow initialises its devices: then the real stage script.
TWO_CPU_DEVICES = """
import runpy, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def with_train(**train):
    raw = read_config(ROOT / "params.yaml")
    raw["train"].update(train)
    return raw


@pytest.mark.slow
def test_mirrored_training_runs_one_replica_per_device_and_saves_a_usable_model(tmp_path):
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3, counts=(192, 48, 48))
    raw = with_train(distribute="mirrored")
    raw.update({"epochs": 2, "batch_size": 32, "model": "cnn_bn"})
    write_config(tmp_path, raw)
    command = [sys.executable, "-c", TWO_CPU_DEVICES, str(ROOT / "stages" / "train.py"), str(prepared),
               str(prepared), "models/model.keras", "metrics/train", "metrics/model.json", "metrics/timing.json"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replicas" in result.stderr  # The log line of the run, from the strategy itself.
    assert "MirroredStrategy" in result.stderr
    from refinelab.models import load_trained_model
    from refinelab.prepared import load_split

    model = load_trained_model(tmp_path / "models/model.keras")
    test = load_split(prepared, "test")
    predicted = model.predict(test.images, verbose=0).argmax(axis=1)
    assert (predicted == test.labels).mean() > 0.6  # Learnt (chance is 1/3), and loads without the strategy.
    summary = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    assert summary["step"] == 1  # Both epochs logged.


@pytest.mark.parametrize("strategy, message", [
    ("multi_worker", "keras-team/keras#20585"),
    ("mirror", "valid: none, mirrored"),
])
def test_a_strategy_that_cannot_run_is_refused_naming_the_key(strategy, message):
    with pytest.raises(ParamsError, match="train.distribute") as error:
        parse_params(with_train(distribute=strategy))
    assert message in str(error.value)
