"""The defaults on a small real dataset (scikit-learn's 8x8 digits, 1,797 images, always offline), run
through the real stage scripts: the default model learns, the health check stays quiet, and a stage
pays only for what it uses."""

import copy
import json
import shlex
import subprocess
import sys

import pytest
import yaml

from refinelab.params.files import read_config, write_config

from helpers import ROOT

STAGES = ("check_params", "prepare", "augment", "features", "train", "evaluate", "plot")
# Runs a stage script as `python stages/<name>.py` would, then says whether it imported TensorFlow.
RUN_AND_REPORT_IMPORTS = (
    "import runpy, sys; script = sys.argv[1]; sys.argv = sys.argv[1:]; runpy.run_path(script, run_name='__main__'); "
    "print('IMPORTED_TENSORFLOW=' + str('tensorflow' in sys.modules))"
)


def run_stage(name: str, workdir):
    """The stage's command from dvc.yaml (its script from this checkout), through the import reporter."""
    _, script, *arguments = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]["cmd"])
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_IMPORTS, str(ROOT / script), *arguments],
        cwd=workdir, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """Every stage with the real params.yaml, only the dataset changed: (folder, stage outputs)."""
    workdir = tmp_path_factory.mktemp("digits")
    raw = read_config(ROOT / "params.yaml")
    raw["dataset"] = "digits"
    write_config(workdir, raw)
    return workdir, {name: run_stage(name, workdir) for name in STAGES}


def read(workdir, path):
    return json.loads((workdir / path).read_text())


def test_the_default_model_learns_a_small_dataset_and_the_health_check_is_quiet(digits_run):
    workdir, outputs = digits_run
    evaluation = read(workdir, "metrics/evaluate.json")
    # 10 classes: chance is 0.1. Before batch-norm statistics were re-estimated this scored near chance.
    assert evaluation["accuracy"] >= 0.8, evaluation
    assert evaluation["warnings"] == 0 and read(workdir, "metrics/test_details.json")["health"] == []
    training = read(workdir, "metrics/train/metrics.json")
    assert (training["health_warnings"], training["health"]) == (0, "ok")
    assert training["eval"]["accuracy"] >= 0.8  # The saved model's validation accuracy.
    resolved = read(workdir, "models/params.json")
    train_images = resolved["training"]["train_images"]
    assert resolved["batch_size"] == 16 and resolved["training"]["batch_size_param"] == "auto"  # 1,293 images.
    assert resolved["training"]["steps_per_epoch"] == -(-train_images // 16) >= 50
    assert resolved["training"]["batch_norm_recalibration_images"] == train_images
    assert "batch_size 16 (auto)" in outputs["train"].stderr
    assert "health check (evaluate): no warnings" in outputs["evaluate"].stderr


def test_only_the_stages_that_run_a_model_import_tensorflow(digits_run):
    workdir, outputs = digits_run
    imported = {name: "IMPORTED_TENSORFLOW=True" in result.stdout for name, result in outputs.items()}
    imported.pop("check_params")  # It builds the architecture once per image size (JAX's NumPy backend if present).
    assert imported == {"prepare": False, "augment": False, "features": False, "train": True, "evaluate": True,
                        "plot": False}
    # Then it reads what it found from the cache: an experiment on other params imports no Keras.
    assert "IMPORTED_TENSORFLOW=False" in run_stage("check_params", workdir).stdout
    # model: auto on digits is the CNN: no frozen base, nothing for the features stage to compute.
    assert read(workdir, "data/features/features.json") == {"extractor": None, "why": "cnn_bn has no pretrained base"}


def test_without_augmentation_nothing_is_copied(digits_run):
    workdir, _ = digits_run
    assert sorted(path.name for path in (workdir / "data/augmented").iterdir()) == ["training_set.json"]
    assert read(workdir, "data/augmented/training_set.json") == {"source": "prepared", "images": 1293}
    assert sorted(path.name for path in (workdir / "metrics/augment").iterdir()) == ["no_augmentation.png"]


def test_committed_figures_are_small(digits_run):
    workdir, _ = digits_run
    sizes = {str(path.relative_to(workdir)): path.stat().st_size for path in (workdir / "metrics").rglob("*.png")}
    assert len(sizes) == 8, sizes  # 3 sample grids, the augment note, 4 result figures.
    assert max(sizes.values()) <= 300_000 and sum(sizes.values()) <= 1_500_000, sizes


def test_a_broken_run_gets_the_health_warning(digits_run, tmp_path, caplog):
    """A learning rate of 10 wrecks the model: the train stage says so, in its log and its metrics."""
    from refinelab.params.files import load_params
    from refinelab.train.stage import train

    workdir, _ = digits_run
    broken = copy.deepcopy(read_config(workdir / "params.yaml"))
    broken.update(learning_rate=10, epochs=2)
    write_config(tmp_path, broken)
    with caplog.at_level("WARNING", logger="refinelab.evaluate.health"):
        train(load_params(tmp_path / "params.yaml"), workdir / "data/augmented", workdir / "data/prepared",
              tmp_path / "model.keras", tmp_path / "live")
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["health_warnings"] >= 1 and summary["health"] != "ok"
    assert any(record.getMessage().startswith("health check (train):") for record in caplog.records)
