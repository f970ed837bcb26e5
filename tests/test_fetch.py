"""`fetch` against a local HTTP server: success, resume, checksum mismatch, corrupt archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from streamsim.errors import IngestError
from streamsim.fetch import RemoteDataset, fetch
from streamsim.store import Workspace

U_DATA = "".join(
    f"{1 + k % 5}\t{1 + (k * 7) % 11}\t{1 + k % 5}\t{880000000 + 37 * k}\n" for k in range(60)
)
U_ITEM = "".join(
    f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|0|{i % 2}|{(i + 1) % 2}" + "|0" * 16 + "\n"
    for i in range(1, 12)
)


def ml100k_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/u.data", U_DATA)
        zf.writestr("ml-100k/u.item", U_ITEM)
    return buf.getvalue()


class Server:
    """Serves `files` (name -> bytes) with HTTP Range support; records the Range headers seen."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.short: set[str] = set()  # files whose first response stops halfway
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = outer.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                if start >= len(body) and rng:
                    self.send_error(416)
                    return
                short = self.path.lstrip("/") in outer.short  # announce all, send half, hang up
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body) - start))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                self.wfile.write(body[start : len(body) // 2] if short else body[start:])

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    archive = ml100k_zip()
    srv = Server(
        {
            "ml-100k.zip": archive,
            "truncated.zip": archive[: len(archive) // 2],
            "garbage.zip": b"this is not a zip file at all" * 10,
        }
    )
    yield srv
    srv.close()


def registry(url: str, file: str, sha: str | None) -> dict[str, RemoteDataset]:
    return {"toy": RemoteDataset(f"{url}/{file}", sha, "ml-100k", "ml-100k")}


def snapshot(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], ...]:
    return tuple(
        con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("datasets", "events", "users", "items", "categories")
    )


def test_fetch_verifies_unpacks_and_ingests(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    sha = hashlib.sha256(server.files["ml-100k.zip"]).hexdigest()
    info = fetch(con, "toy", workspace=ws, registry=registry(server.url, "ml-100k.zip", sha))
    assert (info.format, info.n_events, info.n_users) == ("ml-100k", 60, 5)
    assert info.params["sha256"] == sha
    assert info.params["checksum_pinned"] is True
    assert info.params["md5"] == hashlib.md5(server.files["ml-100k.zip"]).hexdigest()
    assert (ws.root / "downloads" / "ml-100k.zip").is_file()
    assert not (ws.root / "downloads" / "ml-100k.zip.part").exists()
    assert server.ranges == [None]


def test_fetch_resumes_a_partial_download(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    body = server.files["ml-100k.zip"]
    part = ws.subdir("downloads") / "ml-100k.zip.part"
    part.write_bytes(body[:100])
    sha = hashlib.sha256(body).hexdigest()
    # base_url replaces the registry host; the file name stays
    reg = registry("http://unreachable.invalid", "ml-100k.zip", sha)
    info = fetch(con, "toy", workspace=ws, base_url=server.url, registry=reg)
    assert server.ranges == ["bytes=100-"]
    assert info.n_events == 60
    assert (ws.root / "downloads" / "ml-100k.zip").read_bytes() == body


def test_checksum_mismatch_leaves_store_unchanged(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    before = snapshot(con)
    reg = registry(server.url, "ml-100k.zip", "0" * 64)
    with pytest.raises(IngestError, match=r"ml-100k.zip: checksum mismatch: sha256 [0-9a-f]{64}; "
                       r"expected 0{64} \(file deleted\)"):  # fmt: skip
        fetch(con, "toy", workspace=ws, registry=reg)
    assert snapshot(con) == before
    assert not (ws.root / "downloads" / "ml-100k.zip").exists()


def test_a_connection_closed_early_is_resumed_not_accepted(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    before = snapshot(con)
    body = server.files["ml-100k.zip"]
    server.short.add("ml-100k.zip")
    reg = registry(server.url, "ml-100k.zip", hashlib.sha256(body).hexdigest())
    with pytest.raises(IngestError, match=rf"download incomplete: {len(body) // 2} of {len(body)}"):
        fetch(con, "toy", workspace=ws, registry=reg)
    assert snapshot(con) == before
    downloads = ws.root / "downloads"
    assert not (downloads / "ml-100k.zip").exists()
    assert (downloads / "ml-100k.zip.part").stat().st_size == len(body) // 2
    server.short.clear()
    info = fetch(con, "toy", workspace=ws, registry=reg)  # resumes from the half
    assert server.ranges[-1] == f"bytes={len(body) // 2}-"
    assert info.n_events == 60


def test_pinned_md5_is_checked(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    bad = {"toy": RemoteDataset(f"{server.url}/ml-100k.zip", None, "ml-100k", "ml-100k", "f" * 32)}
    with pytest.raises(IngestError, match=r"checksum mismatch: md5 [0-9a-f]{32}; expected f{32}"):
        fetch(con, "toy", workspace=ws, registry=bad)


@pytest.mark.parametrize("file", ["truncated.zip", "garbage.zip"])
def test_corrupt_archive(server: Server, tmp_path: Path, file: str) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    before = snapshot(con)
    with pytest.raises(IngestError, match=rf"{file}: truncated or corrupt zip archive"):
        fetch(con, "toy", workspace=ws, registry=registry(server.url, file, None))
    assert snapshot(con) == before


def test_unpinned_checksum_is_recorded(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    info = fetch(con, "toy", workspace=ws, registry=registry(server.url, "ml-100k.zip", None))
    assert info.params["sha256"] == hashlib.sha256(server.files["ml-100k.zip"]).hexdigest()
    assert info.params["checksum_pinned"] is False


def test_unknown_name_and_http_error(server: Server, tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    with pytest.raises(
        IngestError, match=r"unknown public dataset 'nope'; expected one of .*ml-1m"
    ):
        fetch(con, "nope", workspace=ws)
    with pytest.raises(IngestError, match=r"missing.zip: HTTP 404"):
        fetch(con, "toy", workspace=ws, registry=registry(server.url, "missing.zip", None))


def test_cli_fetch_real_registry_entries_from_a_mirror(server: Server, tmp_path: Path) -> None:
    """ml-100k's pinned GroupLens MD5 rejects a look-alike archive; unpinned entries ingest."""
    from typer.testing import CliRunner

    from streamsim.cli import app

    store = str(tmp_path / "ws")
    base = ["--store", store, "datasets", "fetch"]
    res = CliRunner().invoke(app, [*base, "ml-100k", "--base-url", server.url])
    assert res.exit_code == 1
    assert "ml-100k.zip: checksum mismatch: md5" in res.output
    assert "expected 0e33842e24a9c977be4e0107933c0723 (file deleted)" in res.output
    assert "Traceback" not in res.output

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        ratings = "userId,movieId,rating,timestamp\n" + "".join(
            f"{1 + k % 4},{1 + k % 9},4.0,{1_500_000_000 + 60 * k}\n" for k in range(40)
        )
        zf.writestr("ml-latest-small/ratings.csv", ratings)
        movies = "movieId,title,genres\n" + "".join(
            f"{i},M{i},Drama|Comedy\n" for i in range(1, 10)
        )
        zf.writestr("ml-latest-small/movies.csv", movies)
    server.files["ml-latest-small.zip"] = buf.getvalue()
    args = [*base, "ml-latest-small", "--base-url", server.url]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "fetched ml-latest-small: 40 events, 4 users" in res.output
    sha = hashlib.sha256(server.files["ml-latest-small.zip"]).hexdigest()
    assert f"sha256 {sha} (checksum not pinned in the registry" in res.output
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert "error: dataset 'ml-latest-small' already exists; pass --replace" in res.output
