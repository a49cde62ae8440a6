import os
import stat

import pytest

from refinelab.fileio import atomic_dir, atomic_path, write_json


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
