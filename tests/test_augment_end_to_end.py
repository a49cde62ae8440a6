"""Augmentation through the real `dvc` commands: only augment.* changes, prepare is not re-run."""

import json

import pytest

from helpers import commit_params, needs_fashion_mnist, run

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def stages_run(output):
    return {stage for stage in ("prepare", "augment", "train", "evaluate", "plot") if f"Running stage '{stage}'" in output}


def test_offline_repro_then_online_experiment(project_copy, project_env, tiny_raw_params):
    import keras

    project = project_copy
    tiny_raw_params["augment"]["mode"] = "offline"
    commit_params(project, tiny_raw_params)
    run(["dvc", "repro"], project, env=project_env)
    summary = json.loads((project / "metrics/augment.json").read_text())
    assert summary["train_images"] == 3 * summary["source_images"] and summary["offline"] == "invert,rotate90"
    for figure in ("augmented_one_image.png", "augmented_per_class.png"):
        assert (project / "metrics/augment" / figure).is_file()
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "offline results"], project)

    online = run(["dvc", "exp", "run", "-S", "augment.mode=online", "--name", "online"], project, env=project_env)

    assert stages_run(online.stdout) == {"augment", "train", "evaluate", "plot"}  # Not prepare.
    summary = json.loads((project / "metrics/augment.json").read_text())
    assert summary["train_images"] == summary["source_images"]
    assert summary["online"] == "rotation,zoom,shear,shift,flip_horizontal" and summary["settings"]["rotation"] == 10.0
    assert json.loads((project / "models/params.json").read_text())["augment"]["mode"] == "online"
    model = keras.models.load_model(project / "models/model.keras")
    assert not [layer for layer in model.layers if "Random" in type(layer).__name__]  # Not in the model.
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env=project_env).stdout)
    experiments = {exp["name"]: exp for commit in shown for exp in commit.get("experiments") or []}
    shown = experiments["online"]["revs"][0]["data"]
    assert shown["params"]["params.yaml"]["data"]["augment"]["mode"] == "online"
    # The augment summary is a committed output, not a metric column.
    assert set(shown["metrics"]) == {"metrics/evaluate.json", "metrics/timing.json"}
