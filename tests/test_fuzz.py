"""Fuzz tests of the decoders that read users' bytes: they return a result or raise the project's own
error, never anything else, and never write outside their target folder.

The budget is fixed and the examples derandomized, so the suite stays fast and a failure repeats.
"""

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from refinelab.core.errors import RefinelabError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def mutated(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    """``data`` with some bytes replaced (position modulo its length) and perhaps cut short."""
    mutable = bytearray(data)
    for position, value in flips:
        if mutable:
            mutable[position % len(mutable)] = value
    return bytes(mutable[:cut] if cut is not None else mutable)


flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8)
cuts = st.one_of(st.none(), st.integers(0, 400))


def idx_header(type_code: int, dims: list[int]) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + b"".join(dim.to_bytes(4, "big") for dim in dims)


@FUZZ
@given(
    type_code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=0, max_size=5),
    body=st.binary(max_size=300),
)
def test_the_idx_decoder_returns_an_array_or_a_data_error(type_code, dims, body):
    from refinelab.prepare.idx import decode_idx

    try:
        array = decode_idx(idx_header(type_code, dims) + body, "fuzz.idx")
    except RefinelabError:
        return
    assert isinstance(array, np.ndarray) and list(array.shape) == dims


@FUZZ
@given(data=st.binary(max_size=400), gzip_magic=st.booleans())
def test_reading_idx_bytes_from_a_file_never_leaks_another_exception(tmp_path_factory, data, gzip_magic):
    from refinelab.prepare.idx import read_idx

    path = tmp_path_factory.mktemp("idx") / "file.gz"
    path.write_bytes((b"\x1f\x8b" if gzip_magic else b"") + data)
    try:
        read_idx(path)
    except RefinelabError:
        pass


