"""Decoder for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from refinelab.core.errors import DataError

# The third byte of an IDX header names the element type (big-endian on disk).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed when it is gzip."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    return data


def decode_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the shape and type its header declares."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX element type 0x{type_code:02x}")
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise DataError(f"{source}: truncated IDX header")
    shape = tuple(int(dim) for dim in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python integers: a huge header cannot overflow.
    actual = len(data) - header_size
    if actual != expected:
        raise DataError(
            f"{source}: IDX header declares shape {shape} ({expected} bytes of data) but the file has {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    return decode_idx(read_bytes(path), source=str(path))
