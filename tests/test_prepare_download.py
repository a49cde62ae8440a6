import gzip
import hashlib
import shutil
import tarfile

import numpy as np
import pytest

from refinelab.core.errors import DataError
from refinelab.prepare import sources as datasets
from refinelab.prepare.download import PublishedFile, fetch, locate, verify

from helpers import fashion_mnist_dir, idx_bytes, needs_fashion_mnist


@pytest.fixture
def published(tmp_path):
    """A small 'published' gzip file, its entry with checksums, and its folder."""
    content = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    packed = gzip.compress(content, mtime=0)
    source = tmp_path / "upstream"
    source.mkdir()
    (source / "data.gz").write_bytes(packed)
    entry = PublishedFile("data.gz", hashlib.md5(packed).hexdigest(), hashlib.md5(content).hexdigest())
    return entry, source, content


def test_verify_accepts_the_file_and_a_recompressed_copy(published, tmp_path):
    entry, source, content = published
    verify(source / "data.gz", entry)
    recompressed = tmp_path / "data.gz"
    recompressed.write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
    assert hashlib.md5(recompressed.read_bytes()).hexdigest() != entry.md5
    verify(recompressed, entry)


def test_verify_rejects_a_corrupted_file(published, tmp_path):
    entry, source, _ = published
    corrupted = tmp_path / "data.gz"
    data = bytearray((source / "data.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"data\.gz: checksum mismatch"):
        verify(corrupted, entry)


def test_fetch_prefers_the_first_search_dir(published, tmp_path):
    entry, source, _ = published
    paths = fetch([entry], [tmp_path / "missing", source], url_bases=[], cache_dir=tmp_path / "cache")
    assert paths == {"data.gz": source / "data.gz"}
    assert not (tmp_path / "cache").exists()


def test_fetch_downloads_from_a_file_url_into_the_cache(published, tmp_path):
    entry, source, _ = published
    cache = tmp_path / "cache"
    paths = fetch([entry], [], url_bases=[f"file://{tmp_path / 'nowhere'}", source.as_uri()], cache_dir=cache)
    assert paths["data.gz"] == cache / "data.gz"
    assert (cache / "data.gz").read_bytes() == (source / "data.gz").read_bytes()


def test_a_download_with_the_wrong_checksum_leaves_no_file(published, tmp_path):
    entry, source, _ = published
    wrong = PublishedFile(entry.name, "0" * 32, "0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch([wrong], [], url_bases=[source.as_uri()], cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_a_corrupt_local_copy_is_an_error_not_skipped(published, tmp_path):
    entry, source, _ = published
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.gz").write_bytes(b"not the file")
    with pytest.raises(DataError, match=str(mirror / "data.gz")):
        fetch([entry], [mirror, source], url_bases=[], cache_dir=tmp_path / "cache")


def test_an_archive_another_run_extracted_meanwhile_is_kept_not_replaced(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    (folder / "ant").mkdir(parents=True)
    (folder / "ant" / "1.txt").write_text("ant")
    packed = tmp_path / "photos.tar.gz"
    with tarfile.open(packed, "w:gz") as bundle:
        bundle.add(folder, arcname="photos")
    cache = tmp_path / "cache"
    extracted = cache / hashlib.sha256(packed.read_bytes()).hexdigest()[:32] / "extracted"
    extractall = tarfile.TarFile.extractall
    other_run = {}

    def racing_extractall(self, path, *args, **kwargs):
        # A second `dvc queue` worker finishes extracting the same archive while this one is still at it.
        shutil.copytree(folder, extracted / "photos")
        other_run["inode"] = extracted.stat().st_ino
        extractall(self, path, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", racing_extractall)
    path, _ = locate(str(packed), cache_dir=cache)
    assert path == extracted / "photos" and (path / "ant" / "1.txt").read_text() == "ant"
    assert extracted.stat().st_ino == other_run["inode"]  # The folder the other run may be reading is untouched.
    assert sorted(p.name for p in extracted.parent.iterdir()) == ["extracted", "extracted.sha256.json"]


@needs_fashion_mnist
def test_fashion_mnist_from_a_mirror_dir(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    shutil.copytree(fashion_mnist_dir(), mirror)
    monkeypatch.setenv(datasets.MIRROR_ENV, str(mirror))
    assert datasets.FASHION_MNIST.search_dirs()[0] == mirror
    raw = datasets.FASHION_MNIST.load()
    assert raw.splits["train"].images.shape == (60000, 28, 28, 1) and raw.splits["test"].images.shape == (10000, 28, 28, 1)
    assert np.bincount(raw.splits["train"].labels).tolist() == [6000] * 10
    assert raw.source["files"]["t10k-labels-idx1-ubyte.gz"]["path"] == str(mirror / "t10k-labels-idx1-ubyte.gz")

    labels = mirror / "train-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    data[-20] ^= 0x01
    labels.write_bytes(bytes(data))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: checksum mismatch"):
        datasets.FASHION_MNIST.load()


def test_a_url_without_a_checksum_is_refused_with_the_two_ways_to_track_it(tmp_path):
    """Nothing would tell DVC that the file behind an unpinned URL changed: refused, not cached privately."""
    served = tmp_path / "served" / "photos.zip"
    with pytest.raises(DataError) as error:
        locate(served.as_uri(), cache_dir=tmp_path / "cache")
    assert f"dvc import-url {served} data/raw/photos.zip" in str(error.value) and "sha256" in str(error.value)
    assert not (tmp_path / "cache").exists()


def test_a_url_never_downloaded_and_unreachable_is_an_error(tmp_path):
    missing = (tmp_path / "nowhere.zip").as_uri()
    with pytest.raises(DataError, match="could not download"):
        locate(missing, "0" * 64, cache_dir=tmp_path / "cache")
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))


def test_a_pinned_http_url_is_downloaded_once_and_verified(tmp_path):
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    (served / "labels.csv").write_text("a,0\n")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(str(args[2]))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/labels.csv"
        digest = hashlib.sha256(b"a,0\n").hexdigest()
        first, source = locate(url, digest, cache_dir=tmp_path / "cache")
        again, _ = locate(url, digest, cache_dir=tmp_path / "cache")
        with pytest.raises(DataError, match="checksum mismatch"):
            locate(url, "0" * 64, cache_dir=tmp_path / "cache")
    finally:
        server.shutdown()
    assert first == again and again.read_text() == "a,0\n" and source["sha256"] == digest
    assert requests == ["200", "200"]  # Once for the right checksum, once for the wrong one: never again.
