"""Read PyTorch weight files into numpy arrays without importing torch.

Two on-disk formats are understood:

* the LEGACY format (torch < 1.6, ``_use_new_zipfile_serialization=False``): a
  sequence of pickles - magic number, protocol version, sys_info, the object
  pickle (tensors refer to storages through persistent ids), the list of
  storage keys - followed, for each key, by an 8-byte little-endian element
  count and the raw storage bytes;
* the ZIP format (torch >= 1.6): ``<prefix>/data.pkl`` plus one raw entry
  ``<prefix>/data/<key>`` per storage.

Every pickle is read with :class:`_TensorUnpickler`, whose ``find_class``
knows only the handful of globals a tensor file needs and maps them to local
numpy-returning stand-ins.  Any other global (``os.system``, ``builtins.eval``
...) is refused when the GLOBAL opcode is read, i.e. before anything could be
called.
"""

from __future__ import annotations

import collections
import io
import logging
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refinelab.core.errors import DataError

logger = logging.getLogger(__name__)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
# A storage's element count is stored as a little-endian int64 before its bytes.
_COUNT_BYTES = 8
# Refuse absurd inputs before reading them into memory.
MAX_FILE_BYTES = 4 * 1024**3

# The typed storages of real weight files; bfloat16 and complex types are left
# out because numpy has no faithful equivalent.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _Sealed:
    """A stand-in a pickle may create but not fill: pickle's BUILD opcode would otherwise write into its
    ``__dict__`` past ``frozen=True`` (and change a shared stand-in for every later read)."""

    def __setstate__(self, state):
        raise ValueError(f"a weights file may not set the state of {type(self).__name__.lstrip('_')}")


@dataclass(frozen=True)
class _StorageType(_Sealed):
    """Stand-in for ``torch.<X>Storage``: only its element dtype matters."""

    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef(_Sealed):
    """A (view of a) storage: ``numel`` elements from ``offset`` of root ``key``."""

    key: str
    dtype: np.dtype
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef(_Sealed):
    """A tensor whose storage bytes may not have been read yet (legacy format)."""

    storage: _StorageRef
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor(_v2)``.

    requires_grad, backward hooks and metadata carry no weight data.
    """
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its data."""
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _TensorUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor-file globals and records storages."""

    def __init__(self, stream, path: Path, byte_budget: int | None):
        """``byte_budget`` caps the storage bytes declared; None forbids storages."""
        super().__init__(stream)
        self._path = path
        self._byte_budget = byte_budget
        self.roots: dict[str, _StorageRef] = {}

    def find_class(self, module, name):
        """Return the local stand-in for an allowed global; refuse all others."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refusing global {module}.{name}: a weights file may only "
                "reference tensor globals (OrderedDict, torch._utils rebuilders, typed storages)"
            ) from None

    def persistent_load(self, pid):
        """Turn ``('storage', type, key, location, numel[, view])`` into a _StorageRef."""
        if self._byte_budget is None:
            raise DataError(f"{self._path}: storage reference outside the object pickle")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise DataError(f"{self._path}: unexpected persistent id {pid!r:.200}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise DataError(f"{self._path}: storage {key!r} has no storage type")
        root = self._register_root(str(key), storage_type.dtype, numel)
        if view is None:
            return root
        return self._view(root, view)

    def _register_root(self, key: str, dtype: np.dtype, numel) -> _StorageRef:
        """Record a root storage once, checking it against the file's size."""
        if not _is_count(numel):
            raise DataError(f"{self._path}: storage {key!r} has invalid size {numel!r}")
        known = self.roots.get(key)
        if known is not None:
            if (known.dtype, known.numel) != (dtype, numel):
                raise DataError(f"{self._path}: storage {key!r} declared twice differently")
            return known
        self._byte_budget -= numel * dtype.itemsize
        if self._byte_budget < 0:
            raise DataError(
                f"{self._path}: storage {key!r} claims {numel} elements, more bytes than the file holds"
            )
        self.roots[key] = _StorageRef(key, dtype, 0, numel)
        return self.roots[key]

    def _view(self, root: _StorageRef, view) -> _StorageRef:
        """Legacy view metadata ``(view_key, offset, numel)`` selects part of a root."""
        if not (isinstance(view, tuple) and len(view) == 3):
            raise DataError(f"{self._path}: invalid storage view {view!r:.200}")
        _view_key, offset, numel = view
        if not (_is_count(offset) and _is_count(numel) and offset + numel <= root.numel):
            raise DataError(f"{self._path}: storage view {view!r} outside storage {root.key!r}")
        return _StorageRef(root.key, root.dtype, offset, numel)


def _is_count(value) -> bool:
    """True for a non-negative int (bool excluded: it is an int subclass)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_torch_file(path) -> dict[str, np.ndarray]:
    """Read a torch state dict file (legacy or zip format) as ``{name: ndarray}``.

    The arrays are fresh C-contiguous copies.  Raises DataError naming
    the file for anything unsafe, malformed or not a flat tensor mapping.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size} bytes is more than the {MAX_FILE_BYTES} allowed")
    data = path.read_bytes()
    # Like torch, decide on the leading local-header magic: is_zipfile() scans the
    # tail for a directory record, which raw float bytes could contain by chance.
    if data.startswith(_ZIP_MAGIC):
        obj, buffers = _read_zip(data, path)
    else:
        obj, buffers = _read_legacy(data, path)
    return _to_arrays(obj, buffers, path)


