"""`dvc exp run` on a tiny folder of photos: `model: auto` transfers from ImageNet (efficientnet_lite0), the
features stage computes the frozen base's vectors once, and a head-only experiment reuses them."""

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import commit_params, run

pytestmark = pytest.mark.slow


def photo_folder(root, per_class=12):
    """Two classes of 40x40 photos that differ in colour (one folder per class)."""
    rng = np.random.default_rng(0)
    for label, (name, colour) in enumerate((("red", (200, 40, 40)), ("blue", (40, 40, 200)))):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(rng.normal(colour, 40, size=(40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{index}.png")
    return root


def test_a_photo_folder_transfers_and_head_only_experiments_reuse_the_features(
        tmp_path, project_copy, project_env, tiny_raw_params):
    project = project_copy
    params = dict(tiny_raw_params, dataset="image_folder", epochs=2, batch_size=8, arch={"input_size": 32})
    params["data"].update(image_size=[32, 32], limit=0)
    params["image_folder"]["path"] = str(photo_folder(tmp_path / "photos"))
    assert params["model"] == "auto"
    commit_params(project, params)

    first = run(["dvc", "exp", "run"], project, env=project_env)
    assert 0 <= json.loads((project / "metrics/evaluate.json").read_text())["accuracy"] <= 1
    record = json.loads((project / "data/features/features.json").read_text())
    assert record["extractor"]["base"] == "efficientnet_lite0" and record["backend"] == "tensorflow"
    assert "training the head on the features" in first.stdout + first.stderr
    resolved = json.loads((project / "models/params.json").read_text())
    assert resolved["model"] == "auto" and resolved["preset"] == "efficientnet_lite0"
    assert resolved["transfer_weights"]["file"].endswith("efficientnet-lite0-57934424.pth")

    assert "efficientnet-lite0-57934424.pth" in (project / "models/model_card.md").read_text()

    # The model as a DVC artifact: registered with GTO, fetched by name, it predicts on its own (no
    # params.json beside it).
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "a transfer model"], project)
    assert "image-classifier@v0.0.1" in run(["gto", "register", "image-classifier"], project, env=project_env).stdout
    fetched = tmp_path / "fetched" / "classifier.keras"
    run(["dvc", "artifacts", "get", str(project), "image-classifier", "-o", str(fetched)], tmp_path, env=project_env)
    predicted = run([sys.executable, "-m", "refinelab", "predict", "--model", str(fetched),
                     str(tmp_path / "photos" / "red")], tmp_path, env=project_env)
    assert predicted.stdout.count("red_") == 12

    second = run(["dvc", "exp", "run", "-S", "dropout=0.1", "-S", "learning_rate=0.01"], project, env=project_env)
    log = second.stdout + second.stderr
    assert "Stage 'features' didn't change, skipping" in log and "Running stage 'train'" in log
    assert "not recomputed" in log

    if importlib.util.find_spec("jax") is None:
        return  # CI runs TensorFlow only; where JAX is installed the same run goes through on it.
    env = dict(project_env, REFINELAB_JAX_CACHE=str(tmp_path / "jax-cache"))
    third = run(["dvc", "exp", "run", "-S", "backend=jax"], project, env=env)
    assert "Running stage 'features'" in third.stdout + third.stderr  # Another backend: computed again.
    assert json.loads((project / "data/features/features.json").read_text())["backend"] == "jax"
    assert json.loads((project / "models/params.json").read_text())["preset"] == "efficientnet_lite0"
