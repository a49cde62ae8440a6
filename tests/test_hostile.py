"""The hostile-user suite: what a careless user, a hostile one or a faulty machine does, each either working
or failing in one line naming the culprit, with nothing silently wrong and nothing stale recorded.

One test per case found by trying refinelab that way (README, "Reliability"); cheap: tiny images, no
training unless the case is about training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from refinelab.core.errors import DataError
from refinelab.params.schema import parse_params
from refinelab.prepare.stage import prepare


def write_image(path: Path, value: int, size=(12, 12), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).convert(mode).save(path)
    return path


def truncated(path: Path) -> Path:
    write_image(path, 99, size=(40, 40))
    path.write_bytes(path.read_bytes()[:60])
    return path


def prepare_folder(tmp_path, raw_params, root, **data):
    params = dict(raw_params, dataset="image_folder", image_folder={"path": str(root)})
    params["data"] = dict(raw_params["data"], limit=0, **data)
    meta = prepare(parse_params(params), tmp_path / "prepared", tmp_path / "data.json")
    return meta, json.loads((tmp_path / "data.json").read_text())


# --- folders of images --------------------------------------------------------------------------------


def test_bad_files_are_left_out_before_the_split_so_every_split_keeps_every_class(tmp_path, raw_params):
    """17 unreadable files of 30: dropping them after the split left validation without a bee."""
    root = tmp_path / "photos"
    for index in range(15):
        write_image(root / "ant" / f"{index}.png", 40)
    for index in range(13):
        truncated(root / "bee" / f"{index}.jpg")
    for index in range(13, 17):
        write_image(root / "bee" / f"{index}.png", 200)
    truncated(root / "ant" / "99.jpg")
    meta, report = prepare_folder(tmp_path, raw_params, root, on_bad_image="skip")
    assert report["bad_images"] == 14
    for split in ("train", "validation", "test"):
        assert report["splits"][split]["per_class"]["bee"] >= 1, split


def test_a_split_left_empty_by_bad_files_stops_prepare_naming_it(tmp_path, raw_params):
    root = tmp_path / "photos"
    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(root / "train" / name / f"{index}.png", value)
        truncated(root / "valid" / name / "0.jpg")
        write_image(root / "test" / name / "0.png", value)
    with pytest.raises(DataError, match=r"^the validation split has no images \(2 unreadable image files were left out\)"):
        prepare_folder(tmp_path, raw_params, root, on_bad_image="skip")
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "data.json").exists()


def test_images_in_sub_folders_of_a_class_folder_are_the_class_s(tmp_path, raw_params):
    root = tmp_path / "photos"
    for index in range(5):
        write_image(root / "ant" / f"{index}.png", 40)
        write_image(root / "bee" / f"{index}.png", 200)
        write_image(root / "bee" / "2019" / "june" / f"{index}.png", 200)
    _, report = prepare_folder(tmp_path, raw_params, root)
    assert sum(split["per_class"]["bee"] for split in report["splits"].values()) == 10
    assert report["source"]["images_in_subfolders"] == 5


def test_one_colour_image_anywhere_makes_the_dataset_colour(tmp_path, raw_params):
    """The colour mode was decided from the training split: a colour image that landed in test went grey."""
    root = tmp_path / "photos"
    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(root / "train" / name / f"{index}.png", value, mode="L")
            write_image(root / "test" / name / f"{index}.png", value, mode="L")
    write_image(root / "test" / "bee" / "colour.png", 120)
    meta, _ = prepare_folder(tmp_path, raw_params, root)
    assert meta["preprocessing"]["color_mode"] == "rgb"


def test_broken_and_circular_links_are_left_out_and_listed(tmp_path, raw_params):
    root = tmp_path / "photos"
    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(root / name / f"{index}.png", value)
    (root / "ant" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "bee" / "loop.jpg").symlink_to(root / "bee" / "loop.jpg")
    (root / "bee" / "again").symlink_to(root / "bee")  # A folder link back up: read once.
    linked = write_image(tmp_path / "elsewhere" / "linked.png", 200)
    (root / "bee" / "linked.png").symlink_to(linked)  # A link to a photo is followed.
    for on_bad_image in ("fail", "skip"):
        _, report = prepare_folder(tmp_path / on_bad_image, raw_params, root, on_bad_image=on_bad_image)
        reasons = {Path(entry["file"]).name: entry["reason"] for entry in report["skipped"]}
        assert reasons["gone.jpg"].startswith("a link that leads nowhere")
        assert reasons["loop.jpg"].startswith("a link that leads nowhere")
        assert reasons["again"] == "a link to a folder already read, or above it"
        assert sum(split["per_class"]["bee"] for split in report["splits"].values()) == 7


def test_links_never_put_one_image_in_two_classes_or_splits(tmp_path, raw_params):
    """A link to the dataset's root, to another class's folder or to another class's file would file the
    same image under two classes (and perhaps in both train and test)."""
    root = tmp_path / "photos"
    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(root / name / f"{index}.png", value)
    (root / "ant" / "up").symlink_to(root)
    (root / "ant" / "bees").symlink_to(root / "bee")
    (root / "ant" / "a-bee.png").symlink_to(root / "bee" / "0.png")
    _, report = prepare_folder(tmp_path, raw_params, root)
    reasons = {Path(entry["file"]).name: entry["reason"] for entry in report["skipped"]}
    assert reasons["up"] == "a link to a folder already read, or above it"
    assert reasons["bees"] == "a link to another folder of the dataset"
    assert reasons["a-bee.png"] == "a link to another folder of the dataset"
    assert sum(split["images"] for split in report["splits"].values()) == 12


def test_a_class_called_train_is_a_class(tmp_path, raw_params):
    root = tmp_path / "photos"
    for name, value in (("Train", 40), ("Bus", 200)):
        for index in range(6):
            write_image(root / name / f"{index}.png", value)
    _, report = prepare_folder(tmp_path, raw_params, root)
    assert set(report["splits"]["train"]["per_class"]) == {"Bus", "Train"}


def test_hidden_files_such_as_macos_metadata_are_skipped(tmp_path, raw_params):
    root = tmp_path / "photos"
    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(root / name / f"{index}.jpg", value)
            (root / name / f"._{index}.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / ".ipynb_checkpoints").mkdir()
    _, report = prepare_folder(tmp_path, raw_params, root)
    assert sum(entry["reason"] == "hidden" for entry in report["skipped"]) == 12 + 2
    assert set(report["splits"]["train"]["per_class"]) == {"ant", "bee"}


def test_capitalised_split_folders_are_split_folders(tmp_path, raw_params):
    root = tmp_path / "photos"
    for split in ("Train", "Valid", "Test"):
        for name, value in (("ant", 40), ("bee", 200)):
            for index in range(3):
                write_image(root / split / name / f"{index}.png", value)
    _, report = prepare_folder(tmp_path, raw_params, root)
    assert {split: data["images"] for split, data in report["splits"].items()} == {"train": 6, "validation": 6, "test": 6}


def test_a_float_tiff_in_0_to_1_is_not_a_black_image(tmp_path):
    from refinelab.prepare.images import open_image

    path = tmp_path / "float.tif"
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(path)
    assert np.asarray(open_image(path)).mean() == pytest.approx(128, abs=1)


def test_boolean_hdf5_images_are_black_and_white_not_black(tmp_path, raw_params):
    path = tmp_path / "signs.h5"
    images = np.zeros((12, 8, 8), bool)
    images[:, 2:6, 2:6] = True
    with h5py.File(path, "w") as handle:
        handle["train_set_x"] = images
        handle["train_set_y"] = np.arange(12) % 2
    params = dict(raw_params, dataset="h5", h5=dict(raw_params["h5"], train=str(path), test=None))
    params["data"] = dict(raw_params["data"], limit=0)
    prepare(parse_params(params), tmp_path / "prepared")
    from refinelab.data.store import load_split

    assert load_split(tmp_path / "prepared", "train").images.max() == 255


# --- params -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "1.0"])
def test_a_value_dvc_thinks_equal_is_still_checked(project_copy, project_env, raw_params, value):
    """`-S epochs=true` when epochs is 1: DVC compares params by value (True == 1) and ran nothing, recording
    an experiment whose params say `epochs: True`. check_params depends on the file too."""
    from helpers import commit_params, run

    commit_params(project_copy, dict(raw_params, epochs=1))
    run(["dvc", "repro", "check_params"], project_copy, env=project_env)
    run(["git", "add", "-A"], project_copy)
    run(["git", "commit", "-qm", "checked"], project_copy)
    result = run(["dvc", "exp", "run", "-S", f"epochs={value}", "check_params"], project_copy, env=project_env,
                 check=False)
    assert result.returncode != 0
    assert f"epochs: Input should be a valid integer (got {value})" in result.stdout + result.stderr


@pytest.mark.parametrize("text, message", [
    ("", "params.yaml: empty; it holds every param of the pipeline"),
    ("[model]: cnn_bn\n", 'params.yaml: ["model"]: a key must be a name, not a list or a number'),
    ("train: {1: 2}\n", "params.yaml: train.1: a key must be a name, not a list or a number"),
])
def test_params_files_a_yaml_reader_accepts_fail_in_one_line(tmp_path, text, message):
    import shutil
    import subprocess
    import sys

    from helpers import ROOT

    for name in ("architectures.yaml", "datasets.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "params.yaml").write_text(text)
    result = subprocess.run([sys.executable, str(ROOT / "stages/check_params.py"), "params.yaml", "a.json", "b.json"],
                            cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


# --- training backups ---------------------------------------------------------------------------------


def test_a_full_disk_stops_the_epoch_backup_before_it_is_written_and_keeps_the_last_one(tmp_path, monkeypatch):
    """HDF5 meeting a full disk mid-write printed "Exception ignored" tracebacks and crashed; the short backup
    then failed every later run with the same params until deleted by hand."""
    import errno
    import shutil

    import keras

    from refinelab.train.resume import TrainingBackup, unreadable

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    data = (np.zeros((8, 4), np.float32), np.zeros((8, 2), np.float32))
    (tmp_path / "live").mkdir()
    backup = TrainingBackup(tmp_path / "model.keras", {"params": 1})
    model.fit(*data, epochs=1, verbose=0, callbacks=backup.callbacks(tmp_path / "live"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(OSError) as error:
        model.fit(*data, initial_epoch=1, epochs=2, verbose=0, callbacks=backup.callbacks(tmp_path / "live"))
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(backup.dir)
    monkeypatch.undo()
    again = TrainingBackup(tmp_path / "model.keras", {"params": 1})
    assert again.epochs_done == 1 and unreadable(again.latest[1]) is None
    assert [path.name for path in backup.dir.iterdir()] == ["epoch-1"]  # Nothing half-written.


# --- files between stages -----------------------------------------------------------------------------


@pytest.mark.parametrize("damaged", ["probabilities.npy", "prepared/test_images.npy"])
@pytest.mark.parametrize("damage", ["truncated", "not numpy"])
def test_a_stage_run_on_a_damaged_npy_names_it_in_one_line(tmp_path, damaged, damage):
    """A stage script run by hand on a truncated .npy: a numpy ValueError traceback before."""
    import subprocess
    import sys

    from helpers import ROOT, write_prepared

    prepared = write_prepared(tmp_path / "prepared", (8, 8, 1), 3)
    np.save(tmp_path / "probabilities.npy", np.full((32, 3), 1 / 3, np.float32))
    target = tmp_path / damaged
    target.write_bytes(target.read_bytes()[:100] if damage == "truncated" else b"PK\x03\x04 a zip, not an array")
    (tmp_path / "live").mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/plot.py"), "live", str(prepared), "probabilities.npy", "figures"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{damaged}: not a readable array file" in result.stderr


# --- two runs at once -----------------------------------------------------------------------------------


def test_a_stage_that_finds_another_run_writing_the_workspace_stops_in_one_line(tmp_path):
    """Two `dvc exp run` 1-1.5 s apart: the first run's check_params met the second's lock with a LockError
    traceback."""
    import subprocess
    import sys

    from dvc.fs import localfs
    from dvc.rwlock import rwlock

    from helpers import ROOT

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    for name in ("params.yaml", "architectures.yaml", "datasets.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    locks = tmp_path / ".dvc" / "tmp" / "exps"
    locks.mkdir(parents=True, exist_ok=True)
    # What `dvc exp run` holds while it writes its -S values into params.yaml.
    with rwlock(str(locks), localfs, "dvc exp run -S dropout=0.5", [], ["refs/exps/stash"], hardlink=False):
        result = subprocess.run([sys.executable, str(ROOT / "stages/check_params.py"), "params.yaml",
                                 "checked.json", "spec.json"], cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "another `dvc exp run` is changing this workspace's params" in result.stderr
    assert not (tmp_path / "checked.json").exists()


# --- what check_params finds before DVC deletes the last results ----------------------------------------


def check_params_with(tmp_path, edit=None, env=None):
    import subprocess
    import sys

    from helpers import ROOT
    from refinelab.params.files import read_config, write_config

    raw = read_config(ROOT / "params.yaml")
    if edit:
        edit(raw)
    write_config(tmp_path, raw)
    return subprocess.run([sys.executable, str(ROOT / "stages/check_params.py"), "params.yaml", "a.json", "b.json"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})})


def test_the_thread_count_is_a_param_and_the_old_variable_is_refused(tmp_path):
    """REFINELAB_THREADS changed results (0.7417 with the default threads, 0.7300 with 1) while DVC saw the
    same params: the count is train.threads now, recorded with the results; the variable is an error."""
    result = check_params_with(tmp_path, env={"REFINELAB_THREADS": "1"})
    assert result.returncode == 2 and "REFINELAB_THREADS='1' is read no more" in result.stderr
    assert "-S train.threads=N" in result.stderr
    from refinelab.params.schema import parse_params
    from refinelab.params.files import read_config
    from helpers import ROOT

    raw = read_config(ROOT / "params.yaml")
    assert parse_params(raw).train.threads == "auto"
    raw["train"]["threads"] = 1
    assert parse_params(raw).resolved()["train"]["threads"] == 1  # In the run's record and the backup's key.
    for bad in (0, "two", True):
        raw["train"]["threads"] = bad
        with pytest.raises(Exception, match="train.threads"):
            parse_params(raw)


def test_a_missing_pretrained_model_is_found_by_check_params(tmp_path):
    def edit(raw):
        raw["model"] = "mine"
        raw["architectures"]["mine"] = {"type": "transfer", "weights": "pretrained/gone.keras", "dense": []}

    result = check_params_with(tmp_path, edit)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "mine: weights: pretrained/gone.keras: no such model file" in result.stderr


@pytest.mark.parametrize("model, size, message", [
    ("cnn", [8, 8], "cnn on 8x8 images: block3_conv1: a 3x3 convolution with padding: valid needs at least"),
    ("cnn", [768, 768], "cnn on 768x768 images would have 145 million parameters (at most 100 million)"),
])
def test_an_architecture_the_images_do_not_fit_is_found_by_check_params(tmp_path, model, size, message):
    def edit(raw):
        raw["model"] = model
        raw["data"]["image_size"] = size

    result = check_params_with(tmp_path, edit)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


# --- archives -------------------------------------------------------------------------------------------


def photo_archive(tmp_path) -> tuple[Path, str]:
    import hashlib
    import shutil

    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(tmp_path / "tree" / "photos" / name / f"{index}.png", value + index)
    packed = Path(shutil.make_archive(str(tmp_path / "photos"), "zip", tmp_path / "tree"))
    return packed, hashlib.sha256(packed.read_bytes()).hexdigest()


def test_files_deleted_from_an_extracted_archive_are_extracted_again(tmp_path, raw_params, monkeypatch, caplog):
    """The cache of a sha256-pinned archive was never checked again: files deleted from it went unused
    while metrics/data.json reported the verified archive's hash."""
    from refinelab.core.environment import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    packed, digest = photo_archive(tmp_path)
    params = dict(raw_params, dataset="image_folder", image_folder={"path": packed.as_uri(), "sha256": digest})
    params["data"] = dict(raw_params["data"], limit=0)
    prepare(parse_params(params), tmp_path / "one", tmp_path / "one.json")
    for path in list((tmp_path / "cache").rglob("bee/*.png"))[:3]:
        path.unlink()
    with caplog.at_level("WARNING"):
        prepare(parse_params(params), tmp_path / "two", tmp_path / "two.json")
    assert "changed since (or were never recorded): extracted again" in caplog.text
    report = json.loads((tmp_path / "two.json").read_text())
    assert sum(split["per_class"]["bee"] for split in report["splits"].values()) == 6