def _load_pickle(stream, path: Path, byte_budget: int | None = None) -> tuple[object, dict]:
    """Run one restricted pickle; wrap decoding failures so they name the file."""
    unpickler = _TensorUnpickler(stream, path, byte_budget)
    try:
        return unpickler.load(), unpickler.roots
    except DataError:
        raise
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise DataError(f"{path}: cannot decode pickle: {type(exc).__name__}: {exc}") from exc


def _read_legacy(data: bytes, path: Path) -> tuple[object, dict[str, np.ndarray]]:
    """Parse the legacy pickle sequence and the raw storages that follow it."""
    stream = io.BytesIO(data)
    magic, _ = _load_pickle(stream, path)
    if magic != _LEGACY_MAGIC:
        raise DataError(f"{path}: not a torch weights file (neither zip nor legacy magic)")
    protocol, _ = _load_pickle(stream, path)
    if protocol != _LEGACY_PROTOCOL:
        raise DataError(f"{path}: unsupported legacy protocol {protocol!r}")
    sys_info, _ = _load_pickle(stream, path)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise DataError(f"{path}: only little-endian legacy files are supported")
    obj, roots = _load_pickle(stream, path, byte_budget=len(data))
    keys, _ = _load_pickle(stream, path)
    _check_keys(keys, roots, path)
    buffers = {key: _read_legacy_storage(stream, roots[key], path) for key in keys}
    if stream.tell() != len(data):
        raise DataError(f"{path}: {len(data) - stream.tell()} unexpected trailing bytes")
    return obj, buffers


def _check_keys(keys, roots: dict[str, _StorageRef], path: Path) -> None:
    """The storage key list must name exactly the storages the pickle used."""
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise DataError(f"{path}: storage key list is not a list of strings")
    if len(keys) != len(set(keys)) or set(keys) != set(roots):
        raise DataError(
            f"{path}: storage keys {sorted(set(keys) ^ set(roots))[:10]} are missing or unused"
        )


def _read_legacy_storage(stream: io.BytesIO, root: _StorageRef, path: Path) -> np.ndarray:
    """Read one ``<int64 count><bytes>`` record and check it against the pickle."""
    header = stream.read(_COUNT_BYTES)
    if len(header) != _COUNT_BYTES:
        raise DataError(f"{path}: truncated before storage {root.key!r}")
    count = int.from_bytes(header, "little", signed=True)
    if count != root.numel:
        raise DataError(
            f"{path}: storage {root.key!r} holds {count} elements, pickle says {root.numel}"
        )
    raw = stream.read(count * root.dtype.itemsize)
    if len(raw) != count * root.dtype.itemsize:
        raise DataError(f"{path}: storage {root.key!r} is truncated")
    return np.frombuffer(raw, dtype=root.dtype)


