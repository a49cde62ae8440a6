"""Find published dataset files locally or download them, always verified by checksum."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from refinelab.core.errors import DataError
from refinelab.core.fileio import atomic_dir, atomic_path, cache_root, file_digest, write_json
from refinelab.core.runner import on_terminal
from refinelab.prepare.idx import read_bytes

log = logging.getLogger(__name__)
CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
URL_SCHEMES = ("https", "http", "file")
# Where the user's own datasets live: a dependency of the prepare stage (dvc.yaml), so DVC sees their files.
RAW_DATA = Path("data/raw")


@dataclass(frozen=True)
class PublishedFile:
    """A file as its publisher lists it: its name and MD5, and the MD5 of its decompressed content.

    The content checksum accepts faithful copies that were recompressed (Debian's
    ``dataset-fashion-mnist`` re-gzips the files, which changes the outer MD5 but not the data).
    """

    name: str
    md5: str
    content_md5: str


def verify(path: Path, published: PublishedFile) -> None:
    """Raise :class:`DataError` unless ``path`` is the published file or a recompressed copy of it."""
    actual = file_digest(path, "md5")
    if actual == published.md5:
        return
    try:
        content = hashlib.md5(read_bytes(path)).hexdigest()
    except DataError:
        content = "unreadable"
    if content == published.content_md5:
        return
    raise DataError(
        f"{path}: checksum mismatch: MD5 {actual} (content {content}) but the published file "
        f"{published.name} has MD5 {published.md5} (content {published.content_md5}); "
        "the file is corrupt or not the official one: delete or replace it"
    )


@contextlib.contextmanager
def open_url(url: str) -> Iterator[Any]:
    try:
        response = urllib.request.urlopen(urllib.request.Request(url), timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None
    with response:
        yield response


def save_response(url: str, response: Any, destination: Path) -> None:
    log.info("downloading %s", url)
    size = response.headers.get("Content-Length") if hasattr(response, "headers") else None
    try:
        with open(destination, "wb") as out, tqdm(total=int(size) if size and size.isdigit() else None, unit="B",
                                                  unit_scale=True, desc=destination.name, disable=not on_terminal(),
                                                  leave=False) as progress:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                progress.update(len(chunk))
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None


def copy_url(url: str, destination: Path) -> None:
    with open_url(url) as response:
        save_response(url, response, destination)


def unpinned_url(location: str, key: str, sha256_key: str) -> str:
    """Why a URL without a checksum is refused, and the two ways to give it one: nothing would tell DVC
    that the file behind it changed, so results would silently describe data that is gone."""
    url = urllib.parse.urlparse(location)
    source = urllib.request.url2pathname(url.path) if url.scheme == "file" else location
    name = Path(url.path).name or "dataset"
    return (f"{key}: {location} has no {sha256_key}: DVC could not see its content change. Pin this version "
            f"({sha256_key}: <its SHA-256>, which `sha256sum` prints), or let DVC track it: `dvc import-url {source} "
            f"{RAW_DATA / name}`, then {key}: {RAW_DATA / name} (`dvc update {RAW_DATA / name}.dvc` fetches a new "
            "version)")


def download(url: str, destination: Path, published: PublishedFile) -> None:
    """Download ``url`` to ``destination``; the file appears only once verified."""
    with atomic_path(destination) as temporary:
        copy_url(url, temporary)
        verify(temporary, published)


def fetch(
    files: Sequence[PublishedFile],
    search_dirs: Sequence[Path],
    url_bases: Sequence[str],
    cache_dir: Path,
) -> dict[str, Path]:
    """Return a verified local path for each file.

    Each file is taken from the first of ``search_dirs`` that holds it, else downloaded from
    the first of ``url_bases`` that answers into ``cache_dir``. A local copy that fails its
    checksum is an error, not a reason to look further: a corrupt mirror should be fixed.
    """
    found: dict[str, Path] = {}
    for published in files:
        local = next((Path(d) / published.name for d in search_dirs if (Path(d) / published.name).is_file()), None)
        if local is not None:
            verify(local, published)
            log.info("using %s", local)
            found[published.name] = local
            continue
        destination = cache_dir / published.name
        errors = []
        for base in url_bases:
            try:
                download(base.rstrip("/") + "/" + published.name, destination, published)
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            looked = ", ".join(str(d) for d in search_dirs) or "nowhere"
            raise DataError(
                f"{published.name}: not found locally (looked in {looked}) and every download failed:\n  "
                + "\n  ".join(errors)
            )
        found[published.name] = destination
    return found


def is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in URL_SCHEMES


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def verify_sha256(path: Path, expected: str | None, origin: str) -> str:
    """Return the file's SHA-256, raising :class:`DataError` if it is not ``expected``."""
    actual = file_digest(path)
    if expected is not None and actual != expected.lower():
        raise DataError(f"{origin}: checksum mismatch: SHA-256 {actual} but expected {expected}")
    return actual


