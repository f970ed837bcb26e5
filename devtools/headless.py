"""Open a dashboard in headless Chromium: DOM after the scripts ran, console errors, screenshot.

Used by the browser test and the dashboard benchmark; needs a ``chromium`` binary (Debian package
``chromium``) and nothing else: no WebDriver, no DevTools client. The page is loaded from disk
(``file://``), so any network request would fail and show up as an error.

Console errors are captured by loading an *instrumented copy* of the page whose first script
records ``window.onerror``, unhandled promise rejections and ``console.error`` calls, and whose
last script writes them, once the page has loaded, into ``<pre id="streamsim-console-errors">``,
which ``--dump-dom`` then returns. Chromium's own stderr log is also scanned for ``Uncaught``.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",  # software WebGL for the Scattergl traces
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
ERRORS_ID = "streamsim-console-errors"
_HOOK = """<script>window.__streamsimErrors = [];
window.addEventListener('error', function (e) {
  window.__streamsimErrors.push('uncaught: ' + (e.message || e.type)); }, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__streamsimErrors.push('unhandled rejection: ' + e.reason); });
(function () { var orig = console.error; console.error = function () {
  window.__streamsimErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  return orig.apply(console, arguments); }; })();</script>"""
_REPORT = (
    "<script>window.addEventListener('load', function () { setTimeout(function () {"
    " var pre = document.createElement('pre'); pre.id = '" + ERRORS_ID + "';"
    " pre.textContent = JSON.stringify(window.__streamsimErrors);"
    " document.body.appendChild(pre); }, 200); });</script>"
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True, slots=True)
class PageLoad:
    """What a headless load of a page returned."""

    dom: str  # serialised DOM after the scripts ran
    console_errors: list[str]  # from the instrumented page
    log_errors: list[str]  # 'Uncaught ...' lines of Chromium's stderr log
    seconds: float  # wall time of the Chromium process


def _run(binary: str, args: list[str], timeout: float) -> tuple[str, str, float]:
    with tempfile.TemporaryDirectory(prefix="streamsim-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        msg = f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}"
        raise RuntimeError(msg)
    return proc.stdout, proc.stderr, seconds


def instrument(html_text: str) -> str:
    """The page with the console-error hook as the first script and the report as the last."""
    head = html_text.find("<head>")
    if head < 0:
        msg = "page has no <head>"
        raise ValueError(msg)
    cut = head + len("<head>")
    out = html_text[:cut] + _HOOK + html_text[cut:]
    end = out.rfind("</body>")
    return out[:end] + _REPORT + out[end:]


def load(
    page: Path, *, binary: str | None = None, budget_ms: int = 15000, timeout: float = 180.0
) -> PageLoad:
    """Load `page` (an instrumented copy of it) and return the DOM and the errors."""
    binary = binary or find_chromium()
    if binary is None:
        msg = "no chromium binary on PATH"
        raise FileNotFoundError(msg)
    with tempfile.TemporaryDirectory(prefix="streamsim-page-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(instrument(page.read_text(encoding="utf-8")), encoding="utf-8")
        dom, log, seconds = _run(
            binary,
            [f"--virtual-time-budget={budget_ms}", "--dump-dom", copy.resolve().as_uri()],
            timeout,
        )
    found = re.search(rf'<pre id="{ERRORS_ID}">(.*?)</pre>', dom, flags=re.S)
    if found is None:
        errors = ["the page never reached its load event (no error report in the DOM)"]
    else:
        raw = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        errors = [str(e) for e in json.loads(raw)]
    log_errors = [line for line in log.splitlines() if "Uncaught" in line]
    return PageLoad(dom=dom, console_errors=errors, log_errors=log_errors, seconds=seconds)


def screenshot(
    page: Path,
    png: Path,
    *,
    width: int = 1200,
    height: int = 2400,
    binary: str | None = None,
    budget_ms: int = 15000,
    timeout: float = 180.0,
) -> float:
    """Write a `width` x `height` PNG of `page` to `png`; returns the wall time in seconds."""
    binary = binary or find_chromium()
    if binary is None:
        msg = "no chromium binary on PATH"
        raise FileNotFoundError(msg)
    png.parent.mkdir(parents=True, exist_ok=True)
    _, _, seconds = _run(
        binary,
        [
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={png.resolve()}",
            page.resolve().as_uri(),
        ],
        timeout,
    )
    return seconds


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced greyscale/RGB/RGBA PNG to a ``(h, w, c)`` uint8 array.

    Pure Python + numpy (zlib for the deflate stream), enough for Chromium's screenshots.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        msg = "not a PNG file"
        raise ValueError(msg)
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or ctype not in (0, 2, 4, 6):
                msg = f"unsupported PNG: depth {depth}, colour type {ctype}, interlace {interlace}"
                raise ValueError(msg)
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    stride = width * channels
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum per channel, modulo 256
            cur = (
                (np.cumsum(line.reshape(width, channels).astype(np.int64), axis=0) % 256)
                .astype(np.uint8)
                .reshape(stride)
            )
        elif kind == 2:  # Up
            cur = line + prev
        else:
            cur = _unfilter_sequential(int(kind), line, prev, channels)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels)


def _unfilter_sequential(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Average (3) and Paeth (4) filters, which depend on the decoded left neighbour."""
    cur = bytearray(line.tobytes())
    up = prev.tobytes()
    n = len(cur)
    if kind == 3:
        for i in range(n):
            left = cur[i - bpp] if i >= bpp else 0
            cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            a = cur[i - bpp] if i >= bpp else 0
            b = up[i]
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (cur[i] + pred) & 0xFF
    else:
        msg = f"unknown PNG filter type {kind}"
        raise ValueError(msg)
    return np.frombuffer(bytes(cur), dtype=np.uint8)
