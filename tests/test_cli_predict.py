"""`refinelab predict` on image files written here, against the model called on the prepared arrays."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from refinelab.cli.main import main
from refinelab.core.errors import DataError
from refinelab.core.fileio import write_json

from helpers import ROOT

CLASS_NAMES = ["top", "trouser", "bag", "boot"]
PREPROCESSING = {"image_size": [28, 28], "color_mode": "grayscale", "resize": "crop"}


@pytest.fixture(scope="module")
def grayscale_model(tmp_path_factory):
    """An untrained (seeded) 28x28 grayscale MLP saved the way the train stage saves one."""
    import keras

    from refinelab.models.builders import build_model
    from refinelab.params.schema import MLPSpec

    keras.utils.set_random_seed(7)
    model = build_model(MLPSpec(type="mlp", hidden=[32]), input_shape=(28, 28, 1), num_classes=len(CLASS_NAMES))
    from refinelab.models.artifact import save_model

    directory = tmp_path_factory.mktemp("model")
    save_model(model, directory / "model.keras", {
        "model": "tiny", "class_names": CLASS_NAMES, "image_shape": [28, 28, 1], "preprocessing": PREPROCESSING,
    })
    return model, directory / "model.keras"


def random_pixels(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def images(tmp_path):
    """Image files and, for each, the array the model should see (built here with PIL, not refinelab)."""
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    expected = {}

    gray = random_pixels((28, 28), 1)
    Image.fromarray(gray).save(folder / "gray.png")
    expected[folder / "gray.png"] = gray

    # An RGB JPEG of another size: the grayscale model sees it converted to L and centre-cropped to 28x28.
    Image.fromarray(random_pixels((40, 30, 3), 2)).save(folder / "nested" / "colour.jpg", quality=95)
    with Image.open(folder / "nested" / "colour.jpg") as decoded:
        expected[folder / "nested" / "colour.jpg"] = np.asarray(ImageOps.fit(decoded.convert("L"), (28, 28), Image.BILINEAR))

    big_rgb = random_pixels((56, 56, 3), 3)
    Image.fromarray(big_rgb).save(folder / "big.png")
    expected[folder / "big.png"] = np.asarray(Image.fromarray(big_rgb).convert("L").resize((28, 28), Image.BILINEAR))
    return folder, {path: array[..., np.newaxis] for path, array in expected.items()}


def model_classes(model, arrays):
    return model.predict(np.stack(arrays), verbose=0)


def test_predict_matches_the_model_on_prepared_arrays(grayscale_model, images, capsys):
    model, model_path = grayscale_model
    folder, expected = images

    assert main(["predict", "--model", str(model_path), "--json", "--top", "4", str(folder)]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["errors"] == []
    predicted = {entry["path"]: entry["top"] for entry in output["predictions"]}
    assert set(predicted) == {str(path) for path in expected}

    probabilities = model_classes(model, list(expected.values()))
    for path, row in zip(expected, probabilities):
        top = predicted[str(path)]
        assert top[0]["class"] == CLASS_NAMES[int(row.argmax())], path
        assert [entry["class"] for entry in top] == [CLASS_NAMES[i] for i in np.argsort(-row)]
        assert top[0]["probability"] == pytest.approx(float(row.max()), abs=1e-5)


def test_a_corrupt_file_is_reported_and_the_others_still_predicted(grayscale_model, images, capsys, caplog):
    _, model_path = grayscale_model
    folder, expected = images
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    missing = folder / "missing.jpg"

    status = main(["predict", "--model", str(model_path), str(folder / "gray.png"), str(corrupt), str(missing)])

    assert status == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{folder / 'gray.png'}: ")
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert any(str(corrupt) in message and "not a readable image" in message for message in errors)
    assert any(str(missing) in message and "not found" in message for message in errors)


def test_a_model_without_its_params_is_a_clear_error(tmp_path, caplog):
    (tmp_path / "model.keras").write_bytes(b"")
    assert main(["predict", "--model", str(tmp_path / "model.keras"), str(tmp_path)]) == 2
    assert any("params.json: missing" in record.getMessage() for record in caplog.records)


def test_a_corrupt_model_file_is_a_clear_error(tmp_path, caplog):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    write_json(tmp_path / "params.json", {"class_names": CLASS_NAMES, "preprocessing": PREPROCESSING})
    assert main(["predict", "--model", str(tmp_path / "model.keras"), str(tmp_path)]) == 2
    assert any(
        f"{tmp_path / 'model.keras'}: not a Keras model file" in record.getMessage() for record in caplog.records
    )


def test_a_bomb_among_good_images_is_reported_and_the_others_predicted(grayscale_model, images, capsys, caplog):
    """A ~100-byte BMP whose header claims 10 billion pixels: PIL's DecompressionBombError is one error line."""
    _, model_path = grayscale_model
    folder, _ = images
    header = bytearray(100)
    header[:2], header[10:14], header[14:18] = b"BM", (54).to_bytes(4, "little"), (40).to_bytes(4, "little")
    header[18:22] = header[22:26] = (100_000).to_bytes(4, "little")
    header[26:28], header[28:30] = (1).to_bytes(2, "little"), (24).to_bytes(2, "little")
    bomb = folder / "bomb.bmp"
    bomb.write_bytes(bytes(header))

    status = main(["predict", "--model", str(model_path), str(bomb), str(folder / "gray.png")])

    assert status == 1 and capsys.readouterr().out.startswith(f"{folder / 'gray.png'}: ")
    assert any(f"{bomb}: too large to decode safely" in record.getMessage() for record in caplog.records)


