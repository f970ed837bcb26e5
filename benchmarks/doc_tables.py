"""Put a rendered table into a documentation page, between two marker comments.

A page marks where a table goes with two lines of their own:

    <!-- NAME:begin -->
    ...the table, written by the script...
    <!-- NAME:end -->

NAME is the stem of the data file the table is rendered from (`loo-ml-100k-L200` for
`docs/benchmarks.d/loo-ml-100k-L200.jsonl`), so the page itself says which file a table comes
from. `write_block` replaces only what lies between the markers: the prose around a table (the
command, the machine, the reading) stays as written. The scripts that render tables
(`benchmarks/loo.py`, `benchmarks/replay_models.py`, `benchmarks/t2arec_loss_balance.py`) take
`--doc PAGE` to write their table this way.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_doc_option(parser: argparse.ArgumentParser) -> None:
    """The scripts' ``--doc PAGE`` option."""
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the table into this page, between the markers named after --results",
    )


def write_block(page: Path, name: str, text: str) -> bool:
    """Replace the lines between NAME's markers in `page` with `text`; True if the page changed.

    Exits with a message naming the page and the marker when the pair is missing, repeated or
    out of order, and leaves the page unchanged then.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    lines = page.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        msg = (
            f"error: {page}: expected one line `{begin}` followed by one line `{end}` "
            f"(found {len(starts)} and {len(ends)})"
        )
        raise SystemExit(msg)
    body = [line + "\n" for line in text.rstrip("\n").split("\n")]
    new = lines[: starts[0] + 1] + body + lines[ends[0] :]
    if new == lines:
        return False
    page.write_text("".join(new))
    return True


def report(page: Path, name: str, text: str) -> None:
    """`write_block` and one line saying what happened (for the scripts' `--doc`)."""
    changed = write_block(page, name, text)
    print(f"{page}: table {name} {'updated' if changed else 'unchanged'}")


def show(table: str, results: Path, doc: Path | None) -> None:
    """Print a rendered table and, with ``--doc PAGE``, write it into PAGE between the markers
    named after the `results` file."""
    print(table)
    if doc is not None:
        report(doc, results.stem, table)
