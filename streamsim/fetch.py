"""Download public datasets (resumable, checksum-verified), unpack them and ingest them.

Downloads go to ``<workspace>/downloads/<file>.part`` and are renamed to ``<file>`` once complete
and verified. A ``.part`` left by an interrupted download is resumed with an HTTP ``Range``
request (a server that ignores the range sends the whole file, which then replaces the part).
Zip archives are CRC-checked and unpacked to ``<workspace>/downloads/<name>/`` before ingest.

A download is complete only when the bytes on disk match the length the server announced
(``Content-Length``, or the total of ``Content-Range`` when resuming); a connection that closes
early leaves the ``.part`` file for the next call to resume, never a short file.

Checksums: a registry entry pins a digest of its file where one is published: the MovieLens
archives carry GroupLens's own MD5 (the ``.md5`` sidecar files next to the zips). The Amazon 2018
CSVs and ml-latest-small (re-released in place) have none: their entries say ``None`` and the
file is still downloaded and ingested. Either way the computed sha256 and MD5 are stored in the
dataset's ``params`` (``sha256``, ``md5``, ``checksum_pinned``) so that a download can be pinned
or compared later.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from streamsim.errors import IngestError
from streamsim.ingest import ingest
from streamsim.store import DatasetInfo, Workspace

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class RemoteDataset:
    """One downloadable dataset.

    Attributes
    ----------
    url
        Where the file lives. With ``base_url`` the file name (last path segment) is appended to
        the base URL instead.
    sha256
        Pinned hex digest of the file, or ``None`` when not pinned (see the module docstring).
    format
        `streamsim.ingest` format of the unpacked data.
    inner
        Path inside the unpacked archive to ingest (``""`` = the downloaded file itself).
    """

    url: str
    sha256: str | None
    format: str
    inner: str = ""
    md5: str | None = None  # the publisher's MD5 (GroupLens), checked like sha256

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_AMAZON_2018 = "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall"

# MovieLens: GroupLens publishes an MD5 sidecar for each zip (`<zip>.md5`); those digests are
# pinned here. ml-latest-small is re-released under the same name and the Amazon 2018 CSVs have
# no published digest: unpinned (the computed digests go into the dataset params).
REGISTRY: dict[str, RemoteDataset] = {
    "ml-100k": RemoteDataset(
        f"{_GROUPLENS}/ml-100k.zip",
        None,
        "ml-100k",
        "ml-100k",
        md5="0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": RemoteDataset(
        f"{_GROUPLENS}/ml-1m.zip", None, "ml-1m", "ml-1m", md5="c4d9eecfca2ab87c1945afe126590906"
    ),
    "ml-20m": RemoteDataset(
        f"{_GROUPLENS}/ml-20m.zip",
        None,
        "ml-latest",
        "ml-20m",
        md5="cd245b17a1ae2cc31bb14903e1204af3",
    ),
    "ml-latest-small": RemoteDataset(
        f"{_GROUPLENS}/ml-latest-small.zip", None, "ml-latest", "ml-latest-small"
    ),
    # Amazon review data (2018), "ratings only" per-category CSVs: item,user,rating,timestamp
    "amazon2018-beauty": RemoteDataset(f"{_AMAZON_2018}/All_Beauty.csv", None, "amazon-ratings"),
    "amazon2018-video-games": RemoteDataset(
        f"{_AMAZON_2018}/Video_Games.csv", None, "amazon-ratings"
    ),
    "amazon2018-sports": RemoteDataset(
        f"{_AMAZON_2018}/Sports_and_Outdoors.csv", None, "amazon-ratings"
    ),
}


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, in one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digests(path)[0]


def _expected_size(response: object, have: int, resumed: bool) -> int | None:
    """The full file size the server announced, if it did."""
    headers = getattr(response, "headers", {})
    if resumed:
        total = str(headers.get("Content-Range", "")).rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length")
    return int(length) if length is not None and str(length).isdigit() else None


def download(url: str, target: Path, *, timeout: float = 60.0) -> Path:
    """Download `url` to `target`, resuming from ``target.part`` when it exists.

    Returns `target`. `IngestError` naming the URL on an HTTP or network error; the ``.part``
    file is kept so that the next call resumes.
    """
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    try:
        request = urllib.request.Request(url)
    except ValueError as exc:
        msg = f"{url}: not a URL ({exc}); expected http(s)://host/path"
        raise IngestError(msg) from None
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = bool(have) and response.status == 206
            expected = _expected_size(response, have, resumed)
            with part.open("ab" if resumed else "wb") as fh:
                shutil.copyfileobj(response, fh, _CHUNK)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part already holds the whole file
            part.replace(target)
            return target
        msg = f"{url}: HTTP {exc.code} {exc.reason}; expected the dataset file"
        raise IngestError(msg) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        msg = f"{url}: download failed ({exc}); run the command again to resume"
        raise IngestError(msg) from exc
    got = part.stat().st_size
    if expected is not None and got != expected:
        msg = (
            f"{url}: download incomplete: {got} of {expected} bytes; run the command again to"
            " resume"
        )
        raise IngestError(msg)
    part.replace(target)
    return target


def unpack(archive: Path, directory: Path) -> Path:
    """Extract a zip archive into `directory` (replaced), after checking every member's CRC.

    A member whose name is absolute or climbs out with ``..`` is refused (not silently renamed,
    as `zipfile` would): nothing is written outside `directory`.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = member.replace("\\", "/").split("/")
                if member.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                    msg = f"{archive}: member {member!r} would unpack outside the archive's folder"
                    msg += "; expected relative member names"
                    raise IngestError(msg)
            bad = zf.testzip()
            if bad is not None:
                msg = f"{archive}: corrupt archive (CRC error in member {bad!r}); fetch it again"
                raise IngestError(msg)
            scratch = directory.with_name(directory.name + ".unpacking")
            shutil.rmtree(scratch, ignore_errors=True)
            zf.extractall(scratch)
    except (zipfile.BadZipFile, EOFError) as exc:
        msg = f"{archive}: truncated or corrupt zip archive ({exc}); expected a complete zip file"
        raise IngestError(msg) from exc
    shutil.rmtree(directory, ignore_errors=True)
    scratch.replace(directory)
    return directory


