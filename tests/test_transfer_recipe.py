"""README's recipe through the real `dvc` commands: train a CNN, keep it in pretrained/, transfer it."""

import json
import shutil

import pytest

from helpers import commit_params, needs_fashion_mnist, run

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def test_pretrain_then_transfer_with_dvc(project_copy, project_env, tiny_raw_params):
    project = project_copy
    commit_params(project, tiny_raw_params)
    run(["dvc", "repro"], project, env=project_env)
    pretrained_size = json.loads((project / "metrics/model.json").read_text())

    # The recipe: keep the trained model under pretrained/ (a dependency of train), tracked by DVC.
    shutil.copyfile(project / "models/model.keras", project / "pretrained/cnn_fashion_mnist.keras")
    run(["dvc", "add", "pretrained/cnn_fashion_mnist.keras"], project, env=project_env)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pretrained CNN"], project)
    run(["dvc", "exp", "run", "-S", "model=transfer_from_fmnist", "--name", "transfer"], project, env=project_env)

    transferred = json.loads((project / "metrics/model.json").read_text())
    base = next(layer for layer in transferred["layers"] if layer["name"] == "base")
    assert base["trainable_params"] == 0 and base["params"] > 0  # freeze: all
    assert transferred["trainable_params"] < pretrained_size["trainable_params"]
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    assert 0.0 <= evaluation["accuracy"] <= 1.0
    # Replacing the pretrained model re-runs training: the folder is a dependency of the train stage.
    (project / "pretrained/cnn_fashion_mnist.keras").unlink()
    shutil.copyfile(project / "models/model.keras", project / "pretrained/cnn_fashion_mnist.keras")
    assert "pretrained" in run(["dvc", "status", "train"], project, env=project_env).stdout
