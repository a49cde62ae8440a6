"""Resume training after a kill: the same command continues after the last finished epoch.

At the end of every epoch Keras' ``BackupAndRestore`` saves the weights, the optimizer state and the
epoch count, and :class:`EpochStateBackup` saves what it leaves out: the random state of the model's
dropout layers, and dvclive's logs (DVC deletes the stage's outputs, ``metrics/train`` included,
before it runs the stage again). The backup lives in a scratch
folder beside the model, ignored by git and DVC, under a key of everything training depends on (the
resolved params and the content of the prepared and augmented data): different params or data
never reuse it. A finished training deletes its backup and those of killed runs beside the model.

The same backup lets a run stopped on purpose continue: ``train.until_epoch`` ends training after that
many of ``epochs`` epochs (the learning-rate schedule still spans all of them) and keeps the backup,
marked as stopped, which ``until_epoch`` is not part of the key of; the run without it (or with a later
stop) continues from there. A backup past a run's ``until_epoch`` is not used: that run starts over. With
``REFINELAB_RESUME_DIR`` set, backups live in that folder instead of beside the model, so a run in
another workspace (a DVC queue worker's) finds them: `refinelab search`'s halving rungs continue this way.
A finished run there deletes only its own backup.

Resumed, the shuffled order of the remaining epochs is the one an uninterrupted run draws, so on CPU
with deterministic ops the final metrics are the same (not with online augmentation, whose random
state lives outside the model: its remaining epochs draw other, equally valid, transforms). Runs of two phases (a transfer model's
``head_epochs``) are not backed up, nor are early stopping's and ReduceLROnPlateau's counters.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from refinelab.core.fileio import read_json, write_json
from refinelab.data.store import META_FILE, TRAINING_SET_FILE

log = logging.getLogger(__name__)
KERAS_METADATA = "training_metadata.json"  # BackupAndRestore's record of the epochs finished.
LIVE_BACKUP = "live"
SEED_STATES = "seed_states-{epoch}.npz"  # The dropout layers' random state after that many epochs ...
TRAIN_SECONDS = "train_seconds"  # ... and, under this key, the seconds spent training them (all runs together).
STOPPED = "stopped"  # Marks a backup kept on purpose (train.until_epoch): never cleaned up as a killed run's.


def scratch_root(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.parent / f".{model_path.stem}.resume"


def data_identity(*directories: str | Path) -> dict[str, Any]:
    """What identifies the data a run trains on, wherever its folders are: the small JSON files verbatim,
    each array by a hash of its bytes (a second or less for the arrays this project trains on)."""
    identity: dict[str, Any] = {}
    for position, directory in enumerate(map(Path, directories)):
        for path in sorted(directory.iterdir()) if directory.is_dir() else []:
            if path.name in (META_FILE, TRAINING_SET_FILE):
                identity[f"{position}/{path.name}"] = path.read_text()
            elif path.suffix == ".npy":
                with open(path, "rb") as handle:
                    identity[f"{position}/{path.name}"] = hashlib.file_digest(handle, "sha256").hexdigest()
    return identity


class TrainingBackup:
    """The scratch folder of one training run, keyed by what the run depends on: in ``shared_root``
    when given (every run there has its own key), else beside the model."""

    def __init__(self, model_path: str | Path, identity: dict[str, Any], shared_root: str | Path | None = None):
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.shared = shared_root is not None
        self.root = Path(shared_root) if self.shared else scratch_root(model_path)
        self.dir = self.root / key

    @property
    def epochs_done(self) -> int:
        """Epochs a killed run finished (0 when there is nothing to resume). Keras writes its record in
        place: a kill while it writes leaves it unreadable, and then the run starts over."""
        metadata = self.dir / KERAS_METADATA
        if not metadata.is_file():
            return 0
        try:
            return int(read_json(metadata)["epoch"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s: unreadable (killed while written); training starts over", metadata)
            shutil.rmtree(self.dir, ignore_errors=True)
            return 0

    @property
    def seconds_done(self) -> float | None:
        """Seconds the killed runs spent training the epochs a run continues after (0 with nothing to
        resume); None when the backup does not say (made by an older refinelab)."""
        if not self.epochs_done:
            return 0.0
        saved = self.dir / SEED_STATES.format(epoch=self.epochs_done)
        if not saved.is_file():
            return None
        with np.load(saved) as states:
            return float(states[TRAIN_SECONDS]) if TRAIN_SECONDS in states else None

    def restore_live_logs(self, live_dir: str | Path) -> bool:
        """Put the killed run's dvclive logs back, cut to the epochs whose weights were saved; True if
        there were any (dvclive then resumes its steps)."""
        saved = self.dir / LIVE_BACKUP
        done = self.epochs_done
        if not done or not saved.is_dir():
            return False
        live_dir = Path(live_dir)
        shutil.rmtree(live_dir, ignore_errors=True)
        shutil.copytree(saved, live_dir)
        for series in live_dir.rglob("*.tsv"):
            with open(series, newline="") as handle:
                rows = list(csv.reader(handle, delimiter="\t"))
            step = rows[0].index("step") if rows else 0
            kept = rows[:1] + [row for row in rows[1:] if int(row[step]) <= done]
            with open(series, "w", newline="") as handle:
                csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(kept)
        summary = live_dir / "metrics.json"
        write_json(summary, {**(read_json(summary) if summary.is_file() else {}), "step": done})
        log.info("resuming after epoch %d of a killed run (backup %s)", done, self.dir)
        return True

    def callbacks(self, live_dir: str | Path) -> list[keras.callbacks.Callback]:
        """After dvclive's callback: save its logs and the random state, then the weights."""
        return [
            EpochStateBackup(live_dir, self),
            EpochBackupAndRestore(str(self.dir)),
        ]

    def keep_stopped(self) -> None:
        """Training stopped on purpose: keep this backup for the run that continues it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / STOPPED).touch()

    def discard(self) -> None:
        """Training finished: remove this run's backup, and beside the model the killed runs' ones too
        (other params'); in a shared folder other runs may still continue from theirs."""
        leftovers = [] if self.shared or not self.root.is_dir() else [
            folder for folder in self.root.iterdir() if not (folder / STOPPED).exists()]
        for folder in {self.dir, *leftovers}:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # Only if nothing is left in it.


class EpochBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` saving at every epoch's end, into two checkpoints (a kill while the
    latest is written falls back to the one before), declared safe for Keras' asynchronous batch callbacks.

    Undeclared, its batch hook (which does nothing when saving per epoch) made Keras read every step's
    loss in the training thread: on JAX, a wait for the device after each step, so a GPU idled while the
    next batch was read and sent (TensorFlow's backend never dispatches them asynchronously)."""

    async_safe = True

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)


def seed_state_variables(model: keras.Model) -> dict[str, Any]:
    """The random-state variables of the model's layers (Dropout's), by path: not in its weights file."""
    return {variable.path: variable for variable in model.variables if variable.path.endswith("seed_generator_state")}


class EpochStateBackup(keras.callbacks.Callback):
    """Saves, at the end of every epoch, dvclive's folder, the layers' random state and the seconds trained
    so far into the backup; restores the random state when training starts from a backup."""

    def __init__(self, live_dir: str | Path, backup: TrainingBackup):
        super().__init__()
        self.live_dir, self.backup = Path(live_dir), backup

    def on_train_begin(self, logs=None):
        self.started, self.seconds_before = time.perf_counter(), self.backup.seconds_done or 0.0
        saved = self.backup.dir / SEED_STATES.format(epoch=self.backup.epochs_done)
        if self.backup.epochs_done and saved.is_file():
            with np.load(saved) as states:
                for path, variable in seed_state_variables(self.model).items():
                    if path in states:
                        variable.assign(states[path])

    def on_epoch_end(self, epoch, logs=None):
        folder = self.backup.dir
        folder.mkdir(parents=True, exist_ok=True)
        states = {path: keras.ops.convert_to_numpy(variable) for path, variable in seed_state_variables(self.model).items()}
        states[TRAIN_SECONDS] = np.float64(self.seconds_before + time.perf_counter() - self.started)
        np.savez(folder / SEED_STATES.format(epoch=epoch + 1), **states)
        (folder / SEED_STATES.format(epoch=epoch - 1)).unlink(missing_ok=True)  # Keep this epoch's and the last.
        staging = folder / f"{LIVE_BACKUP}.new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.live_dir, staging)
        shutil.rmtree(folder / LIVE_BACKUP, ignore_errors=True)
        staging.rename(folder / LIVE_BACKUP)
