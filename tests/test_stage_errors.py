"""What a stage says when the machine, not the code, is at fault: one line, exit status 2, before the long work."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from refinelab.core.errors import DataError, ParamsError
from refinelab.core.fileio import ensure_writable
from refinelab.core.runner import run_stage
from refinelab.params.guard import stage_params

from helpers import ROOT, run, write_prepared

CONFIG_FILES = ("params.yaml", "architectures.yaml", "datasets.yaml")


@pytest.fixture(autouse=True)
def outside_the_project(tmp_path, monkeypatch):
    """Stages run here in-process: not in the project's folder, whose workspace lock another test worker
    may hold."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_full_disk_or_forbidden_folder_is_one_line(code, caplog):
    def main():
        raise OSError(code, "what the system said", "models/model.keras")

    with pytest.raises(SystemExit) as stopped:
        run_stage(main)
    assert stopped.value.code == 2
    (record,) = [record for record in caplog.records if record.levelname == "ERROR"]
    assert record.getMessage() == "models/model.keras: what the system said"


def test_ctrl_c_is_one_line_saying_what_running_again_does(caplog):
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stopped:
        run_stage(main)
    assert stopped.value.code == 130
    (record,) = [record for record in caplog.records if record.levelname == "ERROR"]
    assert record.getMessage().startswith("interrupted; the same command runs it again: a training kept in a backup")


def test_other_os_errors_are_bugs_and_keep_their_traceback():
    def main():
        raise OSError(errno.EBADF, "bad file descriptor")

    with pytest.raises(OSError, match="bad file descriptor"):
        run_stage(main)


def test_an_unwritable_output_folder_is_named(tmp_path):
    (tmp_path / "models").write_text("a file where the folder should be")
    with pytest.raises(DataError, match=f"{tmp_path / 'models'}: cannot write there"):
        ensure_writable(tmp_path / "models" / "model.keras")
    ensure_writable(tmp_path / "fresh" / "model.keras")  # Created when missing.
    assert (tmp_path / "fresh").is_dir()


def test_the_train_stage_checks_its_outputs_before_training(tmp_path):
    prepared = write_prepared(tmp_path / "prepared", (8, 8, 1), 2)
    (tmp_path / "models").write_text("not a folder")
    for name in CONFIG_FILES:
        (tmp_path / name).write_text((ROOT / name).read_text())
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "train.py"), str(prepared), str(prepared), "models/model.keras",
         "metrics/train", "metrics/model.json", "metrics/timing.json"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "ERROR refinelab: models: cannot write there" in result.stderr
    assert "Traceback" not in result.stderr and "Epoch" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "edited, edit, fails",
    [
        ("params.yaml", "dropout: 0.45", True),
        ("architectures.yaml", "cnn_bn: {type: cnn, filters: [8]}", True),  # The preset trained.
        ("params.yaml", "dataset: digits", False),  # Prepare's, not train's.
        ("datasets.yaml", "h5: {}", False),  # Prepare's, not train's.
    ],
)
def test_a_stage_fails_if_its_params_change_while_it_runs(tmp_path, caplog, edited, edit, fails):
    """DVC records params.yaml and the stage's files after the stage: an edit meanwhile would go into
    dvc.lock beside a model made with the old values."""
    for name in CONFIG_FILES:
        (tmp_path / name).write_text((ROOT / name).read_text())
    params_file, edited_file = tmp_path / "params.yaml", tmp_path / edited

    def main():
        with stage_params(params_file, "train") as params:
            assert params.dropout == 0.3
            raw = yaml.safe_load(edited_file.read_text())
            raw.update(yaml.safe_load(edit))
            edited_file.write_text(yaml.safe_dump(raw))  # As an editor would, mid-training.

    if not fails:
        run_stage(main)
        return
    with pytest.raises(SystemExit) as stopped:
        run_stage(main)
    assert stopped.value.code == 2
    (record,) = [record for record in caplog.records if record.levelname == "ERROR"]
    changed = "dropout" if edited == "params.yaml" else str(edited_file)
    assert f"params changed while the train stage ran ({changed})" in record.getMessage()
    assert "dvc exp run --queue" in record.getMessage()


def test_debug_keeps_the_traceback_of_a_user_error(monkeypatch):
    def main():
        raise ParamsError("epochs: must be at least 1")

    monkeypatch.setattr(sys, "argv", ["stages/train.py", "--debug"])
    with pytest.raises(ParamsError, match="epochs"):
        run_stage(main)
    assert sys.argv == ["stages/train.py"]  # The stage's own parser never sees it.


# A pipeline whose stage runs until the test lets it finish.
WAITING_STAGE = """
import pathlib, time
from refinelab.core.runner import run_stage

def main():
    pathlib.Path("started").touch()
    while not pathlib.Path("finish").exists():
        time.sleep(0.1)
    pathlib.Path("out.txt").write_text(pathlib.Path("params.yaml").read_text())

run_stage(main)
"""


def test_a_second_workspace_run_is_refused_before_it_writes_its_values(tmp_path):
    """DVC writes `-S` values into params.yaml before it finds the running stage's locks: the second
    run must be refused before that, pointing to the queue, which still takes values meanwhile."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run(["git", "init", "-q"], tmp_path)
    run(["git", "config", "user.email", "test@example.com"], tmp_path)
    run(["git", "config", "user.name", "refinelab tests"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path, env)
    (tmp_path / "stage.py").write_text(WAITING_STAGE)
    (tmp_path / "params.yaml").write_text("dropout: 0.3\nepochs: 4\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python stage.py\n    params: [dropout, epochs]\n    outs: [out.txt]\n")
    (tmp_path / ".gitignore").write_text("started\nfinish\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "pipeline"], tmp_path)

    first = subprocess.Popen(["dvc", "exp", "run", "-S", "epochs=5"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never started its stage"
            time.sleep(0.1)
        second = run(["dvc", "exp", "run", "-S", "dropout=0.45"], tmp_path, env, check=False)
        assert second.returncode != 0
        assert "dvc exp run --queue" in second.stdout + second.stderr
        assert (tmp_path / "params.yaml").read_text() == "dropout: 0.3\nepochs: 5\n"
        run(["dvc", "exp", "run", "--queue", "-S", "dropout=0.45"], tmp_path, env)
    finally:
        (tmp_path / "finish").touch()
        output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    assert (tmp_path / "out.txt").read_text() == "dropout: 0.3\nepochs: 5\n"
    assert "dropout: 0.3" in (tmp_path / "dvc.lock").read_text()
    queued = run(["dvc", "queue", "status"], tmp_path, env).stdout
    assert "Queued" in queued
