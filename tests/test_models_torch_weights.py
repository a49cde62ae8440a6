"""The torch weights reader: tensors read right (offsets, strides, views), and a file that names any
other global than a tensor file needs (os.system, eval) refused before anything runs.

Crafted weight files are assembled opcode by opcode (see ``_dumps``), so no test needs torch and no test
ever runs a malicious pickle."""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from refinelab.core.errors import DataError
from refinelab.models.torch_weights import read_torch_file

# --- a minimal protocol-2 pickle writer for crafted files -------------------


class Global:
    """A GLOBAL opcode: ``module.name``, never imported by the writer."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class Call:
    """``func(*args)`` via REDUCE."""

    def __init__(self, func, *args):
        self.func, self.args = func, args


class Persistent:
    """A persistent id (BINPERSID), as torch uses for storages."""

    def __init__(self, pid: tuple):
        self.pid = pid


class ODict:
    """``collections.OrderedDict()`` filled with SETITEMS, as torch writes state dicts."""

    def __init__(self, items: dict):
        self.items = items


def _emit(obj) -> bytes:
    """Pickle opcodes for ``obj`` (no memo, so fragments compose freely)."""
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, str):
        raw = obj.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(obj, tuple):
        return b"(" + b"".join(map(_emit, obj)) + b"t"
    if isinstance(obj, Global):
        return f"c{obj.module}\n{obj.name}\n".encode()
    if isinstance(obj, Call):
        return _emit(obj.func) + _emit(obj.args) + b"R"
    if isinstance(obj, Persistent):
        return _emit(obj.pid) + b"Q"
    if isinstance(obj, ODict):
        pairs = b"".join(_emit(k) + _emit(v) for k, v in obj.items.items())
        return _emit(Call(Global("collections", "OrderedDict"))) + b"(" + pairs + b"u"
    raise TypeError(type(obj))


def _dumps(obj) -> bytes:
    return b"\x80\x02" + _emit(obj) + b"."


def _tensor(pid: tuple, offset: int, shape: tuple, stride: tuple) -> Call:
    """What torch writes for a tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""
    rebuild = Global("torch._utils", "_rebuild_tensor_v2")
    return Call(rebuild, Persistent(pid), offset, shape, stride, False, ODict({}))


def _float_pid(key: str, numel: int, *view) -> tuple:
    return ("storage", Global("torch", "FloatStorage"), key, "cpu", numel, *view)


def _write_legacy(path: Path, obj, storages: dict[str, np.ndarray]) -> Path:
    """Write the legacy layout: magic, protocol, sys_info, object, keys, storages."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 4}}
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2)]
    parts += [_dumps(obj), pickle.dumps(list(storages), 2)]
    for array in storages.values():
        parts += [struct.pack("<q", array.size), array.tobytes()]
    path.write_bytes(b"".join(parts))
    return path


def _write_zip(path: Path, obj, storages: dict[str, np.ndarray]) -> Path:
    """Write the torch >= 1.6 zip layout."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", _dumps(obj))
        archive.writestr("archive/byteorder", "little")
        for key, array in storages.items():
            archive.writestr(f"archive/data/{key}", array.tobytes())
    return path


def _layout_case():
    """A state dict exercising offsets, strides, shared storages and a storage view."""
    storage = np.arange(24, dtype=np.float32)
    counter = np.array([7], dtype=np.int64)
    long_pid = ("storage", Global("torch", "LongStorage"), "1", "cpu", 1)
    entries = {
        "plain": _tensor(_float_pid("0", 24), 0, (2, 3), (3, 1)),
        "transposed": _tensor(_float_pid("0", 24), 0, (3, 2), (1, 3)),
        "offset_strided": _tensor(_float_pid("0", 24), 6, (2, 2), (1, 2)),
        "bn.num_batches_tracked": _tensor(long_pid, 0, (), ()),
    }
    expected = {
        "plain": storage[:6].reshape(2, 3),
        "transposed": storage[:6].reshape(2, 3).T,
        "offset_strided": np.array([[6, 8], [7, 9]], dtype=np.float32),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }
    return entries, {"0": storage, "1": counter}, expected


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip])
def test_reads_offsets_strides_and_shared_storage(tmp_path, writer):
    entries, storages, expected = _layout_case()
    tensors = read_torch_file(writer(tmp_path / "w.pth", ODict(entries), storages))
    assert list(tensors) == list(expected)
    for name, want in expected.items():
        assert tensors[name].dtype == want.dtype and tensors[name].shape == want.shape
        np.testing.assert_array_equal(tensors[name], want)
        assert tensors[name].flags.c_contiguous and tensors[name].flags.owndata


