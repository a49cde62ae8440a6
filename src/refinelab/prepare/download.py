"""Find published dataset files locally or download them, always verified by checksum."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
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


# What a server says about a file's version: a copy downloaded without a checksum is reused only
# while these stay the same (file:// URLs give the size and modification time).
VALIDATORS = ("ETag", "Last-Modified", "Content-Length")


@contextlib.contextmanager
def open_url(url: str, known: dict[str, str] | None = None) -> Iterator[tuple[Any, dict[str, str]] | None]:
    """Yield the response to ``url`` and its validators; with ``known`` validators, yield None when the
    server says the file has not changed since."""
    request = urllib.request.Request(url)
    if known and url.startswith("http"):
        for header, value in (("If-None-Match", known.get("ETag")), ("If-Modified-Since", known.get("Last-Modified"))):
            if value:
                request.add_header(header, value)
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if not (known and exc.code == 304):  # 304: Not Modified.
            raise DataError(f"could not download {url}: {exc}") from None
        yield None
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None
    with response:
        validators = {name: response.headers[name] for name in VALIDATORS if response.headers.get(name)}
        yield None if known and validators == known else (response, validators)


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
    with open_url(url) as (response, _):
        save_response(url, response, destination)


def download_unverified(url: str, path: Path) -> None:
    """Keep ``path`` the current version of ``url``, which has no checksum to pin it: a cached copy is
    checked against the server's validators (ETag, Last-Modified, size) and downloaded again if they
    changed or are missing. If the server cannot be reached, the cached copy is used, with a warning."""
    validators_file = path.with_name(path.name + ".validators.json")
    known = None
    if path.is_file() and validators_file.is_file():
        with contextlib.suppress(ValueError):  # A damaged record only costs a download.
            known = json.loads(validators_file.read_text())
    try:
        with open_url(url, known) as opened:
            if opened is None:
                log.info("%s: unchanged since downloaded (%s)", url, ", ".join(f"{k} {v}" for k, v in known.items()))
                return
            response, validators = opened
            validators_file.unlink(missing_ok=True)  # Never beside a copy it does not describe.
            with atomic_path(path) as temporary:
                save_response(url, response, temporary)
    except DataError as exc:
        if known is None:
            raise
        log.warning("%s; using the copy downloaded before (give a sha256 to pin the version)", exc)
        return
    if validators:
        write_json(validators_file, validators)
    else:
        log.warning("%s: the server gives no ETag, date or size, so it is downloaded on every prepare; "
                    "give its sha256 to download it once", url)


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
    archive is extracted there (a single top-level folder in it is descended into). Without a sha256 the
    cached copy is re-validated with the server each time (see :func:`download_unverified`).
    """
    cache_dir = cache_dir or cache_root()
    source = {"location": location}
    if is_url(location):
        name = Path(urllib.parse.urlparse(location).path).name or "download"
        key = sha256.lower() if sha256 else hashlib.sha256(location.encode()).hexdigest()
        path = cache_dir / key[:32] / name
        if sha256 is None:
            download_unverified(location, path)
        elif not path.is_file():
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
