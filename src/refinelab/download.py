"""Find published dataset files locally or download them, always verified by checksum."""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from refinelab.errors import DataError
from refinelab.fileio import atomic_path
from refinelab.idx import read_bytes

log = logging.getLogger(__name__)
CHUNK = 1 << 20


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


def download(url: str, destination: Path, published: PublishedFile) -> None:
    """Download ``url`` to ``destination``; the file appears only once verified."""
    log.info("downloading %s", url)
    with atomic_path(destination) as temporary:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
        except (urllib.error.URLError, OSError) as exc:
            raise DataError(f"could not download {url}: {exc}") from None
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
