"""The features stage: a frozen base's vectors computed once, and the head train fits on them equal to the
head it fits on the images (float noise apart)."""

import json

import numpy as np
import pytest

from refinelab.core.fileio import write_json
from refinelab.data.store import load_split
from refinelab.features.spec import frozen_features
from refinelab.params.files import read_config
from refinelab.params.schema import parse_params

from helpers import ROOT, write_prepared


def lite0_params(**changes):
    """model: auto on a folder of photos (efficientnet_lite0), at a test's input size."""
    raw = read_config(ROOT / "params.yaml")
    transfer = changes.get("model", "auto") != "cnn_bn"
    raw.update({"dataset": "image_folder", "epochs": 2, "batch_size": 16, "arch": {"input_size": 32} if transfer else {},
                **changes})
    return parse_params(raw)


def test_the_spec_names_only_what_decides_the_features():
    params = lite0_params()
    assert params.preset == "efficientnet_lite0"  # model: auto, for a folder of photos.
    spec = frozen_features(params)
    assert spec == {"extractor": {"type": "transfer", "base": "efficientnet_lite0", "input_size": 32, "freeze": "all"},
                    "backend": "tensorflow"}
    # What only the head uses leaves it as it is: such experiments reuse the features.
    assert frozen_features(lite0_params(dropout=0.1, learning_rate=0.01, epochs=3, l2=0.001)) == spec
    assert frozen_features(lite0_params(arch={"input_size": 32, "dense": [16]})) == spec
    assert frozen_features(lite0_params(arch={"input_size": 64}))["extractor"]["input_size"] == 64
    for changes, why in [({"model": "cnn_bn"}, "cnn_bn has no pretrained base"),
                         ({"model": "efficientnet_lite0_finetune", "epochs": 3}, "efficientnet_lite0_finetune trains its base"),
                         ({"augment": {"mode": "online"}}, "online augmentation changes the images every epoch")]:
        spec = frozen_features(lite0_params(**changes))
        assert spec["extractor"] is None and spec["why"].startswith(why)


@pytest.mark.slow
def test_the_head_trained_on_cached_features_equals_the_head_trained_on_images(tmp_path):
    from refinelab.features.stage import compute_features
    from refinelab.models.artifact import load_trained_model
    from refinelab.train.stage import train

    params = lite0_params()
    prepared = write_prepared(tmp_path / "prepared", (32, 32, 3), 2, counts=(64, 24, 24))
    write_json(tmp_path / "spec.json", frozen_features(params))
    record = compute_features(tmp_path / "spec.json", prepared, prepared, tmp_path / "features")
    assert record["images"] == {"train": 64, "validation": 24}
    assert load_split(tmp_path / "features", "train").images.shape == (64, 1280)

    test = load_split(prepared, "test")
    outputs = {}
    for name, features in (("on_images", None), ("on_features", tmp_path / "features")):
        out = tmp_path / name
        train(params, prepared, prepared, out / "model.keras", out / "live", features_dir=features)
        model = load_trained_model(out / "model.keras", compile=False)
        outputs[name] = (model.predict(test.images.astype("float32"), verbose=0),
                         json.loads((out / "live" / "metrics.json").read_text()))
        assert json.loads((out / "params.json").read_text())["transfer_weights"]["sha256"].startswith("57934424")
    (from_images, images_summary), (from_features, features_summary) = outputs["on_images"], outputs["on_features"]
    # The same head, fitted on the same vectors in the same order: equal up to the float noise of computing
    # the base's output in other batches.
    np.testing.assert_allclose(from_features, from_images, atol=2e-3)
    assert (from_features.argmax(1) == from_images.argmax(1)).mean() >= 0.95
    assert features_summary["eval"]["accuracy"] == pytest.approx(images_summary["eval"]["accuracy"], abs=0.05)

    # Evaluate scores the training and validation images on the vectors too, the test images on the photos.
    from refinelab.evaluate.stage import evaluate

    model_path = tmp_path / "on_features" / "model.keras"
    with_features = evaluate(model_path, prepared, tmp_path / "features")[1]
    without = evaluate(model_path, prepared)[1]
    for key in ("train_accuracy", "validation_accuracy"):
        assert with_features[key] == pytest.approx(without[key], abs=0.02)
    assert with_features["test"] == without["test"]


def test_features_made_for_another_base_are_not_used(tmp_path, caplog):
    from refinelab.features.stage import RECORD_FILE, data_key, load_features

    prepared = write_prepared(tmp_path / "prepared", (8, 8, 3), 2, counts=(6, 4, 4))
    spec = frozen_features(lite0_params())
    record = {**spec, "images": {"train": 6, "validation": 4}, "training_set": data_key(prepared, prepared)}
    write_json(tmp_path / RECORD_FILE, {**record, "extractor": {"base": "vgg16"}})
    with caplog.at_level("WARNING"):
        assert load_features(tmp_path, lite0_params(), prepared, prepared, 6) is None
    assert "computed for another base or training set" in caplog.text
    # Made for this base, but from other data (another seed's split, say): not used either.
    write_json(tmp_path / RECORD_FILE, {**record, "training_set": "another"})
    assert load_features(tmp_path, lite0_params(), prepared, prepared, 6) is None
    # No frozen base: nothing to look for.
    assert load_features(tmp_path, lite0_params(model="cnn_bn"), prepared, prepared, 6) is None


def test_a_missing_or_damaged_spec_or_record_is_named_not_a_traceback(tmp_path, caplog):
    from refinelab.core.errors import DataError
    from refinelab.features.stage import RECORD_FILE, compute_features, load_features

    with pytest.raises(DataError, match=r"spec.json: missing; the check_params stage writes it"):
        compute_features(tmp_path / "spec.json", tmp_path, tmp_path, tmp_path / "features")
    (tmp_path / "spec.json").write_text("{not json")
    with pytest.raises(DataError, match=r"spec.json: not JSON"):
        compute_features(tmp_path / "spec.json", tmp_path, tmp_path, tmp_path / "features")
    (tmp_path / RECORD_FILE).write_text("{truncated")
    with caplog.at_level("WARNING"):
        assert load_features(tmp_path, lite0_params(), tmp_path, tmp_path, 6) is None
    assert f"{tmp_path / RECORD_FILE}: not JSON" in caplog.text
