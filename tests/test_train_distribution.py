"""train.distribute: the train stage under a MirroredStrategy (two replicas on two logical CPU devices,
as on a machine with two GPUs), and the strategies that are refused up front."""

import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from refinelab.core.errors import ClusterError, ParamsError
from refinelab.data.pipeline import BatchShare, build_dataset, short_last_batch
from refinelab.data.store import Split
from refinelab.params.files import read_config, write_config
from refinelab.params.schema import parse_params
from refinelab.train.distribution import (
    ClusterTask,
    Distribution,
    build_distribution,
    cluster_task,
    identity_numbers,
    localhost_cluster,
    same_on_every_replica,
)

from helpers import ROOT, write_prepared

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


@pytest.mark.parametrize("raw_train, key, message", [
    ({"distribute": "mirror"}, "train.distribute", "valid: none, mirrored, multi_worker"),
    ({"distribute": "multi_worker", "until_epoch": 1}, "train.until_epoch", "keeps no backup"),
])
def test_a_strategy_that_cannot_run_is_refused_naming_the_key(raw_train, key, message):
    with pytest.raises(ParamsError, match=key) as error:
        parse_params(with_train(**raw_train))
    assert message in str(error.value)


def tf_config(cluster, role="worker", index=0):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": role, "index": index}})}


TWO_WORKERS = {"worker": ["localhost:2222", "localhost:2223"]}


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    (tf_config(TWO_WORKERS), ClusterTask("worker", 0, 2, True, "localhost:2222")),
    (tf_config(TWO_WORKERS, index=1), ClusterTask("worker", 1, 2, False, "localhost:2223")),
    (tf_config({"chief": ["a:1"], **TWO_WORKERS}, "chief"), ClusterTask("chief", 0, 3, True, "a:1")),
    (tf_config({"chief": ["a:1"], **TWO_WORKERS}), ClusterTask("worker", 0, 3, False, "localhost:2222")),  # The chief is "chief".
])
def test_tf_config_names_this_process_task_and_whether_it_writes_the_outputs(environ, expected):
    assert cluster_task(environ) == expected


def test_a_localhost_cluster_names_each_worker_once_and_worker_0_is_the_chief():
    tasks = [cluster_task({"TF_CONFIG": tf_config}) for tf_config in localhost_cluster(3)]
    assert [(task.role, task.index, task.workers, task.is_chief) for task in tasks] == [
        ("worker", index, 3, index == 0) for index in range(3)]
    assert len({task.address for task in tasks}) == 3


@pytest.mark.parametrize("environ, message", [
    ({"TF_CONFIG": "{cluster"}, "not JSON"),
    ({"TF_CONFIG": "[]"}, "expected"),
    (tf_config({"ps": ["a:1"], **TWO_WORKERS}), "roles ps are not used"),
    (tf_config({"worker": ["localhost"]}), 'a list of "host:port"'),
    (tf_config(TWO_WORKERS, index=2), "is not in the cluster (worker: 2)"),
    (tf_config(TWO_WORKERS, role="chief"), "is not in the cluster"),
    (tf_config({"chief": ["a:1", "b:2"]}, "chief"), "at most one chief"),
    (tf_config({"chief": [], **TWO_WORKERS}), 'cluster.chief must be a list of "host:port"'),
    (tf_config(TWO_WORKERS, index=True), "is not in the cluster"),
])
def test_a_wrong_tf_config_is_an_error_naming_it(environ, message):
    with pytest.raises(ParamsError, match="TF_CONFIG") as error:
        cluster_task(environ)
    assert message in str(error.value)


def test_multi_worker_without_tf_config_is_refused_before_tensorflow_starts(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ParamsError, match=r"multi_worker needs \$TF_CONFIG"):
        build_distribution("multi_worker")


@pytest.mark.parametrize("distribute", ["none", "mirrored"])
def test_a_worker_of_a_cluster_without_multi_worker_is_refused_rather_than_training_alone(monkeypatch, distribute):
    monkeypatch.setenv("TF_CONFIG", tf_config(TWO_WORKERS, index=1)["TF_CONFIG"])
    with pytest.raises(ParamsError, match=f"train.distribute: {distribute}, but \\$TF_CONFIG names a cluster of 2"):
        build_distribution(distribute)


