import numpy as np
import pytest
from PIL import Image

from refinelab.core.errors import DataError
from refinelab.prepare.images import Preprocessing, load_image


@pytest.mark.parametrize("resize", ["crop", "pad", "stretch"])
def test_non_square_images_become_the_target_size(tmp_path, resize):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((20, 40, 3), 200, np.uint8)).save(path)
    array = load_image(path, Preprocessing((10, 10), "grayscale", resize))
    assert array.shape == (10, 10, 1) and array.dtype == np.uint8
    if resize == "pad":
        assert array[0, 0, 0] == 0 and array[5, 5, 0] > 150  # Black bars above and below.
    else:
        assert array.min() > 150


def test_grayscale_file_to_rgb_model(tmp_path):
    path = tmp_path / "gray.jpg"
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(path)
    array = load_image(path, Preprocessing((8, 8), "rgb"))
    assert array.shape == (8, 8, 3)
    assert np.all(np.abs(array.astype(int) - 90) <= 2)


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.jpg"
    if content is None:  # A real JPEG cut in half.
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(path, Preprocessing((8, 8), "rgb"))