def test_predicting_an_empty_folder_is_an_error(grayscale_model, images, tmp_path, caplog):
    _, model_path = grayscale_model
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--model", str(model_path), str(tmp_path / "empty")]) == 2
    (record,) = [record for record in caplog.records if record.name == "refinelab"]  # One line for one problem.
    assert record.levelname == "ERROR" and f"no image files in {tmp_path / 'empty'}" in record.getMessage()
    caplog.clear()
    folder, _ = images
    assert main(["predict", "--model", str(model_path), str(tmp_path / "empty"), str(folder / "gray.png")]) == 0
    (record,) = [record for record in caplog.records if record.name == "refinelab"]  # Beside predictions: a warning.
    assert record.levelname == "WARNING" and record.getMessage().startswith(f"{tmp_path / 'empty'}: no image files")


def test_a_missing_model_is_named_before_keras_is_imported(tmp_path):
    code = ("import sys; from refinelab.cli.main import main; status = main(['predict', '--model', 'nowhere/model.keras', "
            "'photo.jpg']); print(status, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "nowhere/model.keras: model file not found (`dvc repro` in the project folder writes it" in result.stderr


def test_help_of_the_command_and_each_subcommand():
    env_python = [sys.executable, "-m", "refinelab"]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": ""}
    top = subprocess.run([*env_python, "--help"], capture_output=True, text=True, env=env, check=True).stdout
    for command in ("predict", "compare", "report"):
        assert command in top
        text = subprocess.run([*env_python, command, "--help"], capture_output=True, text=True, env=env, check=True).stdout
        assert text.startswith(f"usage: refinelab {command}")
    assert "IMAGE_OR_DIR" in subprocess.run(
        [sys.executable, "-m", "refinelab.cli.main", "predict", "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(DataError, match="params.json: missing"):
        main(["--debug", "predict", "--model", str(tmp_path / "model.keras"), str(tmp_path)])


def test_a_model_file_copied_alone_predicts(grayscale_model, images, tmp_path, capsys):
    """The .keras file carries its class names and preprocessing: no params.json needed beside it."""
    import shutil

    _, model_path = grayscale_model
    alone = tmp_path / "elsewhere" / "classifier.keras"
    alone.parent.mkdir()
    shutil.copy(model_path, alone)
    folder, _ = images
    assert main(["predict", "--model", str(alone), str(folder)]) == 0
    assert capsys.readouterr().out.count("\n") >= 2


def test_predictions_piped_into_a_reader_that_leaves_end_quietly(tmp_path, grayscale_model, images):
    """`refinelab predict photos | head -1`: a BrokenPipeError traceback before."""
    _, model_path = grayscale_model
    folder, _ = images
    process = subprocess.Popen([sys.executable, "-m", "refinelab", "predict", "--model", str(model_path), str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    process.stdout.close()  # The reader is gone before the first line.
    stderr = process.stderr.read().decode()
    assert process.wait() == 141 and "Traceback" not in stderr and "Broken pipe" not in stderr, stderr


def test_an_output_path_inside_a_file_is_one_line_before_any_work(tmp_path, caplog):
    (tmp_path / "a-file").write_text("")
    assert main(["compare", "--repo", str(tmp_path), "-o", str(tmp_path / "a-file" / "compare.md")]) == 2
    assert caplog.messages == [f"{tmp_path / 'a-file'}: cannot write there (a file, not a folder)"]
