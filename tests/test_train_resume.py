"""kill -9 during training, then the same command: training continues after the last finished epoch
and ends where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from refinelab.params.files import read_config, write_config

from helpers import ROOT, write_prepared

RESUME_NOTE = {"resumed_after_epoch"}  # The one summary key a resumed run adds.


def train_command(prepared):
    return [sys.executable, str(ROOT / "stages" / "train.py"), str(prepared), str(prepared), "models/model.keras",
            "metrics/train", "metrics/model.json", "metrics/timing.json"]


def workdir(root, name, prepared_counts=(1500, 100, 100)):
    """A folder with the real params.yaml (4 epochs) and its own copy of a small prepared dataset."""
    folder = root / name
    prepared = write_prepared(folder / "prepared", (28, 28, 1), 3, counts=prepared_counts)
    raw = read_config(ROOT / "params.yaml")
    raw["epochs"] = 4
    write_config(folder, raw)
    return folder, prepared


def series(folder):
    """Every dvclive series as (step, value) rows, and the summary without timing."""
    plots = folder / "metrics/train/plots/metrics"
    rows = {}
    for path in sorted(plots.rglob("*.tsv")):
        lines = path.read_text().splitlines()
        rows[str(path.relative_to(plots))] = [line.split("\t") for line in lines]
    summary = json.loads((folder / "metrics/train/metrics.json").read_text())
    return rows, {key: value for key, value in summary.items() if key not in RESUME_NOTE}


def epochs_backed_up(backups) -> int:
    """The latest complete epoch backup's epoch; 0 while there is none."""
    done = [int(path.name.split("-")[1]) for path in backups.glob("*/epoch-*") if path.name.split("-")[1].isdigit()]
    return max(done, default=0)


def fake_epoch_backup(backup, epoch: int):
    """A complete, readable backup folder of ``epoch`` (not a real model's weights)."""
    import h5py
    import numpy as np

    from refinelab.train.resume import EPOCH_FOLDER, LIVE_BACKUP, SEED_STATES, TRAIN_SECONDS, WEIGHTS

    folder = backup.dir / EPOCH_FOLDER.format(epoch=epoch)
    (folder / LIVE_BACKUP).mkdir(parents=True)
    with h5py.File(folder / WEIGHTS, "w") as handle:
        handle["layers/dense/vars/0"] = np.arange(1000, dtype=np.float32)
    np.savez(folder / SEED_STATES, **{TRAIN_SECONDS: np.float64(epoch)})
    return folder


