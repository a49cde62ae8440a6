import fnmatch
import os
import shutil
import stat
from pathlib import Path

import pytest

from refinelab.core import fileio
from refinelab.core.fileio import atomic_dir, atomic_path, write_json


def test_atomic_path_writes_whole_files_with_normal_permissions(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            assert temporary.suffix == ".keras"
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_atomic_dir_replaces_the_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "prepared"
    with atomic_dir(target) as staging:
        (staging / "a.npy").write_text("1")
    assert sorted(p.name for p in target.iterdir()) == ["a.npy"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "b.npy").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_atomic_dir_moves_the_old_folder_aside_before_deleting_it(tmp_path, monkeypatch):
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "old.npy").write_text("1")
    seen = []
    rmtree = fileio.shutil.rmtree

    def watching_rmtree(path, *args, **kwargs):
        # Whatever is deleted, the destination is a complete folder (old or new) at that moment.
        seen.append((Path(path), sorted(p.name for p in target.iterdir()) if target.exists() else None))
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(fileio.shutil, "rmtree", watching_rmtree)
    with atomic_dir(target) as staging:
        (staging / "new.npy").write_text("2")
    assert seen and all(path != target and contents in (["old.npy"], ["new.npy"]) for path, contents in seen)
    assert sorted(p.name for p in target.iterdir()) == ["new.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_atomic_dir_keep_existing_leaves_a_folder_another_process_finished_first(tmp_path):
    target = tmp_path / "extracted"
    with atomic_dir(target, keep_existing=True) as staging:  # Nothing there yet: created as usual.
        (staging / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    inode = target.stat().st_ino
    with atomic_dir(target, keep_existing=True) as staging:
        (staging / "a.txt").write_text("second")
    assert target.stat().st_ino == inode and (target / "a.txt").read_text() == "first"
    shutil.rmtree(target)
    with atomic_dir(target, keep_existing=True) as staging:
        (staging / "a.txt").write_text("late")
        target.mkdir()  # Another process finishes while this one is still writing.
        (target / "a.txt").write_text("early")
    assert (target / "a.txt").read_text() == "early"
    assert [p.name for p in tmp_path.iterdir()] == ["extracted"]


def test_a_killed_runs_leftovers_are_removed_by_the_next_write_and_a_live_writers_are_not(tmp_path):
    import subprocess
    import sys

    from refinelab.core.fileio import atomic_dir, atomic_path

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(finished.stdout), os.getppid()
    leftovers = {
        "dir": tmp_path / f".prepared.tmp-{dead}-abc123", "file": tmp_path / f".samples.tmp-{dead}-xyz.png",
    }
    leftovers["dir"].mkdir()
    (leftovers["dir"] / "train_images.npy").write_bytes(b"half")
    leftovers["file"].write_bytes(b"half a png")
    working = tmp_path / f".prepared.tmp-{alive}-def456"  # Another process, still writing.
    working.mkdir()

    with atomic_dir(tmp_path / "prepared") as staging:
        (staging / "meta.json").write_text("{}")
    with atomic_path(tmp_path / "samples.png") as temporary:
        temporary.write_bytes(b"png")

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["prepared", "samples.png", working.name])


def test_temporary_names_are_ignored_by_git_and_dvc():
    from refinelab.core.fileio import temporary_prefix

    root = Path(__file__).resolve().parents[1]
    name = temporary_prefix("prepared") + "abc"
    for ignore_file in (".gitignore", ".dvcignore"):
        patterns = [line for line in (root / ignore_file).read_text().splitlines() if line and not line.startswith("#")]
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), ignore_file
