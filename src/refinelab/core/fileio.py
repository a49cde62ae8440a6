"""Atomic writes: a file or folder appears complete under its final name, or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refinelab.core.environment import CACHE_ENV
from refinelab.core.errors import DataError


def cache_root() -> Path:
    """Where refinelab keeps what outlives a run: downloaded and extracted datasets, JAX's compiled
    programs (``$REFINELAB_CACHE`` overrides)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "refinelab")


def _default_mode(base: int) -> int:
    """``base`` less the process umask: what open()/mkdir() would have given (mkstemp/mkdtemp use 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


# Temporary names carry the writer's process id, so a later run can tell a killed run's leftovers
# (process gone: removed) from another live writer's work in progress (left alone). .gitignore and
# .dvcignore ignore these names, so a leftover can never be committed or hashed into an output.
TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[^/]*$")


def temporary_prefix(name: str) -> str:
    return f".{name}.tmp-{os.getpid()}-"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's live process.
        return True
    return True


def remove_leftovers(folder: Path, name: str) -> None:
    """Delete the temporary files and folders of ``name`` that killed processes left in ``folder``."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        match = TEMPORARY_NAME.match(path.name)
        if match and match["name"] == name and not process_alive(int(match["pid"])):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place only on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(destination.parent, destination.stem)
    # The temporary name keeps the real suffix: some writers (Keras) insist on it.
    handle, temporary = tempfile.mkstemp(
        prefix=temporary_prefix(destination.stem), suffix=destination.suffix, dir=destination.parent
    )
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, _default_mode(0o666))
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(destination: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``destination`` whole.

    The old folder is renamed aside before the new one is renamed in, and only then deleted: at every
    moment ``destination`` is either the complete old folder or the complete new one. With
    ``keep_existing`` a ``destination`` that exists when the work finishes (another process finished
    first: a shared cache) is left alone and the new folder is discarded.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(destination.parent, destination.name)
    temporary = Path(tempfile.mkdtemp(prefix=temporary_prefix(destination.name), dir=destination.parent))
    try:
        yield temporary
        os.chmod(temporary, _default_mode(0o777))
        if keep_existing:
            try:
                # rename() refuses to replace a non-empty folder, so a finished copy is never disturbed.
                if not destination.exists():
                    os.rename(temporary, destination)
            except OSError:
                if not destination.is_dir():
                    raise
            return
        aside = None
        if destination.exists():
            # An empty placeholder with a unique name; rename() may replace an empty folder.
            aside = Path(tempfile.mkdtemp(prefix=temporary_prefix(destination.name), suffix="-old", dir=destination.parent))
            try:
                os.replace(destination, aside)
            except OSError:
                aside.rmdir()
                raise
        try:
            os.replace(temporary, destination)
        except OSError:
            if aside is not None and not destination.exists():
                os.replace(aside, destination)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def ensure_writable(*paths: str | Path) -> None:
    """Check, before any long work, that each path's folder can be created and written in: a
    read-only ``models/`` found after an hour of training loses the hour."""
    for folder in {Path(path).parent for path in paths}:
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{folder}: cannot write there (a file, not a folder)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise DataError(f"{folder}: cannot write there ({exc.strerror or exc}); fix its permissions or free space") from None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read 1 MiB at a time."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