@pytest.mark.slow
def test_a_killed_training_resumes_after_its_last_epoch_and_ends_as_an_uninterrupted_one(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    reference, reference_data = workdir(tmp_path, "uninterrupted")
    subprocess.run(train_command(reference_data), cwd=reference, env=env, check=True, capture_output=True)

    folder, prepared = workdir(tmp_path, "killed")
    process = subprocess.Popen(train_command(prepared), cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backups = folder / "models" / ".model.resume"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if epochs_backed_up(backups) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    killed_after = epochs_backed_up(backups)
    assert killed_after in (2, 3)
    (saved,) = backups.glob(f"*/epoch-{killed_after}/seed_states.npz")
    with np.load(saved) as states:
        killed_seconds = float(states["train_seconds"])

    again = subprocess.run(train_command(prepared), cwd=folder, env=env, capture_output=True, text=True)

    assert again.returncode == 0, again.stderr
    ran = [line for line in (again.stdout + again.stderr).splitlines() if line.startswith("Epoch ")]
    assert ran == [f"Epoch {epoch}/4" for epoch in range(killed_after + 1, 5)]  # Only the epochs left.
    assert f"resuming after epoch {killed_after}" in again.stderr
    assert series(folder) == series(reference)  # Every epoch's numbers, and the saved model's.
    assert json.loads((folder / "metrics/train/metrics.json").read_text())["resumed_after_epoch"] == killed_after
    assert not backups.exists()  # Removed once training finished.
    # train_time counts the killed run's epochs too, as an uninterrupted run's counts all of them.
    assert 0 < killed_seconds and json.loads((folder / "metrics/timing.json").read_text())["train_time"] > killed_seconds
    assert "trained 4 epochs in" in again.stderr


@pytest.mark.slow
def test_a_run_stopped_at_until_epoch_is_continued_elsewhere_and_ends_as_an_uninterrupted_one(tmp_path):
    """Successive halving's rungs: a run stops after 1 of 4 epochs; the same params without the stop, in
    another folder (a queue worker's workspace) sharing REFINELAB_RESUME_DIR, train epochs 2-4 only."""
    backups = tmp_path / "study-backups"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "REFINELAB_RESUME_DIR": str(backups)}
    reference, reference_data = workdir(tmp_path, "uninterrupted")
    subprocess.run(train_command(reference_data), cwd=reference, env=env, check=True, capture_output=True)
    assert not backups.exists()  # A finished run removes its own backup.

    rung, rung_data = workdir(tmp_path, "rung-1")
    raw = read_config(rung / "params.yaml")
    raw["train"]["until_epoch"] = 1
    write_config(rung, raw)
    stopped = subprocess.run(train_command(rung_data), cwd=rung, env=env, capture_output=True, text=True)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "phase train: epochs 1-1" in stopped.stderr  # (Keras numbers no epoch when fit has only one.)
    assert "stopped after epoch 1 of 4" in stopped.stderr
    assert epochs_backed_up(backups) == 1

    continued, continued_data = workdir(tmp_path, "rung-2")  # Its own copy of the same data.
    again = subprocess.run(train_command(continued_data), cwd=continued, env=env, capture_output=True, text=True)

    assert again.returncode == 0, again.stderr[-3000:]
    assert [line for line in again.stdout.splitlines() if line.startswith("Epoch ")] == ["Epoch 2/4", "Epoch 3/4", "Epoch 4/4"]
    assert series(continued) == series(reference)  # Every epoch's numbers, and the saved model's.
    assert json.loads((continued / "metrics/train/metrics.json").read_text())["resumed_after_epoch"] == 1
    assert not backups.exists()


def test_other_params_never_reuse_a_backup(tmp_path):
    from refinelab.params.schema import parse_params
    from refinelab.train.resume import TrainingBackup, data_identity

    folder, prepared = workdir(tmp_path, "run", prepared_counts=(12, 6, 6))
    raw = read_config(folder / "params.yaml")
    identity = {"params": parse_params(raw).resolved(), "data": data_identity(prepared)}
    first = TrainingBackup(folder / "models/model.keras", identity)
    raw["dropout"] = 0.5
    changed = TrainingBackup(folder / "models/model.keras",
                             {"params": parse_params(raw).resolved(), "data": data_identity(prepared)})
    images = prepared / "train_images.npy"
    images.write_bytes(images.read_bytes()[:-1] + b"\x01")  # One byte of the data changed.
    rewritten = TrainingBackup(folder / "models/model.keras", {**identity, "data": data_identity(prepared)})
    assert len({first.dir, changed.dir, rewritten.dir}) == 3
    assert first.dir.parent == changed.dir.parent == folder / "models" / ".model.resume"
    # Where to stop is not what is trained: a run stopped at until_epoch shares the full run's backup.
    raw["train"]["until_epoch"] = 2
    from refinelab.train.stage import training_backup, training_phases

    stopping = parse_params(raw)
    stopping_backup = training_backup(stopping, training_phases(stopping), (prepared, prepared), folder / "m.keras")
    raw["train"]["until_epoch"] = None
    full = parse_params(raw)
    assert stopping_backup.dir == training_backup(full, training_phases(full), (prepared, prepared),
                                                  folder / "m.keras").dir


def test_a_finished_run_keeps_the_backups_other_runs_may_continue(tmp_path):
    from refinelab.train.resume import TrainingBackup

    def backup(key, shared=None, stopped=False):
        made = TrainingBackup(tmp_path / "models/model.keras", {"params": key}, shared)
        fake_epoch_backup(made, 1)
        if stopped:
            made.keep_stopped()
        return made

    finished, killed, stopped = backup(1), backup(2), backup(3, stopped=True)
    finished.discard()  # Beside the model: a killed run's backup goes, one stopped on purpose stays.
    assert not finished.dir.exists() and not killed.dir.exists() and stopped.dir.exists()
    stopped.discard()
    assert not stopped.root.exists()
    shared = tmp_path / "study"
    finished, other = backup(1, shared), backup(2, shared)
    finished.discard()  # In a shared folder: only its own.
    assert not finished.dir.exists() and other.dir.exists()


def test_a_backup_past_until_epoch_is_not_used(tmp_path):
    from refinelab.params.schema import parse_params
    from refinelab.train.stage import training_backup, training_phases

    folder, prepared = workdir(tmp_path, "run", prepared_counts=(12, 6, 6))
    raw = read_config(folder / "params.yaml")
    raw["train"]["until_epoch"] = 2
    params = parse_params(raw)
    ahead = training_backup(params, training_phases(params), (prepared, prepared), folder / "models/model.keras")
    fake_epoch_backup(ahead, 3)  # A run with a later stop got there first.
    again = training_backup(params, training_phases(params), (prepared, prepared), folder / "models/model.keras")
    assert again.dir == ahead.dir and again.epochs_done == 0  # Starts over: it would train no epoch.


def test_a_resume_folder_that_cannot_be_made_is_named_before_training(tmp_path, monkeypatch):
    from refinelab.core.errors import ParamsError
    from refinelab.params.schema import parse_params
    from refinelab.train.stage import training_backup, training_phases

    folder, prepared = workdir(tmp_path, "run", prepared_counts=(12, 6, 6))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("REFINELAB_RESUME_DIR", str(tmp_path / "a-file" / "backups"))
    params = parse_params(read_config(folder / "params.yaml"))
    with pytest.raises(ParamsError, match=r"REFINELAB_RESUME_DIR=.*a-file/backups': cannot create the folder"):
        training_backup(params, training_phases(params), (prepared, prepared), folder / "models/model.keras")


def test_a_damaged_backup_is_discarded_with_a_warning_and_its_epoch_trained_again(tmp_path, caplog):
    """A kill while a backup is written leaves a .partial folder, never used; a complete one that cannot be
    read back (a disk that failed, a full one that let a write through short) falls back to the one before:
    Keras' own backup fell back to the weights before with the epoch count after, without a word."""
    from refinelab.train.resume import PARTIAL, WEIGHTS, TrainingBackup

    backup = TrainingBackup(tmp_path / "models/model.keras", {"params": 1})
    fake_epoch_backup(backup, 2)
    latest = fake_epoch_backup(backup, 3)
    latest.rename(latest.with_name(latest.name + PARTIAL))  # Killed while written.
    assert TrainingBackup(tmp_path / "models/model.keras", {"params": 1}).epochs_done == 2

    latest = fake_epoch_backup(backup, 3)
    weights = (latest / WEIGHTS).read_bytes()
    (latest / WEIGHTS).write_bytes(weights[: len(weights) // 2])  # Complete, but short.
    with caplog.at_level("WARNING"):
        again = TrainingBackup(tmp_path / "models/model.keras", {"params": 1})
        assert again.epochs_done == 2 and again.seconds_done == 2.0
    assert not latest.exists() and "the backup after epoch 3 is damaged" in caplog.text

    for folder in backup.dir.glob("epoch-2"):
        (folder / WEIGHTS).write_bytes(b"\x89HDF\r\n\x1a\n")
    assert TrainingBackup(tmp_path / "models/model.keras", {"params": 1}).epochs_done == 0  # Nothing usable.