@pytest.mark.parametrize("count, batch, total", [(70, 32, 2), (33, 32, 2), (10, 4, 3), (5, 8, 4), (7, 4, 2)])
def test_every_batch_is_cut_into_one_part_per_replica_that_together_make_it_whole(count, batch, total):
    split = Split(np.arange(count, dtype=np.uint8).reshape(count, 1, 1, 1), np.arange(count))
    stream = dict(shuffle=True, seed=3, first_epoch=0)
    # Two epochs of the keyed, shuffled stream, alone; shared, an epoch's last batch goes when it is
    # smaller than the replica count (a replica would get no image).
    whole = [labels.numpy().tolist() for _, labels in build_dataset(split, batch, **stream).take(2 * math.ceil(count / batch))]
    expected = [labels for labels in whole if len(labels) >= total]
    assert len(whole) - len(expected) == 2 * bool(short_last_batch(count, batch, total))
    # Two workers' shares of `total` replicas: one replica, then the rest.
    shares = [BatchShare(0, 1, total), BatchShare(1, total - 1, total)]
    parts = [[labels.numpy().tolist() for _, labels in build_dataset(split, batch, **stream, share=share)
              .take(len(expected) * share.count)] for share in shares]
    for step, labels in enumerate(expected):
        cut = [parts[0][step]] + parts[1][step * (total - 1):(step + 1) * (total - 1)]
        # The batch (gathered in index order) in slices, none empty, their sizes equal give or take one.
        assert cut == [labels[i * len(labels) // total:(i + 1) * len(labels) // total] for i in range(total)]
        assert min(map(len, cut)) >= 1


@pytest.mark.parametrize("count, batch, replicas, left_out", [(70, 32, 2, 0), (64, 32, 2, 0), (33, 32, 2, 1),
                                                              (10, 4, 3, 2), (5, 8, 4, 0), (5, 8, 8, 5)])
def test_only_a_last_batch_smaller_than_the_replica_count_is_left_out(count, batch, replicas, left_out):
    assert short_last_batch(count, batch, replicas) == left_out


@pytest.mark.parametrize("keyed", [False, True])
def test_a_one_machine_strategy_gets_no_last_batch_smaller_than_its_replica_count(keyed):
    count, batch, replicas = 33, 8, 2  # 4 batches of 8, then 1 image: one replica would get none.
    split = Split(np.zeros((count, 1, 1, 1), np.uint8), np.arange(count))
    stream = build_dataset(split, batch, shuffle=True, seed=3, first_epoch=0 if keyed else None, replicas=replicas)
    epochs = [[len(labels) for _, labels in (stream.take(4) if keyed else stream)] for _ in range(2)]
    assert epochs == [[8, 8, 8, 8]] * 2
    alone = build_dataset(split, batch, shuffle=True, seed=3)
    assert [len(labels) for _, labels in alone] == [8, 8, 8, 8, 1]


def test_a_lost_worker_is_one_error_naming_the_cluster():
    import tensorflow as tf

    distribution = Distribution(task=ClusterTask("worker", 0, 2, True, "localhost:2222"))
    with pytest.raises(ClusterError, match="another worker of TF_CONFIG's cluster stopped") as error:
        with distribution.failures_reported():
            raise tf.errors.UnavailableError(None, None, "Collective ops is aborted by: recvmsg:Connection reset\nmore")
    assert "(TensorFlow's UnavailableError; --debug shows it)" in str(error.value)
    assert "worker 0 stops too" in str(error.value)


def test_workers_agree_only_when_every_identity_is_the_same():
    ours = identity_numbers({"params": {"dropout": 0.3}, "data": {"0/train_images.npy": "ab"}})
    theirs = identity_numbers({"params": {"dropout": 0.25}, "data": {"0/train_images.npy": "ab"}})
    totals = lambda *numbers: [sum(values) for values in zip(*numbers)]  # noqa: E731 What the all-reduce gives.
    assert same_on_every_replica(ours, totals(ours, ours, ours), 3)
    assert not same_on_every_replica(ours, totals(ours, theirs, ours), 3)
    assert not same_on_every_replica(theirs, totals(ours, theirs, ours), 3)


def train_command(prepared, params_file="params.yaml"):
    return [sys.executable, str(ROOT / "stages" / "train.py"), str(prepared), str(prepared), "models/model.keras",
            "metrics/train", "metrics/model.json", "metrics/timing.json", "--params", params_file]


def run_workers(project, prepared, params_files, timeout=300):
    """The train stage as one process per worker of a localhost cluster, in ``project``; their
    (returncode, log). Each worker's temporary files go to ``project/tmp-worker<index>``."""
    workers = []
    for index, (params_file, config) in enumerate(zip(params_files, localhost_cluster(len(params_files)))):
        scratch = project / f"tmp-worker{index}"
        scratch.mkdir()
        workers.append(subprocess.Popen(
            train_command(prepared, params_file), cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "TF_CONFIG": config, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "2"},
        ))
    try:
        logs = [worker.communicate(timeout=timeout)[1] for worker in workers]
        return [(worker.returncode, log) for worker, log in zip(workers, logs)]
    finally:
        for worker in workers:
            worker.kill()


def project_with(path, train=None, **values):
    """A folder with params for the train stage: ``values`` (and ``train``'s) over params.yaml's."""
    path.mkdir(parents=True)
    raw = with_train(**(train or {}))
    raw.update(values)
    write_config(path, raw)
    return path


def predictions_of(project, prepared):
    from refinelab.data.store import load_split
    from refinelab.models.artifact import load_trained_model

    return load_trained_model(project / "models/model.keras").predict(load_split(prepared, "test").images, verbose=0)


def run_mirrored(project, prepared):
    """The train stage in one process, as a MirroredStrategy over two logical CPU devices."""
    result = subprocess.run([sys.executable, "-c", TWO_CPU_DEVICES, *train_command(prepared)[1:]], cwd=project,
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.slow
def test_mirrored_training_leaves_out_a_last_batch_that_would_give_a_replica_nothing(tmp_path):
    """193 images in batches of 32 end with one image for two replicas: before, one replica's batch norm
    saw none and every weight became NaN (measured); now that image waits for another epoch."""
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3, counts=(193, 48, 48))
    project = project_with(tmp_path / "mirrored", train={"distribute": "mirrored"}, epochs=2, batch_size=32,
                           model="cnn_bn")
    log = run_mirrored(project, prepared)
    assert "each epoch leaves out 1 image(s)" in log and "2 replicas" in log
    predictions = predictions_of(project, prepared)
    assert np.isfinite(predictions).all() and (predictions.argmax(axis=1) == np.arange(48) % 3).mean() > 0.6


@pytest.mark.slow
def test_two_replicas_train_the_same_model_in_one_process_or_as_two_workers_on_localhost(tmp_path):
    """MirroredStrategy on two logical CPU devices (as on a machine with two GPUs), and a 2-worker cluster:
    the same parts of every batch on the same replicas, so the same model, batch norm included (dropout
    draws per replica: off). Only the chief writes; evaluate uses its model; other params are refused."""
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3, counts=(192, 48, 48))
    same = dict(epochs=2, batch_size=32, model="cnn_bn", dropout=0.0)
    train = {"label_smoothing": 0.1, "class_weight": "balanced"}  # One-hot labels, weights in the data.
    mirrored = project_with(tmp_path / "mirrored", train={**train, "distribute": "mirrored"}, **same)
    cluster = project_with(tmp_path / "cluster", train={**train, "distribute": "multi_worker"}, **same)
    other = project_with(tmp_path / "other", train={**train, "distribute": "multi_worker"}, **{**same, "l2": 1e-4})

    mirrored_log = run_mirrored(mirrored, prepared)
    assert "2 replicas" in mirrored_log and "MirroredStrategy" in mirrored_log
    (chief_status, chief_log), (worker_status, worker_log) = run_workers(cluster, prepared, ["params.yaml"] * 2)
    assert chief_status == 0, chief_log[-3000:]
    assert worker_status == 0, worker_log[-3000:]
    assert "2 replicas on 2 workers (this one: worker 0)" in chief_log
    assert "2 replicas on 2 workers (this one: worker 1)" in worker_log

    written = sorted(str(path.relative_to(cluster)) for folder in ("models", "metrics")
                     for path in (cluster / folder).rglob("*") if path.is_file())
    assert [path for path in written if not path.startswith("metrics/train/")] == [
        "metrics/model.json", "metrics/timing.json", "models/model.keras", "models/params.json"]
    assert not any((cluster / "tmp-worker1").iterdir())  # The other worker's outputs are gone.
    for project in (mirrored, cluster):
        assert json.loads((project / "metrics/train/metrics.json").read_text())["step"] == 2  # Both epochs logged (steps are epoch numbers).
    expected = predictions_of(mirrored, prepared)
    np.testing.assert_allclose(predictions_of(cluster, prepared), expected, atol=1e-5)
    assert (expected.argmax(axis=1) == np.arange(48) % 3).mean() > 0.6  # Learnt (chance: 1/3), loads alone.

    evaluate = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "evaluate.py"), "models/model.keras", str(prepared),
         "metrics/evaluate.json", "metrics/test_details.json", "metrics/confusion.csv", "test_probabilities.npy"],
        cwd=cluster, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert json.loads((cluster / "metrics/evaluate.json").read_text())["accuracy"] > 0.6

    for status, log in run_workers(other, prepared, [str(cluster / "params.yaml"), "params.yaml"]):
        assert status == 2
        assert "the workers' params, data or code differ" in log
    assert not (other / "models" / "model.keras").exists()


@pytest.mark.slow
def test_a_worker_whose_port_is_taken_says_so_in_one_line(tmp_path):
    prepared = write_prepared(tmp_path / "prepared", (12, 12, 1), 3)
    project = project_with(tmp_path / "project", train={"distribute": "multi_worker"}, epochs=1)
    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen()
        address = f"localhost:{busy.getsockname()[1]}"
        tf_config = json.dumps({"cluster": {"worker": [address, "localhost:1"]}, "task": {"type": "worker", "index": 0}})
        result = subprocess.run(train_command(prepared), cwd=project, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"TF_CONFIG: this worker 0 cannot serve the cluster on {address}" in result.stderr
    assert "Traceback" not in result.stderr