def fetch(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    workspace: Workspace,
    base_url: str | None = None,
    replace: bool = False,
    registry: Mapping[str, RemoteDataset] | None = None,
) -> DatasetInfo:
    """Download, verify, unpack and ingest the public dataset `name` (stored under that name).

    Parameters
    ----------
    base_url
        Download ``<base_url>/<file name>`` instead of the registry URL (a mirror, or a local
        server in tests).
    registry
        Entries to use instead of `REGISTRY`.

    Raises
    ------
    IngestError
        Unknown name, download failure, checksum mismatch (the bad file is deleted so the next
        call downloads it again), corrupt archive, or unparsable content. The store is unchanged
        after any failure.
    """
    entries = REGISTRY if registry is None else registry
    if name not in entries:
        msg = f"unknown public dataset {name!r}; expected one of {', '.join(sorted(entries))}"
        raise IngestError(msg)
    entry = entries[name]
    url = f"{base_url.rstrip('/')}/{entry.filename}" if base_url else entry.url
    downloads = workspace.subdir("downloads")
    target = downloads / entry.filename
    if not target.exists():
        download(url, target)
    digest, md5 = file_digests(target)
    for algo, got, want in (("sha256", digest, entry.sha256), ("md5", md5, entry.md5)):
        if want is not None and got != want:
            target.unlink()
            msg = f"{url}: checksum mismatch: {algo} {got}; expected {want} (file deleted)"
            raise IngestError(msg)
    if zipfile.is_zipfile(target) or target.suffix == ".zip":
        try:
            root = unpack(target, downloads / name)
        except IngestError:
            target.unlink()
            raise
        data = root / entry.inner if entry.inner else root
    else:
        data = target
    return ingest(
        con,
        data,
        name=name,
        format=entry.format,
        replace=replace,
        extra_params={
            "url": url,
            "sha256": digest,
            "md5": md5,
            "checksum_pinned": entry.sha256 is not None or entry.md5 is not None,
        },
    )