def valid_image_bytes(image_format: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    image = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    if image_format == "GIF":
        image = image.convert("P")
    image.save(buffer, format=image_format)
    return buffer.getvalue()


VALID_IMAGES = {name: valid_image_bytes(name) for name in ("PNG", "JPEG", "BMP", "GIF", "TIFF")}


@FUZZ
@given(image_format=st.sampled_from(sorted(VALID_IMAGES)), flips=flips, cut=cuts,
       suffix=st.sampled_from([".png", ".jpg", ".bmp", ".gif"]))
def test_damaged_images_decode_or_raise_a_data_error(tmp_path_factory, image_format, flips, cut, suffix):
    from refinelab.prepare.images import open_image, read_header

    path = tmp_path_factory.mktemp("image") / f"damaged{suffix}"
    path.write_bytes(mutated(VALID_IMAGES[image_format], flips, cut))
    read_header(path)  # Never raises: None for an unreadable header.
    try:
        image = open_image(path)
    except RefinelabError:
        return
    assert image.mode in ("L", "RGB")


array_dtypes = st.sampled_from(["uint8", "int16", "int64", "float32", "float64", "bool"])


@FUZZ
@given(
    image_shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
    image_dtype=array_dtypes,
    label_count=st.integers(0, 6),
    label_dtype=array_dtypes,
    special=st.sampled_from([None, np.nan, np.inf, -1.0, 300.0]),
    with_classes=st.booleans(),
)
def test_the_hdf5_loader_returns_a_dataset_or_raises_the_projects_error(
    tmp_path_factory, raw_params, image_shape, image_dtype, label_count, label_dtype, special, with_classes
):
    from refinelab.params.schema import parse_params
    from refinelab.prepare.sources import read_h5_split

    rng = np.random.default_rng(len(image_shape))
    images = rng.integers(0, 4, image_shape).astype(image_dtype) if image_shape else np.array(3, dtype=image_dtype)
    if special is not None and images.size and images.dtype.kind == "f":
        images.flat[0] = special
    path = tmp_path_factory.mktemp("h5") / "fuzz.h5"
    with h5py.File(path, "w") as handle:
        handle["train_set_x"] = images
        handle["train_set_y"] = (np.arange(label_count) % 3).astype(label_dtype)
        if with_classes:
            handle["list_classes"] = np.array([b"a", b"b", b"c"])
    try:
        read_images, labels, _ = read_h5_split(path, "train", parse_params(raw_params))
    except RefinelabError:
        return
    assert read_images.dtype == np.uint8 and read_images.ndim == 4 and len(read_images) == len(labels)


member_names = st.sampled_from([
    "data/a.png", "../escape.txt", "../../escape.txt", "/tmp/absolute.txt", "data/../../escape.txt",
    "ok.txt", "dir/", "data/./b.png", "..", ".",
])


@FUZZ
@given(names=st.lists(member_names, min_size=1, max_size=4, unique=True), kind=st.sampled_from(["zip", "tar"]),
       symlink=st.sampled_from([None, "../outside", "/etc/passwd"]))
def test_archive_extraction_never_writes_outside_its_folder(tmp_path_factory, names, kind, symlink):
    from refinelab.prepare.download import extract

    root = tmp_path_factory.mktemp("archive")
    archive = root / f"fuzz.{'zip' if kind == 'zip' else 'tar.gz'}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as bundle:
            for name in names:
                bundle.writestr(name, b"content")
    else:
        with tarfile.open(archive, "w:gz") as bundle:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = len(b"content")
                bundle.addfile(info, io.BytesIO(b"content"))
            if symlink:
                link = tarfile.TarInfo("data/link")
                link.type, link.linkname = tarfile.SYMTYPE, symlink
                bundle.addfile(link)
    destination = root / "sandbox" / "extracted"
    try:
        extract(archive, destination)
    except RefinelabError:
        assert not destination.exists()
    else:
        inside = destination.resolve()
        for path in destination.rglob("*"):
            target = (path.parent / os.readlink(path)) if path.is_symlink() else path
            assert target.resolve().is_relative_to(inside), path
    # Nothing anywhere else: beside the archive only the sandbox, in it only the extracted folder and the
    # record of its files' digests.
    assert sorted(os.listdir(root)) == sorted([archive.name, "sandbox"])
    assert sorted(os.listdir(root / "sandbox")) in ([], ["extracted", "extracted.sha256.json"])
    assert not (root.parent / "escape.txt").exists() and not Path("/tmp/absolute.txt").exists()


# --- folder-level prepare: symlinks, hidden and bad files, classes that empty out -----------------------

ENTRY_KINDS = ("image", "bad", "hidden", "text", "dangling", "loop", "parent_link", "subfolder_image")


@FUZZ
@given(
    classes=st.lists(st.lists(st.sampled_from(ENTRY_KINDS), max_size=7), min_size=0, max_size=3),
    on_bad_image=st.sampled_from(["fail", "skip"]),
    presplit=st.booleans(),
)
def test_folder_prepare_returns_splits_or_raises_the_projects_error(tmp_path_factory, classes, on_bad_image,
                                                                    presplit):
    """Any tree of class folders holding images, damaged files, hidden files, links that lead nowhere, in a
    circle or to a parent, and sub-folders: prepare writes every split with every class in train, or stops
    with refinelab's error; every file is used or listed as left out."""
    from refinelab.params.files import read_config
    from refinelab.params.schema import parse_params
    from refinelab.prepare.stage import prepare

    from helpers import ROOT

    root = tmp_path_factory.mktemp("tree") / "photos"
    trees = [root / split for split in ("train", "valid", "test")] if presplit else [root]
    entries = 0
    for tree in trees:
        for label, kinds in enumerate(classes):
            folder = tree / f"class{label}"
            folder.mkdir(parents=True)
            for index, kind in enumerate(kinds):
                path = folder / f"{index}.png"
                if kind in ("image", "subfolder_image"):
                    path = folder / "sub" / path.name if kind == "subfolder_image" else path
                    path.parent.mkdir(exist_ok=True)
                    Image.fromarray(np.full((6, 6), 40 * label + index, np.uint8)).save(path)
                elif kind == "bad":
                    path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
                elif kind == "hidden":
                    (folder / f"._{index}.png").write_bytes(b"\x00\x05\x16\x07")
                elif kind == "text":
                    (folder / f"{index}.txt").write_text("notes")
                elif kind == "dangling":
                    path.symlink_to(folder / "nowhere.png")
                elif kind == "loop":
                    path.symlink_to(path)
                else:
                    (folder / f"up{index}").symlink_to(folder)
                entries += 1
    raw = read_config(ROOT / "params.yaml")
    params = dict(raw, dataset="image_folder", image_folder={"path": str(root)})
    params["data"] = dict(raw["data"], limit=0, on_bad_image=on_bad_image, image_size=[6, 6])
    out = root.parent / "out"
    try:
        meta = prepare(parse_params(params), out / "prepared", out / "data.json")
    except RefinelabError:
        assert not (out / "prepared").exists()
        return
    report = json.loads((out / "data.json").read_text())
    assert all(split["images"] > 0 for split in report["splits"].values())
    assert all(count > 0 for count in report["splits"]["train"]["per_class"].values())
    used = sum(split["images"] for split in report["splits"].values())
    assert used + report["skipped_files"] + report["bad_images"] == entries
    assert meta["class_names"] == [f"class{label}" for label in range(len(classes))]


# --- params files: odd keys and scalars ------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True), st.text(max_size=6),
                    st.just([]), st.just({}), st.just("auto"))
