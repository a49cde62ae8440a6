"""Resume training after a kill: the same command continues after the last finished epoch.

At the end of every epoch :class:`EpochBackup` saves the weights with the optimizer state, the random
state of the model's dropout layers, and dvclive's logs (DVC deletes the stage's outputs,
``metrics/train`` included, before it runs the stage again) into a folder named after the epoch, which
appears only once complete (written as ``.partial``, then renamed); the two latest are kept. A resumed
run reads the latest back in full first: one that cannot be read (a damaged disk, or a full one that
let a write through short) is discarded with a warning and its epoch trained again from the one before.
The backup lives in a scratch
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
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from refinelab.core.fileio import read_json, write_json
from refinelab.data.store import META_FILE, TRAINING_SET_FILE

log = logging.getLogger(__name__)
EPOCH_FOLDER = "epoch-{epoch}"  # The backup after that many epochs, complete ...
PARTIAL = ".partial"  # ... unlike one whose name holds this (then the writing process's id).
KEPT_EPOCHS = 2  # The latest and the one before, for when the latest cannot be read.
WEIGHTS = "model.weights.h5"  # Model.save_weights (which wants this ending): weights and optimizer state.
LIVE_BACKUP = "live"
SEED_STATES = "seed_states.npz"  # The dropout layers' random state ...
TRAIN_SECONDS = "train_seconds"  # ... and, under this key, the seconds spent training them (all runs together).
# Errors reading a backup that say nothing of it: a forbidden folder, too many open files, a full disk.
NOT_DAMAGE = {errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.ENOSPC}
# Free space a backup needs beyond its predecessor's size: a write that meets a full disk inside HDF5
# can crash the process instead of raising.
SPARE_BYTES = 16 << 20
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

    def epoch_folders(self) -> list[tuple[int, Path]]:
        """The complete epoch backups, latest first."""
        found = []
        for folder in self.dir.glob(EPOCH_FOLDER.format(epoch="*")) if self.dir.is_dir() else []:
            number = folder.name.removeprefix(EPOCH_FOLDER.format(epoch=""))
            if number.isdigit():
                found.append((int(number), folder))
        return sorted(found, reverse=True)

    @functools.cached_property
    def latest(self) -> tuple[int, Path | None]:
        """(epochs done, their backup folder): the latest backup that reads back in full; (0, None) when
        there is none. A damaged one is deleted, with a warning, and the one before is tried."""
        for epoch, folder in self.epoch_folders():
            problem = unreadable(folder)
            if problem is None:
                return epoch, folder
            log.warning("%s: the backup after epoch %d is damaged (%s): discarded, epoch %d is trained again",
                        folder, epoch, problem, epoch)
            shutil.rmtree(folder, ignore_errors=True)
        return 0, None

    @property
    def epochs_done(self) -> int:
        """Epochs a killed run finished (0 when there is nothing to resume)."""
        return self.latest[0]

    @property
    def seconds_done(self) -> float | None:
        """Seconds the killed runs spent training the epochs a run continues after (0 with nothing to
        resume)."""
        epoch, folder = self.latest
        if folder is None:
            return 0.0
        with np.load(folder / SEED_STATES) as states:
            return float(states[TRAIN_SECONDS])

    def restore_live_logs(self, live_dir: str | Path) -> bool:
        """Put the killed run's dvclive logs back, cut to the epochs whose weights were saved; True if
        there were any (dvclive then resumes its steps)."""
        done, folder = self.latest
        if folder is None:
            return False
        saved = folder / LIVE_BACKUP
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
        """After dvclive's callback (its logs of the epoch are in the backup)."""
        return [EpochBackup(live_dir, self)]

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