def test_reads_legacy_storage_view(tmp_path):
    storage = np.arange(24, dtype=np.float32)
    view = _tensor(_float_pid("0", 24, ("0_view", 12, 6)), 1, (2, 2), (2, 1))
    tensors = read_torch_file(_write_legacy(tmp_path / "v.pth", ODict({"v": view}), {"0": storage}))
    np.testing.assert_array_equal(tensors["v"], [[13, 14], [15, 16]])


def _command_call(module: str, name: str, marker: Path) -> Call:
    """A call that would create ``marker``: os/posix.system or builtins.eval."""
    command = f"touch {marker}"
    if name == "eval":
        command = f"__import__('os').system({command!r})"
    return Call(Global(module, name), command)


def test_payload_would_run_under_a_plain_unpickler(tmp_path):
    """Guard against a vacuous refusal test: the payload really calls system()."""
    calls = []

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            return lambda *args: calls.append((module, name, args))

    payload = _dumps(_command_call("os", "system", tmp_path / "m"))
    Recording(io.BytesIO(payload)).load()
    assert calls == [("os", "system", (f"touch {tmp_path / 'm'}",))]
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(payload)]
    assert ("GLOBAL", "os system") in ops and ("REDUCE", None) in ops


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip])
@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval")])
def test_refuses_foreign_global_before_running_it(tmp_path, writer, module, name):
    marker = tmp_path / "pwned"
    path = writer(tmp_path / "evil.pth", ODict({"w": _command_call(module, name, marker)}), {})
    with pytest.raises(DataError, match=rf"refusing global {module}\.{name}") as info:
        read_torch_file(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_refuses_eval_in_sys_info_pickle(tmp_path):
    """Every pickle of the sequence is restricted, not only the object pickle."""
    path = tmp_path / "evil.pth"
    evil = _dumps(Call(Global("builtins", "eval"), "1+1"))
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + evil)
    with pytest.raises(DataError, match=r"refusing global builtins\.eval"):
        read_torch_file(path)


def test_refuses_storage_larger_than_file(tmp_path):
    entries = {"w": _tensor(_float_pid("0", 10**9), 0, (10,), (1,))}
    path = _write_legacy(tmp_path / "big.pth", ODict(entries), {"0": np.zeros(10, np.float32)})
    with pytest.raises(DataError, match="more bytes than the file holds") as info:
        read_torch_file(path)
    assert str(path) in str(info.value)


def test_refuses_truncated_and_overreaching_files(tmp_path):
    entries, storages, _ = _layout_case()
    path = _write_legacy(tmp_path / "t.pth", ODict(entries), storages)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DataError, match="truncated"):
        read_torch_file(path)
    past_end = {"w": _tensor(_float_pid("0", 24), 20, (2, 3), (3, 1))}
    path = _write_legacy(tmp_path / "p.pth", ODict(past_end), {"0": storages["0"]})
    with pytest.raises(DataError, match="past the end"):
        read_torch_file(path)


def test_refuses_non_torch_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(pickle.dumps(12345, 2))
    with pytest.raises(DataError, match="not a torch weights file"):
        read_torch_file(path)


def test_refuses_a_stride_zero_size_bomb(tmp_path):
    """A tensor of 10**9 elements over one stored float (stride 0) would allocate 4 GB from a few bytes."""
    entries = {"w": _tensor(_float_pid("0", 1), 0, (10**9,), (0,))}
    path = _write_legacy(tmp_path / "bomb.pth", ODict(entries), {"0": np.zeros(1, np.float32)})
    with pytest.raises(DataError, match="more than its storage") as info:
        read_torch_file(path)
    assert str(path) in str(info.value)


def test_a_pickle_may_not_fill_a_stand_in(tmp_path):
    """BUILD on a storage type would write into the shared stand-in past frozen=True."""
    state = b"}" + _emit("dtype") + _emit("int64") + b"s"  # {"dtype": "int64"}, opcode by opcode.
    payload = b"\x80\x02" + _emit(Global("torch", "FloatStorage")) + state + b"b."
    path = tmp_path / "build.pth"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + payload)
    with pytest.raises(DataError, match="may not set the state of StorageType") as info:
        read_torch_file(path)
    assert str(path) in str(info.value)
    entries, storages, expected = _layout_case()
    tensors = read_torch_file(_write_legacy(tmp_path / "ok.pth", ODict(entries), storages))
    assert tensors["plain"].dtype == np.float32  # The shared stand-in is as it was.