def test_a_decompression_bomb_is_refused_before_anything_is_written(tmp_path):
    import zipfile

    from refinelab.prepare.download import locate

    bomb = tmp_path / "photos.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("photos/ant/0.png", b"\0" * (120 << 20))  # 120 MB of zeros: about 120 KB packed.
    with pytest.raises(DataError, match=r"photos.zip: its \d+ KB would expand to 120 MB .* decompression bomb"):
        locate(str(bomb), cache_dir=tmp_path / "cache")
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))


def test_a_huge_image_is_named_in_the_warning(tmp_path, monkeypatch, caplog):
    """A 90-megapixel PNG gave PIL's DecompressionBombWarning, which names no file (PIL's limit is lowered
    here, so that a 12x12 image stands for it)."""
    import warnings

    from refinelab.prepare.images import open_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = write_image(tmp_path / "panorama.png", 90)
    with warnings.catch_warnings(), caplog.at_level("WARNING"):
        warnings.simplefilter("error")  # Nothing nameless escapes.
        open_image(path)
    assert f"{path}: 0 million pixels, decoded" in caplog.text


def test_prepared_images_the_disk_has_no_room_for_are_refused_before_decoding(tmp_path, raw_params, monkeypatch):
    import shutil

    root = tmp_path / "photos"
    for name, value in (("ant", 40), ("bee", 200)):
        for index in range(6):
            write_image(root / name / f"{index}.png", value)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 20, 10 << 20, 1000))
    with pytest.raises(DataError, match=r"the prepared images would take 20 MB and .* has 0 MB free"):
        prepare_folder(tmp_path, raw_params, root, image_size=[768, 768])
    assert not (tmp_path / "prepared").exists()