def unreadable(folder: Path) -> str | None:
    """Why the epoch backup in ``folder`` cannot be used (every array of it is read), or None."""
    import h5py

    def read(_, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(folder / WEIGHTS, "r") as handle:
            handle.visititems(read)
        with np.load(folder / SEED_STATES) as states:  # No pickles: np.load refuses them by default.
            for key in states.files:
                states[key]
        if not (folder / LIVE_BACKUP).is_dir():
            return f"no {LIVE_BACKUP}/"
    except OSError as exc:
        if exc.errno in NOT_DAMAGE:  # The machine's fault, not the backup's: never delete good epochs for it.
            raise
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever else a damaged file raises, the backup is unusable.
        return f"{type(exc).__name__}: {exc}"
    return None


def seed_state_variables(model: keras.Model) -> dict[str, Any]:
    """The random-state variables of the model's layers (Dropout's), by path: not in its weights file."""
    return {variable.path: variable for variable in model.variables if variable.path.endswith("seed_generator_state")}


def check_free_space(folder: Path, model: keras.Model, previous: Path | None) -> None:
    """Raise ENOSPC before writing a backup the disk has no room for (HDF5 meeting a full disk mid-write
    can crash the process; this way the stage ends with one line naming the folder). The room needed: the
    last backup's size, or before the first the model's and its optimizer's variables."""
    if previous is not None:
        size = sum(path.stat().st_size for path in previous.rglob("*") if path.is_file())
    else:
        variables = model.weights + (model.optimizer.variables if model.optimizer is not None else [])
        size = sum(int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize for variable in variables)
    needed = SPARE_BYTES + size
    if shutil.disk_usage(folder).free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device for the epoch backup (about {needed >> 20} MB)", str(folder))


class EpochBackup(keras.callbacks.Callback):
    """At every epoch's end, writes the epoch's backup folder (see the module); when training starts
    from a backup, restores the weights, the optimizer state and the random state, and the epoch count.

    Declared safe for Keras' asynchronous batch callbacks (it has no batch hook): undeclared, Keras read
    every step's loss in the training thread, on JAX a wait for the device after each step."""

    async_safe = True

    def __init__(self, live_dir: str | Path, backup: TrainingBackup):
        super().__init__()
        self.live_dir, self.backup = Path(live_dir), backup

    def on_train_begin(self, logs=None):
        self.started, self.seconds_before = time.perf_counter(), self.backup.seconds_done or 0.0
        epoch, folder = self.backup.latest
        if folder is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # Its variables exist to be loaded.
        self.model.load_weights(str(folder / WEIGHTS))
        with np.load(folder / SEED_STATES) as states:
            for path, variable in seed_state_variables(self.model).items():
                if path in states:
                    variable.assign(states[path])
        self.model._initial_epoch = epoch  # What Keras' BackupAndRestore sets: fit continues from there.

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        self.backup.dir.mkdir(parents=True, exist_ok=True)
        check_free_space(self.backup.dir, self.model, next((folder for _, folder in self.backup.epoch_folders()), None))
        final = self.backup.dir / EPOCH_FOLDER.format(epoch=done)
        # This process's own: another run with the same key (a shared REFINELAB_RESUME_DIR) has its own.
        staging = final.with_name(f"{final.name}{PARTIAL}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        self.model.save_weights(str(staging / WEIGHTS))
        states = {path: keras.ops.convert_to_numpy(variable) for path, variable in seed_state_variables(self.model).items()}
        states[TRAIN_SECONDS] = np.float64(self.seconds_before + time.perf_counter() - self.started)
        np.savez(staging / SEED_STATES, **states)
        shutil.copytree(self.live_dir, staging / LIVE_BACKUP)
        try:
            staging.rename(final)
        except OSError:  # Another run with the same key wrote this epoch first: the same state, keep theirs.
            shutil.rmtree(staging, ignore_errors=True)
        for _, older in self.backup.epoch_folders()[KEPT_EPOCHS:]:
            shutil.rmtree(older, ignore_errors=True)
        self.backup.__dict__.pop("latest", None)  # Read again if asked.
