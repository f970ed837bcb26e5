"""What the seed-by-seed experiments share: the seeds asked for, the keys already done in a
JSON-lines results file (so a rerun resumes), and the rows stamped with time and threads."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch


def seeds_of(text: str) -> list[int]:
    """``0-4`` or ``3`` as a list of seeds."""
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def done_keys(path: Path, *fields: str) -> set[tuple[Any, ...]]:
    """The `fields` values of every row already in `path` (empty when it does not exist)."""
    if not path.exists():
        return set()
    rows = map(json.loads, path.read_text().splitlines())
    return {tuple(r[f] for f in fields) for r in rows}


def append(path: Path, rows: list[dict[str, Any]], *, started: float) -> None:
    """Append `rows`, each stamped with the seconds since `started` and torch's thread count."""
    with path.open("a") as fh:
        for row in rows:
            row["seconds"] = time.perf_counter() - started
            row["threads"] = torch.get_num_threads()
            fh.write(json.dumps(row) + "\n")