# An archive that expands more than this many times, to more than MIN_BOMB_BYTES, is refused: photos
# barely compress (JPEG, PNG), so such a ratio is a decompression bomb (a 468 KB zip that held 400 MB).
MAX_EXPANSION = 100
MIN_BOMB_BYTES = 100 << 20


def members_size(archive: Path) -> int:
    """The bytes an archive's files declare (zipfile refuses to read a member past its declared size)."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            return sum(info.file_size for info in bundle.infolist())
    with tarfile.open(archive) as bundle:
        return sum(member.size for member in bundle.getmembers() if member.isfile())


def check_expansion(archive: Path, destination: Path) -> None:
    """Refuse, before writing anything, an archive that would fill the disk or is a decompression bomb."""
    size, packed = members_size(archive), archive.stat().st_size
    if size > MIN_BOMB_BYTES and size > MAX_EXPANSION * packed:
        raise DataError(f"{archive}: its {packed >> 10} KB would expand to {size >> 20} MB ({size // max(packed, 1)} "
                        f"times; at most {MAX_EXPANSION} for images): refused as a decompression bomb")
    free = shutil.disk_usage(next(parent for parent in destination.parents if parent.exists())).free
    if size > free:
        raise DataError(f"{archive}: extracting it needs {size >> 20} MB, and {destination.parent} has {free >> 20} MB free")


def tree_digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with its SHA-256."""
    return {path.relative_to(folder).as_posix(): file_digest(path)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def extract(archive: Path, destination: Path, replace: bool = False) -> None:
    """Unpack a zip or tar archive into ``destination`` (a member that would land outside it, or an
    archive too large for the disk or expanding like a bomb, is an error), and record the SHA-256 of
    every file it wrote beside it, so that a later run can check the cache still holds the archive's files.

    ``destination`` is a shared cache: when another run extracted the same (checksummed) archive there
    first, its folder is kept as it is, since a reader may be using it, and this copy is discarded; with
    ``replace`` (the folder there is damaged) this copy takes its place, in one rename.
    """
    try:
        check_expansion(archive, destination)
        with atomic_dir(destination, keep_existing=not replace) as staging:
            if archive.name.lower().endswith(".zip"):
                with zipfile.ZipFile(archive) as bundle:
                    root = staging.resolve()
                    for member in bundle.namelist():
                        if not (staging / member).resolve().is_relative_to(root):
                            raise DataError(f"{archive}: member {member!r} would be written outside the folder")
                    bundle.extractall(staging)
            else:
                with tarfile.open(archive) as bundle:
                    bundle.extractall(staging, filter="data")
            # Before the folder appears: another run never finds it without its record.
            write_json(manifest_path(destination), tree_digests(staging))
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: not a readable archive ({exc})") from None


def manifest_path(destination: Path) -> Path:
    return destination.with_name(destination.name + ".sha256.json")


def extracted(archive: Path, destination: Path) -> Path:
    """``destination`` holding exactly the files ``archive`` (already verified) unpacks to: extracted
    there if absent, and extracted again, with a warning, when a file of it was changed, added or deleted
    since (the cache is outside DVC's sight; its record of digests is beside it)."""
    if destination.is_dir():
        manifest = manifest_path(destination)
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError):
            expected = None
        if expected is not None and tree_digests(destination) == expected:
            return destination
        log.warning("%s: the files extracted from %s changed since (or were never recorded): extracted again",
                    destination, archive.name)
        extract(archive, destination, replace=True)
        return destination
    extract(archive, destination)
    return destination


def locate(location: str, sha256: str | None = None, cache_dir: Path | None = None) -> tuple[Path, dict[str, str]]:
    """A local path for a dataset location given in params, and its provenance for the data report.

    ``location`` is a local file or folder (relative to the project root), or an ``https://``/``file://``
    URL. A URL is downloaded into the cache once and verified against ``sha256``, which it must have
    (:func:`unpinned_url`); a zip or tar archive is extracted there (a single top-level folder in it is
    descended into).
    """
    cache_dir = cache_dir or cache_root()
    source = {"location": location}
    if is_url(location):
        if sha256 is None:
            raise DataError(unpinned_url(location, "location", "sha256"))
        path = cache_dir / sha256.lower()[:32] / (Path(urllib.parse.urlparse(location).path).name or "download")
        if not path.is_file():
            with atomic_path(path) as temporary:
                copy_url(location, temporary)
                verify_sha256(temporary, sha256, location)
    else:
        path = Path(location)
        if not path.exists():
            raise DataError(f"{location}: no such file or folder")
    if path.is_file():
        source["sha256"] = verify_sha256(path, sha256, location)
        if is_archive(path):
            folder = extracted(path, cache_dir / source["sha256"][:32] / "extracted")
            entries = list(folder.iterdir())
            path = entries[0] if len(entries) == 1 and entries[0].is_dir() else folder
    elif sha256 is not None:
        raise DataError(f"{location}: a sha256 is given but this is a folder; checksums apply to archives and files")
    return path, source