def test_params_written_between_two_stages_by_another_run_stop_the_next_stage(project_copy, project_env, raw_params):
    """The other form of two runs at once: the second `dvc exp run` wrote its values into params.yaml between
    two stages of the first (no stage holding the workspace lock), and the first trained on the mix. A stage
    standing for that second run between check_params and prepare edits params.yaml here."""
    import yaml

    from helpers import commit_params, run

    commit_params(project_copy, dict(raw_params, dataset="digits"))
    pipeline = yaml.safe_load((project_copy / "dvc.yaml").read_text())
    pipeline["stages"]["second_run"] = {
        "cmd": "python -c \"import pathlib; p = pathlib.Path('params.yaml'); "
               "p.write_text(p.read_text().replace('dropout: 0.3', 'dropout: 0.5')); "
               "pathlib.Path('second_run.txt').write_text('wrote dropout 0.5')\"",
        "deps": ["data/params_checked.json"], "outs": [{"second_run.txt": {"cache": False}}]}
    pipeline["stages"]["prepare"]["deps"].append("second_run.txt")
    (project_copy / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    assert "dropout: 0.3" in (project_copy / "params.yaml").read_text()
    result = run(["dvc", "repro", "prepare"], project_copy, env=project_env, check=False)
    assert result.returncode != 0
    assert "params.yaml changed after check_params validated it in this run" in result.stdout + result.stderr
    assert not (project_copy / "data/prepared").exists()
    # A later run validates the values it finds, and goes on.
    assert run(["dvc", "repro", "prepare"], project_copy, env=project_env, check=False).returncode == 0
