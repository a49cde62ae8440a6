"""The user's data is a dependency: a file added to a dataset in data/raw makes `dvc status` name prepare and
`dvc repro` re-run it; unchanged data re-runs nothing. A folder outside data/raw is named in a warning."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import commit_params, run

pytestmark = pytest.mark.slow


def add_images(folder, label, count, start=0):
    (folder / label).mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        pixels = np.full((16, 16, 3), (40 * index) % 256, np.uint8)
        Image.fromarray(pixels).save(folder / label / f"{label}_{index}.png")


def test_adding_images_to_a_dataset_in_data_raw_re_runs_prepare(project_copy, project_env, tiny_raw_params):
    project = project_copy
    photos = project / "data" / "raw" / "photos"
    for label in ("cats", "dogs"):
        add_images(photos, label, 12)
    params = dict(tiny_raw_params, dataset="image_folder", model="smaller", epochs=1)
    params["data"].update(image_size=[16, 16], limit=0)
    params["image_folder"]["path"] = "data/raw/photos"
    commit_params(project, params)
    run(["dvc", "repro"], project, env=project_env)
    assert json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout) == {}

    add_images(photos, "birds", 12)  # A third class, and images, after the run.
    status = json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout)
    assert "prepare" in status
    log = run(["dvc", "repro"], project, env=project_env).stdout
    assert "Running stage 'prepare'" in log
    report = json.loads((project / "metrics/data.json").read_text())
    assert set(report["splits"]["train"]["per_class"]) == {"birds", "cats", "dogs"}
    assert sum(split["images"] for split in report["splits"].values()) == 36

    # Nothing changed: nothing re-runs.
    assert json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout) == {}
    assert "Running stage" not in run(["dvc", "repro"], project, env=project_env).stdout


def test_a_dataset_outside_data_raw_is_named_in_a_warning(tmp_path, project_copy, project_env, tiny_raw_params):
    project = project_copy
    add_images(tmp_path / "photos", "cats", 4)
    params = dict(tiny_raw_params, dataset="image_folder")
    params["image_folder"]["path"] = str(tmp_path / "photos")
    commit_params(project, params)
    result = run(["dvc", "repro", "check_params"], project, env=project_env)
    assert "is outside data/raw/, the folder DVC watches for prepare" in result.stdout + result.stderr


def test_a_url_dataset_is_tracked_by_dvc_import_url_and_a_new_version_re_runs_prepare(
        tmp_path, project_copy, project_env, tiny_raw_params):
    """An unpinned URL is refused with the `dvc import-url` command that tracks it; run as told, DVC keeps the
    archive's checksum, `dvc update` brings a changed archive, and prepare re-runs on it."""
    import re
    import shlex
    import shutil

    project = project_copy
    served = tmp_path / "served"
    for label in ("cats", "dogs"):
        add_images(tmp_path / "v1" / "photos", label, 12)
    archive = shutil.make_archive(str(served / "photos"), "zip", tmp_path / "v1")
    params = dict(tiny_raw_params, dataset="image_folder", model="smaller", epochs=1)
    params["data"].update(image_size=[16, 16], limit=0)
    params["image_folder"]["path"] = f"file://{archive}"
    commit_params(project, params)

    refused = run(["dvc", "repro"], project, env=project_env, check=False)
    assert refused.returncode != 0 and "Running stage 'prepare'" not in refused.stdout
    told = re.search(r"`(dvc import-url [^`]+)`, then image_folder\.path: (\S+) ", refused.stdout + refused.stderr)
    assert told, refused.stdout + refused.stderr
    run(shlex.split(told.group(1)), project, env=project_env)
    params["image_folder"]["path"] = told.group(2)
    commit_params(project, params)
    run(["dvc", "repro"], project, env=project_env)
    assert json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout) == {}

    add_images(tmp_path / "v1" / "photos", "birds", 12)  # The publisher's new version: a third class.
    shutil.make_archive(str(served / "photos"), "zip", tmp_path / "v1")
    run(["dvc", "update", f"{told.group(2)}.dvc"], project, env=project_env)
    assert "prepare" in json.loads(run(["dvc", "status", "--json"], project, env=project_env).stdout)
    assert "Running stage 'prepare'" in run(["dvc", "repro"], project, env=project_env).stdout
    report = json.loads((project / "metrics/data.json").read_text())
    assert set(report["splits"]["train"]["per_class"]) == {"birds", "cats", "dogs"}
