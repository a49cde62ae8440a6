"""Find published dataset files locally or download them, always verified by checksum."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from refinelab.errors import DataError
from refinelab.fileio import atomic_dir, atomic_path
from refinelab.idx import read_bytes

log = logging.getLogger(__name__)
CHUNK = 1 << 20
CACHE_ENV = "REFINELAB_CACHE"
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
URL_SCHEMES = ("https", "http", "file")


@dataclass(frozen=True)
class PublishedFile:
    """A file as its publisher lists it: its name and MD5, and the MD5 of its decompressed content.

    The content checksum accepts faithful copies that were recompressed (Debian's
    ``dataset-fashion-mnist`` re-gzips the files, which changes the outer MD5 but not the data).
    """

    name: str
    md5: str
    content_md5: str


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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


def copy_url(url: str, destination: Path) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None


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


def cache_root() -> Path:
    """Where downloaded and extracted user datasets are kept (``$REFINELAB_CACHE`` overrides)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "refinelab")


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


def extract(archive: Path, destination: Path) -> None:
    """Unpack a zip or tar archive into ``destination``; a member that would land outside it is an error.

    ``destination`` is a shared cache: when another run extracted the same (checksummed) archive there
    first, its folder is kept as it is, since a reader may be using it, and this copy is discarded.
    """
    with atomic_dir(destination, keep_existing=True) as staging:
        try:
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
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{archive}: not a readable archive ({exc})") from None


def locate(location: str, sha256: str | None = None, cache_dir: Path | None = None) -> tuple[Path, dict[str, str]]:
    """A local path for a dataset location given in params, and its provenance for the data report.

    ``location`` is a local file or folder (relative to the project root), or an ``https://``/``file://``
    URL. A URL is downloaded into the cache once, verified against ``sha256`` when given; a zip or tar
    archive is extracted there (a single top-level folder in it is descended into).
    """
    cache_dir = cache_dir or cache_root()
    source = {"location": location}
    if is_url(location):
        name = Path(urllib.parse.urlparse(location).path).name or "download"
        key = sha256.lower() if sha256 else hashlib.sha256(location.encode()).hexdigest()
        path = cache_dir / key[:32] / name
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
            extracted = cache_dir / source["sha256"][:32] / "extracted"
            if not extracted.is_dir():
                extract(path, extracted)
            entries = list(extracted.iterdir())
            path = entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
    elif sha256 is not None:
        raise DataError(f"{location}: a sha256 is given but this is a folder; checksums apply to archives and files")
    return path, source