keys = st.one_of(st.sampled_from(["epochs", "dropout", "model", "batch_size", "train", "data", "augment", "arch",
                                  "seed", "l2", "backend", "epochz"]), st.text(max_size=5))
yaml_keys = st.one_of(keys.map(lambda key: json.dumps(key)), st.just("[model]"), st.just("? [a, b]\n "),
                      st.integers(0, 9).map(str), st.just("true"), st.just("null"))


@FUZZ
@given(changes=st.lists(st.tuples(yaml_keys, scalars), max_size=4), nested=st.sampled_from(["", "train", "data"]))
def test_any_params_yaml_is_valid_or_one_params_error(tmp_path_factory, changes, nested):
    """params.yaml with keys that are lists, numbers, booleans or null, and values of any scalar type:
    refinelab's reader and validator return params or raise its own error, never another one."""
    from refinelab.params.files import read_config
    from refinelab.params.schema import parse_params

    from helpers import ROOT

    folder = tmp_path_factory.mktemp("params")
    for name in ("architectures.yaml", "datasets.yaml"):
        (folder / name).write_text((ROOT / name).read_text())
    lines = [f"{key}: {json.dumps(value)}" for key, value in changes]
    text = (ROOT / "params.yaml").read_text()
    if nested:
        text += f"{nested}_extra:\n" + "".join(f"  {line}\n" for line in lines)
    else:
        text += "".join(f"{line}\n" for line in lines)
    (folder / "params.yaml").write_text(text)
    try:
        parse_params(read_config(folder / "params.yaml"))
    except RefinelabError:
        pass


# --- training backups: damaged files on resume ------------------------------------------------------------


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A real backup after one epoch and one after two (each fuzz example damages a copy)."""
    import keras

    from refinelab.train.resume import TrainingBackup

    made = {}
    for epochs in (1, 2):
        folder = tmp_path_factory.mktemp(f"backup{epochs}")
        (folder / "live").mkdir()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile("adam", "mse")
        backup = TrainingBackup(folder / "model.keras", {"params": 1})
        model.fit(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32), epochs=epochs, verbose=0,
                  callbacks=backup.callbacks(folder / "live"))
        made[epochs] = folder
    return made


@FUZZ
@given(target=st.sampled_from(["weights", "seeds"]), flips=flips, cut=cuts, second=st.booleans())
def test_a_damaged_backup_is_used_whole_or_not_at_all(tmp_path_factory, backed_up, target, flips, cut, second):
    """Bytes of the latest backup flipped or cut: the backup resumes from an epoch whose files read back in
    full, and never raises (a damaged one is discarded)."""
    import shutil

    from refinelab.train.resume import EPOCH_FOLDER, SEED_STATES, WEIGHTS, TrainingBackup, unreadable

    epochs = 2 if second else 1
    folder = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(backed_up[epochs], folder)
    backup = TrainingBackup(folder / "model.keras", {"params": 1})
    damaged = backup.dir / EPOCH_FOLDER.format(epoch=epochs) / (WEIGHTS if target == "weights" else SEED_STATES)
    damaged.write_bytes(mutated(damaged.read_bytes(), flips, cut))
    done, used = TrainingBackup(folder / "model.keras", {"params": 1}).latest
    assert done in (epochs, epochs - 1)
    if used is not None:
        assert unreadable(used) is None