def _read_zip(data: bytes, path: Path) -> tuple[object, dict[str, np.ndarray]]:
    """Parse the zip format: ``<prefix>/data.pkl`` and ``<prefix>/data/<key>`` entries."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        prefix = _zip_prefix(archive, path)
        byteorder = prefix + "byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder) != b"little":
            raise DataError(f"{path}: only little-endian files are supported")
        pickled = archive.read(prefix + "data.pkl")
        obj, roots = _load_pickle(io.BytesIO(pickled), path, byte_budget=len(data))
        buffers = {key: _read_zip_storage(archive, prefix, root, path) for key, root in roots.items()}
    return obj, buffers


def _zip_prefix(archive: zipfile.ZipFile, path: Path) -> str:
    """The archive's single top folder (torch names it after the file)."""
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise DataError(f"{path}: zip holds {len(pickles)} data.pkl entries, expected 1")
    return pickles[0][: -len("data.pkl")]


def _read_zip_storage(archive, prefix: str, root: _StorageRef, path: Path) -> np.ndarray:
    """Read one raw storage entry, checking its size before decompressing it."""
    name = f"{prefix}data/{root.key}"
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise DataError(f"{path}: storage entry {name!r} is missing") from None
    if info.file_size != root.numel * root.dtype.itemsize:
        raise DataError(
            f"{path}: storage entry {name!r} has {info.file_size} bytes, expected "
            f"{root.numel * root.dtype.itemsize}"
        )
    return np.frombuffer(archive.read(info), dtype=root.dtype)


def _to_arrays(obj, buffers: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Materialise a flat ``{str: tensor}`` mapping as independent numpy arrays."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: top-level object is {type(obj).__name__}, not a state dict")
    tensors = {}
    for name, value in obj.items():
        if not (
            isinstance(name, str) and isinstance(value, _TensorRef) and isinstance(value.storage, _StorageRef)
        ):
            raise DataError(f"{path}: entry {name!r:.100} is not a named tensor")
        tensors[name] = _materialise(value, buffers[value.storage.key], path, name)
    logger.debug("read %d tensors from %s", len(tensors), path)
    return tensors


def _materialise(ref: _TensorRef, root: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Apply storage view, offset, shape and strides; return a contiguous copy."""
    shape, stride, offset = ref.shape, ref.stride, ref.offset
    if not (_is_count(offset) and len(shape) == len(stride) and all(_is_count(n) for n in shape + stride)):
        raise DataError(f"{path}: tensor {name!r} has invalid layout {shape}/{stride}/{offset}")
    storage = root[ref.storage.offset : ref.storage.offset + ref.storage.numel]
    # A weights tensor repeats no element: more elements than its storage holds (stride 0 over a huge
    # shape) would make a few bytes of file allocate any amount of memory.
    if math.prod(shape) > storage.size:
        raise DataError(f"{path}: tensor {name!r} has {math.prod(shape)} elements, more than its storage's {storage.size}")
    if math.prod(shape) == 0:
        if len(shape) > 32 or any(n > storage.size for n in shape):
            raise DataError(f"{path}: tensor {name!r} has an empty shape of absurd size {shape}")
        return np.zeros(shape, dtype=storage.dtype)
    # Index of the last element the strides can reach must lie inside the storage.
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if last >= storage.size:
        raise DataError(f"{path}: tensor {name!r} reaches past the end of its storage")
    base = storage[offset:]
    strides = tuple(s * storage.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(base, shape=shape, strides=strides, writeable=False)
    return np.array(view, copy=True, order="C")
