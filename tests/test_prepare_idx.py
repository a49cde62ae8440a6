import gzip

import numpy as np
import pytest

from refinelab.core.errors import DataError
from refinelab.prepare.idx import decode_idx, read_idx

from helpers import idx_bytes, write_idx


def test_decodes_images_and_labels_plain_and_gzip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x.gz", images)), images)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "y", labels, compress=False)), labels)


def test_decodes_big_endian_int32():
    values = np.array([1, -2, 70000], dtype=">i4")
    data = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes()
    decoded = decode_idx(data)
    assert decoded.tolist() == [1, -2, 70000]
    assert decoded.dtype.byteorder in ("=", "<", "|")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01", "bad magic"),
        (bytes([0, 0, 0x42, 1]) + (1).to_bytes(4, "big") + b"\x00", "unknown IDX element type"),
        (bytes([0, 0, 0x08, 2]) + (1).to_bytes(4, "big"), "truncated IDX header"),
        (idx_bytes(np.zeros((4, 5), np.uint8))[:-3], "declares shape (4, 5)"),
    ],
)
def test_rejects_malformed_data_naming_the_problem(data, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_idx(data, source="some-file")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 10), np.uint8)))[:-10])
    with pytest.raises(DataError, match="broken.gz"):
        read_idx(path)
