"""`dvc exp run -S dataset=…` on the real chihuahua/muffin and SIGNS data, through the whole pipeline."""

import json

import pytest

from helpers import SHARED_DATASETS, commit_params, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"{SHARED_DATASETS} is absent (real datasets for tests)"),
]


def test_experiments_on_a_file_name_labelled_folder_and_an_hdf5_file(project_copy, project_env, tiny_raw_params):
    project = project_copy
    params = dict(tiny_raw_params, model="baseline")
    params["data"].update(image_size=[32, 32], limit=0)
    # Paths in params are relative to the project root; the test's copy lives elsewhere, so use absolute ones.
    params["filename_labels"]["path"] = str(SHARED_DATASETS / "chihuahua-muffin")
    params["h5"].update(train=None, test=str(SHARED_DATASETS / "signs" / "test_signs.h5"))
    commit_params(project, params)

    run(["dvc", "exp", "run", "-S", "dataset=filename_labels", "--name", "chihuahua-muffin"], project, env=project_env)
    report = json.loads((project / "metrics/data.json").read_text())
    assert report["splits"]["test"]["per_class"] == {"chihuahua": 7, "muffin": 7}
    assert [entry["file"].rsplit("/", 1)[-1] for entry in report["skipped"]] == ["SOURCE.md", "full.jpg"]
    for split in ("train", "validation", "test"):
        assert (project / f"metrics/data/samples_{split}.png").is_file()
    evaluation = json.loads((project / "metrics/test_details.json").read_text())
    assert len(evaluation["test"]["per_class"]) == 2 and 0 <= evaluation["test"]["accuracy"] <= 1

    run(["dvc", "exp", "run", "-S", "dataset=h5", "--name", "signs"], project, env=project_env)
    report = json.loads((project / "metrics/data.json").read_text())
    assert report["image_shape"] == [32, 32, 3] and len(report["splits"]["test"]["per_class"]) == 6
    evaluation = json.loads((project / "metrics/test_details.json").read_text())
    assert len(evaluation["test"]["per_class"]) == 6
    # Two classes: no top-5 accuracy; six: there is.
    assert "top5" in json.loads((project / "metrics/evaluate.json").read_text())

    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env=project_env).stdout)
    assert set(next(iter(shown.values()))["data"]) == {"metrics/evaluate.json", "metrics/timing.json"}
